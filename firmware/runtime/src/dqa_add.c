/*
 * add (docs/spec.md 5.4): u = clamp(rshift_round(v_a * M + v_b * R, T)), with
 * b viewed at stride b_stride and channel offset b_channel_offset.
 *
 * Scratch (4-byte aligned): int32 u[C_out], int16 a[C_a], int16 b[C_b].
 */
#include "dqa_internal.h"

size_t dqa_add_get_buffer_size(const dqa_tensor_info_t *a, const dqa_tensor_info_t *b,
                               const dqa_tensor_info_t *output)
{
    return DQA_ALIGN4((size_t)output->channels * sizeof(int32_t) +
                      ((size_t)a->channels + b->channels) * sizeof(int16_t));
}

void dqa_add(const dqa_add_params_t *params, const dqa_tensor_t *a, const dqa_tensor_t *b,
             dqa_tensor_t *output, void *scratch, dqa_status_t *status)
{
    const dqa_tensor_info_t *out = output->info;
    const dqa_requant_t *rq = &params->requant;
    uint32_t c_out = out->channels, c_a = a->info->channels, c_b = b->info->channels;
    uint32_t b_w = b->info->width;
    uint32_t stride = params->b_stride ? params->b_stride : 1u;
    int32_t offset = params->b_channel_offset;
    int32_t *u = (int32_t *)scratch;
    int16_t *va = (int16_t *)(void *)(u + c_out);
    int16_t *vb = va + c_a;
    dqa_reader_t ra, rb;
    dqa_writer_t writer;
    uint32_t oh, ow, o, b_pos = 0;

    dqa_reader_init(&ra, a);
    dqa_reader_init(&rb, b);
    dqa_writer_init(&writer, output);
    for (oh = 0; oh < out->height; oh++) {
        for (ow = 0; ow < out->width; ow++) {
            uint32_t target = oh * stride * b_w + ow * stride;
            dqa_read_pixel(&ra, va);
            if (target > b_pos) {
                dqa_skip_pixels(&rb, target - b_pos);
            }
            dqa_read_pixel(&rb, vb);
            b_pos = target + 1u;
            for (o = 0; o < c_out; o++) {
                int32_t k = (int32_t)o - offset;
                int32_t b = (k >= 0 && k < (int32_t)c_b) ? vb[k] : 0;
                u[o] = dqa__requant(dqa__sum(rq, o, o < c_a ? va[o] : 0, b), rq->shift[o], rq->out_min[o],
                                    rq->out_max[o]);
            }
            dqa_write_pixel(&writer, u);
        }
    }
    dqa_writer_finish(&writer, status);
}
