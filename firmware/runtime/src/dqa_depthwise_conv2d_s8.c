/* dqa-mcu runtime: DEPTHWISE_CONV_2D, TFLite-exact int8 (docs/spec_tflite.md 3.2). */
#include <stddef.h>
#include <string.h>

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

/* One output pixel's walk over its taps inside the input: rows x row_taps, steps to the next tap. */
typedef struct {
    int32_t rows, row_taps;
    int32_t x_step, y_step; /* input: next tap of a row, next row */
    int32_t w_step, w_row;  /* weights: the same */
    int32_t offset;         /* the input's: -zero point */
} dw_walk_t;

/* One channel's accumulator; x and w at its first tap; rows of 3 taps unrolled. */
static inline int32_t channel_acc(const int8_t *x, const int8_t *w, const dw_walk_t *k)
{
    const int32_t x_step = k->x_step, w_step = k->w_step, offset = k->offset;
    int32_t acc = 0;
    for (int32_t row = 0; row < k->rows; ++row, x += k->y_step, w += k->w_row) {
        if (k->row_taps == 3) {
            acc += w[0] * (x[0] + offset) + w[w_step] * (x[x_step] + offset) +
                   w[2 * w_step] * (x[2 * x_step] + offset);
            continue;
        }
        for (int32_t kx = 0; kx < k->row_taps; ++kx) {
            acc += w[kx * w_step] * (x[kx * x_step] + offset);
        }
    }
    return acc;
}

#define DW_LANES 4u /* channels per step of quad_acc */

#if DQA_CONV_TILE_ROWS
#define DQA_DW_QUADS 1

/* MVE (Cortex-M55): the four channels as int32 lanes, widened as loaded (MVE's VMLA takes only a scalar: VMUL, VADD). */
static inline void quad_acc(const int8_t *x, const int8_t *w, const dw_walk_t *k, int32_t *acc)
{
    const int32x4_t offset = vdupq_n_s32(k->offset);
    int32x4_t a = vdupq_n_s32(0);
    for (int32_t row = 0; row < k->rows; ++row, x += k->y_step, w += k->w_row) {
        for (int32_t kx = 0; kx < k->row_taps; ++kx) {
            const int32x4_t xv = vaddq_s32(vldrbq_s32(x + kx * k->x_step), offset);
            a = vaddq_s32(a, vmulq_s32(xv, vldrbq_s32(w + kx * k->w_step)));
        }
    }
    vst1q_s32(acc, a);
}

/* The DSP loop uses dqa_mac.h's SXTB16 helpers, which it defines for the cores without MVE. */
#elif defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define DQA_DW_QUADS 1

/* Channels c..c+3 of one tap: SXTAB16 widens two channels' inputs and adds the offset in one
 * instruction, SXTB16 widens their weights, SMLABB / SMLATT take each channel's product (ten
 * instructions for four MACs; exact: |acc| <= 255 * 128 * taps). A macro on scalar accumulators: GCC 12
 * kept an array of them, through an inline function, on the stack. */
#define QUAD_TAP(x, w, offset2, a0, a1, a2, a3)                                                               \
    do {                                                                                                      \
        const uint32_t xs_ = dqa__load32(x), ws_ = dqa__load32(w);                                            \
        const int16x2_t xe_ = __sxtab16((offset2), (int8x4_t)xs_), xo_ = dqa__sxtab16_ror8((offset2), xs_);   \
        const int16x2_t we_ = __sxtb16((int8x4_t)ws_), wo_ = dqa__sxtb16_ror8(ws_);                           \
        a0 = __smlabb(we_, xe_, a0);                                                                          \
        a1 = __smlabb(wo_, xo_, a1);                                                                          \
        a2 = __smlatt(we_, xe_, a2);                                                                          \
        a3 = __smlatt(wo_, xo_, a3);                                                                          \
    } while (0)

/* channel_acc of channels c..c+3 (depth multiplier 1: inputs and weights in the same channel order); a
 * full 3x3 window (every interior pixel of a 3x3 depthwise) tested once, its rows' taps unrolled (all
 * nine unrolled measured slower on Cortex-M7: 24.59 M against 24.34 M for VWW). */
