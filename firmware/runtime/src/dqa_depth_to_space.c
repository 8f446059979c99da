/*
 * depth_to_space, PyTorch's pixel_shuffle with block r (docs/spec.md 5.6):
 * output element (h*r + i, w*r + j, c) is input element (h, w, c*r^2 + i*r + j),
 * copied as u. The quantizer ties the r^2 input channels of each output
 * channel to its scale and importance, so u = v (important) or v >> m, exact.
 *
 * The input is read in index order, one row at a time: each input row is
 * decoded once into a row buffer and gives the r output rows h*r .. h*r + r-1.
 *
 * Scratch (4-byte aligned): int32 u[C_out], int16 row[W_in * C_in].
 */
#include "dqa_internal.h"

size_t dqa_depth_to_space_get_buffer_size(const dqa_tensor_info_t *input, const dqa_tensor_info_t *output)
{
    return DQA_ALIGN4((size_t)output->channels * sizeof(int32_t) +
                      (size_t)input->width * input->channels * sizeof(int16_t));
}

void dqa_depth_to_space(uint16_t block, const dqa_tensor_t *input, dqa_tensor_t *output, void *scratch,
                        dqa_status_t *status)
{
    const dqa_tensor_info_t *in = input->info;
    const dqa_tensor_info_t *out = output->info;
    uint32_t r = block, rr = (uint32_t)block * block;
    uint32_t c_in = in->channels, c_out = out->channels, w_in = in->width;
    int32_t *u = (int32_t *)scratch;
    int16_t *row = (int16_t *)(void *)(u + c_out);
    dqa_reader_t reader;
    dqa_writer_t writer;
    uint32_t h, w, i, j, c;

    dqa_reader_init(&reader, input);
    dqa_writer_init(&writer, output);
    for (h = 0; h < in->height; h++) {
        for (w = 0; w < w_in; w++) {
            dqa_read_pixel(&reader, row + (size_t)w * c_in);
        }
        for (i = 0; i < r; i++) {
            for (w = 0; w < w_in; w++) {
                const int16_t *px = row + (size_t)w * c_in + i * r;
                for (j = 0; j < r; j++) {
                    const int16_t *src = px + j; /* channel c at src[c * r^2] */
                    for (c = 0; c < c_out; c++) {
                        u[c] = dqa__fine_to_storage(out, (uint16_t)c, src[c * rr]);
                    }
                    dqa_write_pixel(&writer, u);
                }
            }
        }
    }
    dqa_writer_finish(&writer, status);
}
