/*
 * Table activations: sigmoid, hard-sigmoid, hard-swish, tanh, SiLU (docs/spec.md 5.4.2).
 * Per element u = TABLE[v - v_min], v the input's fine value; the table (computed offline
 * from the function, already clamped to the output's range) holds output storage values,
 * and the output has m = 0, so u is stored as is. Every channel shares the table (the
 * quantizer gives the input one scale and the output one scale).
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
    const int16_t *table = params->table;
    int32_t v_min = params->input_min;
    int32_t last = (int32_t)params->table_length - 1; /* table_length >= 1 */
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
            int32_t k = (int32_t)v[c] - v_min;
            /* The quantizer sizes the table over the input's whole fine range [v_min, v_max], so k
             * is always in [0, table_length); the clamp only keeps a wrong table from reading out
             * of bounds. */
            k = k < 0 ? 0 : (k > last ? last : k);
            u[c] = table[k];
        }
        dqa_write_pixel(&writer, u);
    }
    dqa_writer_finish(&writer, status);
}