static inline void quad_acc(const int8_t *x, const int8_t *w, const dw_walk_t *k, int32_t *acc)
{
    const int32_t x_step = k->x_step, w_step = k->w_step;
    const int16x2_t offset2 = (int16x2_t)(((uint32_t)k->offset & 0xffffu) * 0x10001u);
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    if (k->rows == 3 && k->row_taps == 3) {
        for (int32_t row = 0; row < 3; ++row, x += k->y_step, w += k->w_row) {
            QUAD_TAP(x, w, offset2, a0, a1, a2, a3);
            QUAD_TAP(x + x_step, w + w_step, offset2, a0, a1, a2, a3);
            QUAD_TAP(x + 2 * x_step, w + 2 * w_step, offset2, a0, a1, a2, a3);
        }
    } else if (k->row_taps == 2) { /* a 3-wide window's first or last column: rows' taps unrolled too */
        for (int32_t row = 0; row < k->rows; ++row, x += k->y_step, w += k->w_row) {
            QUAD_TAP(x, w, offset2, a0, a1, a2, a3);
            QUAD_TAP(x + x_step, w + w_step, offset2, a0, a1, a2, a3);
        }
    } else {
        for (int32_t row = 0; row < k->rows; ++row, x += k->y_step, w += k->w_row) {
            for (int32_t kx = 0; kx < k->row_taps; ++kx) {
                QUAD_TAP(x + kx * x_step, w + kx * w_step, offset2, a0, a1, a2, a3);
            }
        }
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}
#else
#define DQA_DW_QUADS 0
#endif

/* Per output pixel and channel, the taps inside the input (padding holds the zero point: its taps add
 * nothing); weights tap-major (kernel_h x kernel_w x out_c, TFLite's own filter layout), so that a tap's
 * weights for consecutive channels lie together as the input's channels do. On DSP cores, with depth
 * multiplier 1, four channels at a time (quad_acc); the rest of the channels one by one. Output rows
 * [first_row, end_row); an output row's input rows are read in place where they lie at one stride in
 * memory, else (a ring's slots wrap inside the window) copied together into `window_rows` first. */
void dqa_depthwise_conv2d_s8_rows(const dqa_conv_s8_params_t *p, const dqa_rows_s8_t *input,
                                  const dqa_rows_s8_t *output, uint32_t first_row, uint32_t end_row,
                                  int8_t *window_rows)
{
    const uint32_t out_c = p->out_c, multiplier = p->out_c_per_group;
    const int32_t in_c = p->in_c, dilation_h = p->dilation_h;
    const dqa_rows_s8_t in = *input, out_rows = *output;
    const int32_t in_place_step = dilation_h * (int32_t)in.row_bytes;
    dw_walk_t k = {0, 0, p->dilation_w * in_c, in_place_step, (int32_t)out_c, p->kernel_w * (int32_t)out_c,
                   p->input_offset};
    for (int32_t oy = (int32_t)first_row; oy < (int32_t)end_row; ++oy) {
        const int32_t top = oy * p->stride_h - p->pad_top;
        int32_t ky0, ky1;
        taps_inside(top, p->in_h, p->kernel_h, dilation_h, &ky0, &ky1);
        k.rows = ky1 - ky0;
        const int8_t *rows = in.data; /* the first row inside, at k.y_step from the next */
        k.y_step = in_place_step;
        if (k.rows > 0) {
            const uint32_t iy = (uint32_t)(top + ky0 * dilation_h);
            rows = dqa_row_s8(&in, iy);
            if (iy % in.slots + (uint32_t)((k.rows - 1) * dilation_h) >= in.slots) { /* wraps */
                for (int32_t r = 0; r < k.rows; ++r) {
                    memcpy(window_rows + (size_t)r * in.row_bytes, dqa_row_s8(&in, iy + (uint32_t)(r * dilation_h)),
                           in.row_bytes);
                }
                rows = window_rows;
                k.y_step = (int32_t)in.row_bytes;
            }
        }
        int8_t *out = dqa_row_s8(&out_rows, (uint32_t)oy);
        for (int32_t ox = 0; ox < p->out_w; ox += 2) { /* two pixels per dqa__requantize_s8 call */
            const uint32_t count = ox + 1 < p->out_w ? 2u : 1u;
            int8_t *pixel_out[2] = {out + (size_t)ox * out_c, out + (size_t)(ox + (int32_t)count - 1) * out_c};
            const int8_t *window[2], *first_weights[2];
            int32_t row_taps[2];
            for (uint32_t j = 0; j < count; ++j) {
                const int32_t left = (ox + (int32_t)j) * p->stride_w - p->pad_left;
                int32_t kx0, kx1;
                taps_inside(left, p->in_w, p->kernel_w, p->dilation_w, &kx0, &kx1);
                row_taps[j] = kx1 - kx0;
                /* the first tap inside (none: the pixel's window is all padding, nothing is read) */
                const int any = k.rows > 0 && row_taps[j] > 0;
                window[j] = rows + (any ? (ptrdiff_t)(left + kx0 * p->dilation_w) * in_c : 0);
                first_weights[j] = p->weights + (any ? (ptrdiff_t)(ky0 * p->kernel_w + kx0) * k.w_step : 0);
            }
            for (uint32_t oc = 0; oc < out_c; oc += DQA_REQUANTIZE_CHANNELS) {
                const uint32_t left_c = out_c - oc;
                const uint32_t n = left_c < DQA_REQUANTIZE_CHANNELS ? left_c : DQA_REQUANTIZE_CHANNELS;
                int32_t acc[2][DQA_REQUANTIZE_CHANNELS];
                for (uint32_t j = 0; j < count; ++j) {
                    k.row_taps = row_taps[j];
                    uint32_t c = 0;
#if DQA_DW_QUADS
                    for (; multiplier == 1u && c + DW_LANES <= n; c += DW_LANES) {
                        quad_acc(window[j] + oc + c, first_weights[j] + oc + c, &k, acc[j] + c);
                    }
#endif
                    for (; c < n; ++c) {
                        acc[j][c] = channel_acc(window[j] + (oc + c) / multiplier, first_weights[j] + oc + c, &k);
                    }
                }
                if (count == 1u) { /* the lone pixel's partner: defined values, its outputs overwritten */
                    memcpy(acc[1], acc[0], n * sizeof acc[0][0]);
                }
                dqa__requantize_s8(p, acc[0], count, oc, n, pixel_out);
            }
        }
    }
}

/* A whole input's rows never wrap: no window_rows. */
void dqa_depthwise_conv2d_s8(const dqa_conv_s8_params_t *p, const int8_t *input, int8_t *output)
{
    const dqa_rows_s8_t in = dqa_whole_s8(input, (uint32_t)p->in_w * p->in_c, p->in_h);
    const dqa_rows_s8_t out = dqa_whole_s8(output, (uint32_t)p->out_w * p->out_c, p->out_h);
    dqa_depthwise_conv2d_s8_rows(p, &in, &out, 0, p->out_h, NULL);
}
