/*
 * Nearest-neighbour upsampling by integer factors (docs/spec.md 5.6): copies
 * u per element. Each input row is read scale_h times: the reader's state
 * at the start of the row is saved and restored, so no row buffer is needed.
 *
 * Scratch (4-byte aligned): int32 u[C], int16 v[C].
 */
#include "dqa_internal.h"

size_t dqa_upsample_nearest_get_buffer_size(const dqa_tensor_info_t *input, const dqa_tensor_info_t *output)
{
    return DQA_ALIGN4((size_t)output->channels * sizeof(int32_t) + (size_t)input->channels * sizeof(int16_t));
}

void dqa_upsample_nearest(uint16_t scale_h, uint16_t scale_w, const dqa_tensor_t *input, dqa_tensor_t *output,
                          void *scratch, dqa_status_t *status)
{
    const dqa_tensor_info_t *in = input->info;
    const dqa_tensor_info_t *out = output->info;
    uint32_t c_n = out->channels;
    int32_t *u = (int32_t *)scratch;
    int16_t *v = (int16_t *)(void *)(u + c_n);
    dqa_reader_t reader, row_start;
    dqa_writer_t writer;
    uint32_t ih, iw, c, rep_h, rep_w;

    dqa_reader_init(&reader, input);
    dqa_writer_init(&writer, output);
    for (ih = 0; ih < in->height; ih++) {
        row_start = reader;
        for (rep_h = 0; rep_h < scale_h; rep_h++) {
            reader = row_start;
            for (iw = 0; iw < in->width; iw++) {
                dqa_read_pixel(&reader, v);
                for (c = 0; c < c_n; c++) {
                    u[c] = dqa__fine_to_storage(out, (uint16_t)c, v[c]);
                }
                for (rep_w = 0; rep_w < scale_w; rep_w++) {
                    dqa_write_pixel(&writer, u);
                }
            }
        }
    }
    dqa_writer_finish(&writer, status);
}
