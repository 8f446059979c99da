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

void dqa_activation(const dqa_activation_params_t *params, const dqa_tensor_t *input, dqa_tensor_t *output,
                    void *scratch, dqa_status_t *status)
{
    const dqa_requant_t *rq = &params->requant;
    const int16_t *table = params->table;
    int32_t reach = (int32_t)params->reach;
    uint32_t c_n = output->info->channels;
    uint32_t pixels = (uint32_t)output->info->height * output->info->width;
    int32_t *u = (int32_t *)scratch;
    int16_t *v = (int16_t *)(void *)(u + c_n);
    dqa_reader_t reader;
    dqa_writer_t writer;
    uint32_t i, c;

    dqa_reader_init(&reader, input);
    dqa_writer_init(&writer, output);
    for (i = 0; i < pixels; i++) {
        dqa_read_pixel(&reader, v);
        for (c = 0; c < c_n; c++) {
            int32_t k = dqa__requant((int64_t)v[c] * params->index_multiplier[c], params->index_shift[c], -reach,
                                     reach);
            u[c] = dqa__requant((int64_t)table[k + reach] * rq->multiplier[c], rq->shift[c], rq->out_min[c],
                                rq->out_max[c]);
        }
        dqa_write_pixel(&writer, u);
    }
    dqa_writer_finish(&writer, status);
}
