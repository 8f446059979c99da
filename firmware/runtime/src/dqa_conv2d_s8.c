/* dqa-mcu runtime: CONV_2D, TFLite-exact int8 (docs/spec_tflite.md 3.1), on the MAC tiles of dqa_mac.h. */
#include <stddef.h>
#include <string.h>

#include "dqa_s8_internal.h"

/* The window of output pixel (top, left) in group `g`, widened (x + input offset, int16) into
 * `column` in the weights' (kh, kw, ci) order: padding taps are 0, as TFLite skips them. */
static void gather_window(const dqa_conv_s8_params_t *p, const int8_t *input, int32_t top, int32_t left,
                          uint32_t first_in, int16_t *column)
{
    const uint32_t in_c_g = p->in_c_per_group;
    const uint32_t row_taps = (uint32_t)p->kernel_w * in_c_g;
    const int32_t right = left + (p->kernel_w - 1) * p->dilation_w;
    /* a kernel row inside the image with one group and no horizontal dilation is one run of the input */
    const int contiguous = left >= 0 && right < p->in_w && p->dilation_w == 1 && in_c_g == p->in_c;
    for (int32_t ky = 0; ky < p->kernel_h; ++ky, column += row_taps) {
        const int32_t iy = top + ky * p->dilation_h;
        if (iy < 0 || iy >= p->in_h) {
            memset(column, 0, row_taps * sizeof *column);
            continue;
        }
        const int8_t *row = input + (size_t)iy * p->in_w * p->in_c + first_in;
        if (contiguous) {
            dqa__widen_s8(column, row + (size_t)left * p->in_c, row_taps, p->input_offset);
            continue;
        }
        for (int32_t kx = 0; kx < p->kernel_w; ++kx) {
            const int32_t ix = left + kx * p->dilation_w;
            int16_t *taps = column + (uint32_t)kx * in_c_g;
            if (ix < 0 || ix >= p->in_w) {
                memset(taps, 0, in_c_g * sizeof *taps);
            } else {
                dqa__widen_s8(taps, row + (size_t)ix * p->in_c, in_c_g, p->input_offset);
            }
        }
    }
}

void dqa_conv2d_s8(const dqa_conv_s8_params_t *p, const int8_t *input, int8_t *output, int16_t *column)
{
    const uint32_t in_c_g = p->in_c_per_group, out_c_g = p->out_c_per_group;
    const uint32_t groups = p->out_c / out_c_g;
    const uint32_t k = (uint32_t)p->kernel_h * p->kernel_w * in_c_g;
    const uint32_t tile_bytes = dqa__tile_bytes(k);
    const uint32_t tiles = (out_c_g + DQA_MAC_ROWS - 1u) / DQA_MAC_ROWS;
    const dqa_mac_run_t window = {column, 0, k}; /* the whole gathered window: one run */
    int8_t *out = output;
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t top = oy * p->stride_h - p->pad_top;
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t left = ox * p->stride_w - p->pad_left;
            const int8_t *tile = p->weights;
            uint32_t oc = 0;
            for (uint32_t g = 0; g < groups; ++g) {
                gather_window(p, input, top, left, g * in_c_g, column);
                for (uint32_t t = 0; t < tiles; ++t, tile += tile_bytes) {
                    int32_t acc[DQA_MAC_ROWS] = {0};
                    const uint32_t rows = out_c_g - t * DQA_MAC_ROWS;
                    dqa__mac_tile_runs(acc, tile, tile_bytes, &window, 1u, 0u);
                    for (uint32_t r = 0; r < DQA_MAC_ROWS && r < rows; ++r, ++oc) {
                        const int32_t v = dqa__mbqm(dqa__wadd(acc[r], p->bias[oc]), p->multiplier[oc], p->shift[oc]);
                        *out++ = (int8_t)dqa__clamp_s8(v + p->output_offset, p->act_min, p->act_max);
                    }
                }
            }
        }
    }
}
