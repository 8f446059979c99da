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

void dqa_add_start(dqa_add_state_t *state, const dqa_tensor_t *a, const dqa_tensor_t *b, dqa_tensor_t *output,
                   void *scratch)
{
    dqa_reader_init(&state->a, a);
    dqa_reader_init(&state->b, b);
    dqa_writer_init(&state->writer, output);
    state->scratch = scratch;
    state->b_pos = 0;
    state->row = 0;
}

void dqa_add_rows(dqa_add_state_t *state, const dqa_add_params_t *params, uint16_t end, dqa_status_t *status)
{
    const dqa_tensor_info_t *out = state->writer.tensor->info;
    const dqa_requant_t *rq = &params->requant;
    uint32_t c_out = out->channels, c_a = state->a.tensor->info->channels, c_b = state->b.tensor->info->channels;
    uint32_t b_w = state->b.tensor->info->width;
    uint32_t stride = params->b_stride ? params->b_stride : 1u;
    int32_t offset = params->b_channel_offset;
    int32_t *u = (int32_t *)state->scratch;
    int16_t *va = (int16_t *)(void *)(u + c_out);
    int16_t *vb = va + c_a;
    uint32_t oh, ow, o;

    if (!dqa__rows_pending(&end, out->height, state->row)) {
        return; /* nothing new: a segment round in which this layer waits */
    }
    for (oh = state->row; oh < end; oh++) {
        for (ow = 0; ow < out->width; ow++) {
            uint32_t target = oh * stride * b_w + ow * stride;
            dqa_read_pixel(&state->a, va);
            if (target > state->b_pos) {
                dqa_skip_pixels(&state->b, target - state->b_pos);
            }
            dqa_read_pixel(&state->b, vb);
            state->b_pos = target + 1u;
            for (o = 0; o < c_out; o++) {
                int32_t k = (int32_t)o - offset;
                int32_t b = (k >= 0 && k < (int32_t)c_b) ? vb[k] : 0;
                u[o] = dqa__requant(dqa__sum(rq, o, o < c_a ? va[o] : 0, b), rq->shift[o], rq->out_min[o],
                                    rq->out_max[o]);
            }
            dqa_write_pixel(&state->writer, u);
        }
    }
    state->row = end;
    if (end == out->height) {
        dqa_writer_finish(&state->writer, status);
    }
}

void dqa_add(const dqa_add_params_t *params, const dqa_tensor_t *a, const dqa_tensor_t *b,
             dqa_tensor_t *output, void *scratch, dqa_status_t *status)
{
    dqa_add_state_t state;
    dqa_add_start(&state, a, b, output, scratch);
    dqa_add_rows(&state, params, output->info->height, status);
}
