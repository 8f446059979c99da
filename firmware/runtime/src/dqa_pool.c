/*
 * Scratch size shared by avgpool and maxpool (docs/spec.md 5.5).
 *
 * Scratch (4-byte aligned): int32 acc[C], int16 ring[R * C] with
 * R = 1 for a single output position (global pooling: pixels are streamed),
 * else dqa__window_ring_pixels(H, W, KH, KW, 1, 1).
 */
#include "dqa_internal.h"

uint32_t dqa__pool_ring_pixels(const dqa_pool_params_t *params, const dqa_tensor_info_t *input,
                               const dqa_tensor_info_t *output)
{
    if (output->height == 1u && output->width == 1u) {
        return 1u;
    }
    return dqa__window_ring_pixels(input->height, input->width, params->kernel_h, params->kernel_w, 1u, 1u);
}

size_t dqa_pool_get_buffer_size(const dqa_pool_params_t *params, const dqa_tensor_info_t *input,
                                const dqa_tensor_info_t *output)
{
    return DQA_ALIGN4((size_t)output->channels * sizeof(int32_t) +
                      (size_t)dqa__pool_ring_pixels(params, input, output) * input->channels * sizeof(int16_t));
}
