/*
 * avgpool and global_avgpool (docs/spec.md 5.5): S = int32 sum of v over the
 * window, padding counted as 0 (count_include_pad; the divisor is folded
 * into M); u = clamp(rshift_round(S * M, T)). Global pooling is avgpool with
 * the kernel covering the input. Traversal and scratch: dqa_pool.c.
 */
#include "dqa_internal.h"

void dqa_avgpool(const dqa_pool_params_t *params, const dqa_tensor_t *input, dqa_tensor_t *output,
                 void *scratch, dqa_status_t *status)
{
    dqa__pool(params, input, output, scratch, status, 0);
}
