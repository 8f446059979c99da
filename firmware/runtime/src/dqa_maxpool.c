/*
 * maxpool (docs/spec.md 5.5): v_out = max of v over the window, padded
 * positions ignored; the output keeps the input's quantization and stores
 * u = v_out (important channel) or v_out >> m. Traversal and scratch: dqa_pool.c.
 */
#include "dqa_internal.h"

void dqa_maxpool(const dqa_pool_params_t *params, const dqa_tensor_t *input, dqa_tensor_t *output,
                 void *scratch, dqa_status_t *status)
{
    dqa__pool(params, input, output, scratch, status, 1);
}
