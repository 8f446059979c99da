/* dqa-mcu runtime: DEPTHWISE_CONV_2D, TFLite-exact int8 (docs/spec_tflite.md 3.2). */
#include <stddef.h>

#include "dqa_s8_internal.h"

/* The taps [*first, *last) of a kernel axis whose input index start + k * dilation lies in [0, size):
 * the loops visit only those (no test per tap; all of them for an interior pixel). */
static void taps_inside(int32_t start, int32_t size, int32_t kernel, int32_t dilation, int32_t *first,
                        int32_t *last)
{
    const int32_t lo = start < 0 ? (dilation - 1 - start) / dilation : 0;
    const int32_t hi = size > start ? (size - start + dilation - 1) / dilation : 0;
    *first = lo < kernel ? lo : kernel;
    *last = hi < *first ? *first : (hi < kernel ? hi : kernel);
}

/* Per output pixel and channel, the taps inside the input (padding holds the zero point: its taps add
 * nothing); weights tap-major (kernel_h x kernel_w x out_c, TFLite's own filter layout), so that a tap's
 * weights for consecutive channels lie together as the input's channels do; rows of 3 taps unrolled. */
void dqa_depthwise_conv2d_s8(const dqa_conv_s8_params_t *p, const int8_t *input, int8_t *output)
{
    const uint32_t out_c = p->out_c, multiplier = p->out_c_per_group;
    const int32_t in_c = p->in_c, offset = p->input_offset;
    const int32_t x_step = p->dilation_w * in_c, y_step = p->dilation_h * p->in_w * in_c; /* next tap */
    const int32_t w_step = (int32_t)out_c, w_row = p->kernel_w * w_step;
    const int32_t output_offset = p->output_offset, act_min = p->act_min, act_max = p->act_max;
    const int32_t *bias = p->bias, *mult = p->multiplier, *shift = p->shift;
    int8_t *out = output;
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t top = oy * p->stride_h - p->pad_top;
        int32_t ky0, ky1;
        taps_inside(top, p->in_h, p->kernel_h, p->dilation_h, &ky0, &ky1);
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t left = ox * p->stride_w - p->pad_left;
            int32_t kx0, kx1;
            taps_inside(left, p->in_w, p->kernel_w, p->dilation_w, &kx0, &kx1);
            const int32_t row_taps = kx1 - kx0;
            /* the first tap inside (none: the pixel's window is all padding, nothing is read) */
            const int any = ky0 < ky1 && row_taps > 0;
            const int8_t *window = input + (any ? (ptrdiff_t)((top + ky0 * p->dilation_h) * p->in_w +
                                                              left + kx0 * p->dilation_w) * in_c : 0);
            const int8_t *first_weights = p->weights + (any ? (ptrdiff_t)(ky0 * p->kernel_w + kx0) * w_step : 0);
            for (uint32_t oc = 0; oc < out_c; ++oc) {
                const int8_t *x = window + oc / multiplier, *w = first_weights + oc;
                int32_t acc = 0;
                for (int32_t ky = ky0; ky < ky1; ++ky, x += y_step, w += w_row) {
                    if (row_taps == 3) {
                        acc += w[0] * (x[0] + offset) + w[w_step] * (x[x_step] + offset) +
                               w[2 * w_step] * (x[2 * x_step] + offset);
                        continue;
                    }
                    for (int32_t kx = 0; kx < row_taps; ++kx) {
                        acc += w[kx * w_step] * (x[kx * x_step] + offset);
                    }
                }
                *out++ = dqa__conv_output_s8(acc, bias[oc], mult[oc], shift[oc], output_offset, act_min, act_max);
            }
        }
    }
}
