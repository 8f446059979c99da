/*
 * Table activations: sigmoid, hard-sigmoid, hard-swish, tanh, SiLU (docs/spec.md 5.4.2).
 * Per element, with v the input's fine value in channel c:
 *   k = clamp(rshift_round(v * A[c], S[c]), -reach, reach)       (one index domain for every channel)
 *   u = clamp(rshift_round(table[k + reach] * M[c], T[c]), out_min[c], out_max[c])
 * so that one table serves channels of any scale. |v| < 2^16 and A, M < 2^31: int64 products.
 *
 * Scratch (4-byte aligned): int32 u[C_out], int16 v[C_in].
 */
#include "dqa_internal.h"

size_t dqa_activation_get_buffer_size(const dqa_tensor_info_t *input, const dqa_tensor_info_t *output)
{
    return DQA_ALIGN4((size_t)output->channels * sizeof(int32_t) + (size_t)input->channels * sizeof(int16_t));
}

void dqa_activation_start(dqa_activation_state_t *state, const dqa_tensor_t *input, dqa_tensor_t *output,
                          void *scratch)
{
    dqa_reader_init(&state->reader, input);
    dqa_writer_init(&state->writer, output);
    state->scratch = scratch;
    state->row = 0;
}

void dqa_activation_rows(dqa_activation_state_t *state, const dqa_activation_params_t *params, uint16_t end,
                         dqa_status_t *status)
{
    const dqa_tensor_info_t *out = state->writer.tensor->info;
    const dqa_requant_t *rq = &params->requant;
    const int16_t *table = params->table;
    int32_t reach = (int32_t)params->reach;
    uint32_t c_n = out->channels;
    int32_t *u = (int32_t *)state->scratch;
    int16_t *v = (int16_t *)(void *)(u + c_n);
    uint32_t i, c;

    if (!dqa__rows_pending(&end, out->height, state->row)) {
        return; /* nothing new: a segment round in which this layer waits */
    }
    for (i = (uint32_t)state->row * out->width; i < (uint32_t)end * out->width; i++) {
        dqa_read_pixel(&state->reader, v);
        for (c = 0; c < c_n; c++) {
            int32_t k = dqa__requant((int64_t)v[c] * params->index_multiplier[c], params->index_shift[c], -reach,
                                     reach);
            u[c] = dqa__requant((int64_t)table[k + reach] * rq->multiplier[c], rq->shift[c], rq->out_min[c],
                                rq->out_max[c]);
        }
        dqa_write_pixel(&state->writer, u);
    }
    state->row = end;
    if (end == out->height) {
        dqa_writer_finish(&state->writer, status);
    }
}

void dqa_activation(const dqa_activation_params_t *params, const dqa_tensor_t *input, dqa_tensor_t *output,
                    void *scratch, dqa_status_t *status)
{
    dqa_activation_state_t state;
    dqa_activation_start(&state, input, output, scratch);
    dqa_activation_rows(&state, params, output->info->height, status);
}
