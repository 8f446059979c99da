/* dqa-mcu runtime: CONV_2D, TFLite-exact int8 (docs/spec_tflite.md 3.1), on the MAC tiles of dqa_mac.h. */
#include <stddef.h>
#include <string.h>

#include "dqa_s8_internal.h"

/* Values k .. k + n - 1 of a column (dqa__column_base()) set to 0: padding taps (the zero point, which
 * TFLite skips). Out of line: one copy for gather_window's two call sites, whose loop then keeps more in
 * registers (ResNet-8 int8 on Cortex-M7: 20.99 -> 20.93 M instructions, flash unchanged). */
__attribute__((noinline)) static void zero_values(int16_t *column, uint32_t k, uint32_t n)
{
    for (uint32_t end = k + n; k < end; ++k) {
        column[(k >> 1) * DQA_COLUMN_PAIR_STEP + (k & 1u)] = 0;
    }
}

/* The window of output pixel (top, left) in group `g`, widened (x + input offset, int16) into `column`
 * (dqa__column_base()) in the weights' (kh, kw, ci) order. */
static void gather_window(const dqa_conv_s8_params_t *p, const dqa_rows_s8_t *input, int32_t top, int32_t left,
                          uint32_t first_in, int16_t *column)
{
    const uint32_t in_c_g = p->in_c_per_group;
    const uint32_t row_taps = (uint32_t)p->kernel_w * in_c_g;
    const int32_t right = left + (p->kernel_w - 1) * p->dilation_w;
    /* a kernel row inside the image with one group and no horizontal dilation is one run of the input */
    const int contiguous = left >= 0 && right < p->in_w && p->dilation_w == 1 && in_c_g == p->in_c;
    uint32_t k = 0;
    for (int32_t ky = 0; ky < p->kernel_h; ++ky, k += row_taps) {
        const int32_t iy = top + ky * p->dilation_h;
        if (iy < 0 || iy >= p->in_h) {
            zero_values(column, k, row_taps);
            continue;
        }
        const int8_t *row = dqa_row_s8(input, (uint32_t)iy) + first_in;
        if (contiguous) {
            dqa__widen_s8(column, k, DQA_COLUMN_PAIR_STEP, row + (size_t)left * p->in_c, row_taps, p->input_offset);
            continue;
        }
        for (int32_t kx = 0; kx < p->kernel_w; ++kx) {
            const int32_t ix = left + kx * p->dilation_w;
            const uint32_t tap = k + (uint32_t)kx * in_c_g;
            if (ix < 0 || ix >= p->in_w) {
                zero_values(column, tap, in_c_g);
            } else {
                dqa__widen_s8(column, tap, DQA_COLUMN_PAIR_STEP, row + (size_t)ix * p->in_c, in_c_g, p->input_offset);
            }
        }
    }
}

#define TILES_PER_CALL (DQA_REQUANTIZE_CHANNELS / DQA_MAC_ROWS) /* a dqa__requantize_s8 call's channels */

/* acc0, acc1 [t * DQA_MAC_ROWS ..] of `n` consecutive tiles against both columns. Out of line, so that the
 * MAC loops have the registers to themselves: inlined into the pixel loop, GCC 12 kept its pointers on the
 * stack, about 50 instructions around every pass of a half tile on Cortex-M55. */
__attribute__((noinline)) static void accumulate_tiles(int32_t *acc0, int32_t *acc1, const int8_t *tile,
                                                       uint32_t tile_bytes, uint32_t n, const int16_t *columns,
                                                       uint32_t len)
{
    for (uint32_t t = 0; t < n; ++t, tile += tile_bytes) {
        dqa__mac_tile_2cols(acc0 + t * DQA_MAC_ROWS, acc1 + t * DQA_MAC_ROWS, tile, tile_bytes, columns, len);
    }
}

/* Output pixels two at a time (consecutive in NHWC order, across rows within [first_row, end_row)): each
 * weight tile is read once for both windows (dqa__mac_tile_2cols); a lone last pixel runs with its partner
 * column's old values, its outputs unused. */
void dqa_conv2d_s8_rows(const dqa_conv_s8_params_t *p, const dqa_rows_s8_t *input, const dqa_rows_s8_t *output,
                        uint32_t first_row, uint32_t end_row, int16_t *columns)
{
    const uint32_t in_c_g = p->in_c_per_group, out_c_g = p->out_c_per_group;
    const uint32_t groups = p->out_c / out_c_g;
    const uint32_t k = (uint32_t)p->kernel_h * p->kernel_w * in_c_g;
    const uint32_t k_even = k + (k & 1u); /* an odd K's columns end in a zero: whole pairs */
    const uint32_t tile_bytes = dqa__tile_bytes(k);
    const uint32_t tiles = (out_c_g + DQA_MAC_ROWS - 1u) / DQA_MAC_ROWS;
    const uint32_t end = end_row * p->out_w;
    /* the rows as locals: the column's int16 stores could otherwise alias their uint16 slot count */
    const dqa_rows_s8_t in = *input, out_rows = *output;
    if (first_row >= end_row) {
        return;
    }
    if ((k & 1u) || ((end - first_row * p->out_w) & 1u)) { /* those zeros; defined values for a lone pixel's partner */
        memset(columns, 0, 2u * k_even * sizeof *columns);
    }
    for (uint32_t i = first_row * p->out_w; i < end; i += 2u) {
        const uint32_t count = i + 1u < end ? 2u : 1u;
        int32_t top[2], left[2];
        int8_t *out[2];
        for (uint32_t j = 0; j < count; ++j) {
            const uint32_t oy = (i + j) / p->out_w, ox = (i + j) % p->out_w;
            top[j] = (int32_t)oy * p->stride_h - p->pad_top;
            left[j] = (int32_t)ox * p->stride_w - p->pad_left;
            out[j] = dqa_row_s8(&out_rows, oy) + (size_t)ox * p->out_c;
        }
        const int8_t *tile = p->weights;
        uint32_t oc = 0;
        for (uint32_t g = 0; g < groups; ++g) {
            for (uint32_t j = 0; j < count; ++j) {
                gather_window(p, &in, top[j], left[j], g * in_c_g, dqa__column_base(columns, j, k_even));
            }
            /* the group's tiles DQA_REQUANTIZE_CHANNELS / DQA_MAC_ROWS at a time */
            for (uint32_t t = 0; t < tiles;) {
                int32_t acc[2][DQA_REQUANTIZE_CHANNELS]; /* pixel, channel: one base register for both */
                const uint32_t n = tiles - t < TILES_PER_CALL ? tiles - t : TILES_PER_CALL;
                uint32_t rows = n * DQA_MAC_ROWS;
                accumulate_tiles(acc[0], acc[1], tile, tile_bytes, n, columns, k_even);
                t += n;
                tile += n * tile_bytes;
                if (oc + rows > (g + 1u) * out_c_g) { /* the group's last tile's missing rows */
                    rows = (g + 1u) * out_c_g - oc;
                }
                dqa__requantize_s8(p, acc[0], count, oc, rows, out);
                oc += rows;
            }
        }
    }
}

void dqa_conv2d_s8(const dqa_conv_s8_params_t *p, const int8_t *input, int8_t *output, int16_t *columns)
{
    const dqa_rows_s8_t in = dqa_whole_s8(input, (uint32_t)p->in_w * p->in_c, p->in_h);
    const dqa_rows_s8_t out = dqa_whole_s8(output, (uint32_t)p->out_w * p->out_c, p->out_h);
    dqa_conv2d_s8_rows(p, &in, &out, 0, p->out_h, columns);
}
