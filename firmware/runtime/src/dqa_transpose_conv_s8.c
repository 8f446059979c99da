/* dqa-mcu runtime: TRANSPOSE_CONV, TFLite-exact int8 (docs/spec_tflite.md 3.15). */
#include <stddef.h>

#include "dqa_s8_internal.h"

/*
 * The reference kernel scatters every input pixel into the outputs it reaches; this gathers instead (the same
 * int32 sums, no scratch buffer): output row oy takes kernel row ky from input row iy where
 * iy * stride = oy + pad_top - ky.
 */
void dqa_transpose_conv_s8(const dqa_conv_s8_params_t *p, const int8_t *input, int8_t *output)
{
    const size_t filter_size = (size_t)p->kernel_h * p->kernel_w * p->in_c;
    int8_t *out = output;
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            for (uint32_t oc = 0; oc < p->out_c; ++oc) {
                const int8_t *filter = p->weights + oc * filter_size;
                int32_t acc = 0;
                for (int32_t ky = 0; ky < p->kernel_h; ++ky) {
                    const int32_t ty = oy + p->pad_top - ky;
                    if (ty < 0 || ty % p->stride_h != 0 || ty / p->stride_h >= p->in_h) {
                        continue;
                    }
                    for (int32_t kx = 0; kx < p->kernel_w; ++kx) {
                        const int32_t tx = ox + p->pad_left - kx;
                        if (tx < 0 || tx % p->stride_w != 0 || tx / p->stride_w >= p->in_w) {
                            continue;
                        }
                        const size_t pixel = (size_t)(ty / p->stride_h) * p->in_w + (size_t)(tx / p->stride_w);
                        const int8_t *x = input + pixel * p->in_c;
                        const int8_t *w = filter + ((size_t)ky * p->kernel_w + (size_t)kx) * p->in_c;
                        for (uint32_t ci = 0; ci < p->in_c; ++ci) {
                            acc += w[ci] * (x[ci] + p->input_offset);
                        }
                    }
                }
                acc = dqa__mbqm(dqa__wadd(acc, p->bias[oc]), p->multiplier[oc], p->shift[oc]);
                *out++ = (int8_t)dqa__clamp_s8(acc + p->output_offset, p->act_min, p->act_max);
            }
        }
    }
}
