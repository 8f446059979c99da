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

void dqa_concat_start(dqa_concat_state_t *state, const dqa_tensor_t *a, const dqa_tensor_t *b, dqa_tensor_t *output,
                      void *scratch)
{
    dqa_reader_init(&state->a, a);
    dqa_reader_init(&state->b, b);
    dqa_writer_init(&state->writer, output);
    state->scratch = scratch;
    state->row = 0;
}

void dqa_concat_rows(dqa_concat_state_t *state, uint16_t end, dqa_status_t *status)
{
    const dqa_tensor_info_t *out = state->writer.tensor->info;
    uint32_t c_out = out->channels, c_a = state->a.tensor->info->channels;
    int32_t *u = (int32_t *)state->scratch;
    int16_t *v = (int16_t *)(void *)(u + c_out);
    uint32_t i, c;

    if (!dqa__rows_pending(&end, out->height, state->row)) {
        return; /* nothing new: a segment round in which this layer waits */
    }
    for (i = (uint32_t)state->row * out->width; i < (uint32_t)end * out->width; i++) {
        dqa_read_pixel(&state->a, v);
        dqa_read_pixel(&state->b, v + c_a);
        for (c = 0; c < c_out; c++) {
            u[c] = dqa__fine_to_storage(out, (uint16_t)c, v[c]);
        }
        dqa_write_pixel(&state->writer, u);
    }
    state->row = end;
    if (end == out->height) {
        dqa_writer_finish(&state->writer, status);
    }
}

void dqa_concat(const dqa_tensor_t *a, const dqa_tensor_t *b, dqa_tensor_t *output, void *scratch,
                dqa_status_t *status)
{
    dqa_concat_state_t state;
    dqa_concat_start(&state, a, b, output, scratch);
    dqa_concat_rows(&state, output->info->height, status);
}
