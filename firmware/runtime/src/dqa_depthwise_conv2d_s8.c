/* dqa-mcu runtime: DEPTHWISE_CONV_2D, TFLite-exact int8 (docs/spec_tflite.md 3.2). */
#include <stddef.h>

#include "dqa_s8_internal.h"

void dqa_depthwise_conv2d_s8(const dqa_conv_s8_params_t *p, const int8_t *input, int8_t *output)
{
    const size_t filter_size = (size_t)p->kernel_h * p->kernel_w;
    int8_t *out = output;
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t top = oy * p->stride_h - p->pad_top;
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t left = ox * p->stride_w - p->pad_left;
            for (uint32_t oc = 0; oc < p->out_c; ++oc) {
                const uint32_t c = oc / p->out_c_per_group; /* the input channel (the depth multiplier's group) */
                const int8_t *filter = p->weights + oc * filter_size;
                int32_t acc = 0;
                for (int32_t ky = 0; ky < p->kernel_h; ++ky) {
                    const int32_t iy = top + ky * p->dilation_h;
                    if (iy < 0 || iy >= p->in_h) {
                        continue; /* taps outside the input are skipped (padding holds the zero point) */
                    }
                    for (int32_t kx = 0; kx < p->kernel_w; ++kx) {
                        const int32_t ix = left + kx * p->dilation_w;
                        if (ix < 0 || ix >= p->in_w) {
                            continue;
                        }
                        const int8_t x = input[((size_t)iy * p->in_w + (size_t)ix) * p->in_c + c];
                        acc += filter[(size_t)ky * p->kernel_w + (size_t)kx] * (x + p->input_offset);
                    }
                }
                acc = dqa__mbqm(dqa__wadd(acc, p->bias[oc]), p->multiplier[oc], p->shift[oc]);
                *out++ = (int8_t)dqa__clamp_s8(acc + p->output_offset, p->act_min, p->act_max);
            }
        }
    }
}
