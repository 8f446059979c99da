/*
 * concat along channels (docs/spec.md 5.6): copies u per element; the
 * output's per-channel parameters are the inputs' concatenated, and all
 * share n, m and signedness, so u = v (important) or v >> m.
 *
 * Scratch (4-byte aligned): int32 u[C_out], int16 v[C_a + C_b].
 */
#include "dqa_internal.h"

size_t dqa_concat_get_buffer_size(const dqa_tensor_info_t *a, const dqa_tensor_info_t *b,
                                  const dqa_tensor_info_t *output)
{
    return DQA_ALIGN4((size_t)output->channels * sizeof(int32_t) +
                      ((size_t)a->channels + b->channels) * sizeof(int16_t));
}

void dqa_concat(const dqa_tensor_t *a, const dqa_tensor_t *b, dqa_tensor_t *output, void *scratch,
                dqa_status_t *status)
{
    const dqa_tensor_info_t *out = output->info;
    uint32_t c_out = out->channels, c_a = a->info->channels;
    uint32_t pixels = (uint32_t)out->height * out->width;
    int32_t *u = (int32_t *)scratch;
    int16_t *v = (int16_t *)(void *)(u + c_out);
    dqa_reader_t ra, rb;
    dqa_writer_t writer;
    uint32_t i, c;

    dqa_reader_init(&ra, a);
    dqa_reader_init(&rb, b);
    dqa_writer_init(&writer, output);
    for (i = 0; i < pixels; i++) {
        dqa_read_pixel(&ra, v);
        dqa_read_pixel(&rb, v + c_a);
        for (c = 0; c < c_out; c++) {
            u[c] = dqa__fine_to_storage(out, (uint16_t)c, v[c]);
        }
        dqa_write_pixel(&writer, u);
    }
    dqa_writer_finish(&writer, status);
}
