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

/* Channels per weight block, and per step of block_acc: a vector of int16 lanes on MVE, a word of int8 on
 * the others (the code generator's depthwise_block()). */
#if DQA_CONV_TILE_ROWS
#define DW_LANES 8u
#else
#define DW_LANES 4u
#endif
#define DW_3X3_TAPS 9

/* One output pixel's walk over its taps inside the input: rows x row_taps, steps to the next tap. */
typedef struct {
    int32_t rows, row_taps;
    int32_t x_step, y_step; /* input: next tap of a row, next row */
    int32_t w_step, w_row;  /* weights, in the block being read: the same */
    int32_t offset;         /* the input's: -zero point */
    int32_t kernel_w, taps; /* the layer's: kernel_w and kernel_h x kernel_w */
    uint32_t multiplier;    /* the layer's depth multiplier */
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

#if DQA_CONV_TILE_ROWS
#define DQA_DW_BLOCKS 1
#define DQA_DW_BLOCKS_3X3 1

/* MVE (Cortex-M55): one tap of a block's eight channels as int16 lanes: x + offset (|.| <= 255) widened as
 * loaded, times the tap's weights `wv`; VMULLB and VMULLT give the even and the odd lanes' products as int32
 * (MVE has no lane-wise multiply-accumulate of two vectors), added to `even` and `odd`. */
#define BLOCK_MAC(x, wv, offset, even, odd)                                                                   \
    do {                                                                                                      \
        const int16x8_t xv_ = vaddq_s16(vldrbq_s16(x), (offset));                                             \
        even = vaddq_s32(even, vmullbq_int_s16(xv_, (wv)));                                                   \
        odd = vaddq_s32(odd, vmulltq_int_s16(xv_, (wv)));                                                     \
    } while (0)

/* The sums complete before the next tap's loads: GCC 12 otherwise formed all nine taps' products first
 * and spilled them. */
#define BLOCK_SUMS_DONE(...) __asm__ volatile("" : __VA_ARGS__ : : "memory")

/* channel_acc of the eight channels of a weight block (depth multiplier 1); VST2 interleaves the even and
 * the odd lanes back into channel order. */
static inline void block_acc(const int8_t *x, const int8_t *w, const dw_walk_t *k, int32_t *acc)
{
    const int16x8_t offset = vdupq_n_s16((int16_t)k->offset);
    int32x4x2_t a = {{vdupq_n_s32(0), vdupq_n_s32(0)}};
    for (int32_t row = 0; row < k->rows; ++row, x += k->y_step, w += k->w_row) {
        for (int32_t kx = 0; kx < k->row_taps; ++kx) {
            BLOCK_MAC(x + kx * k->x_step, vldrbq_s16(w + kx * (int32_t)DW_LANES), offset, a.val[0], a.val[1]);
            BLOCK_SUMS_DONE("+w"(a.val[0]), "+w"(a.val[1]));
        }
    }
    vst2q_s32(acc, a);
}

/* block_acc of `blocks` consecutive blocks for a full window of a 3x3 kernel (every interior pixel), the
 * nine taps unrolled at immediate offsets of the block's weights. (Both pixels of a pair in one pass, each
 * tap's weights loaded once for both, spilled their four sums: VWW 8.91 -> 9.01 M instructions.) */
static __attribute__((noinline)) void blocks_3x3(const int8_t *x, const int8_t *w, const dw_walk_t *k,
                                                 uint32_t blocks, int32_t *acc)
{
    const int32_t x_step = k->x_step, y_step = k->y_step, lanes = (int32_t)DW_LANES;
    const int16x8_t offset = vdupq_n_s16((int16_t)k->offset);
    for (uint32_t b = 0; b < blocks; ++b, x += DW_LANES, w += DW_3X3_TAPS * DW_LANES, acc += DW_LANES) {
        int32x4x2_t a = {{vdupq_n_s32(0), vdupq_n_s32(0)}};
        const int8_t *row = x;
#pragma GCC unroll 3
        for (int32_t ky = 0; ky < 3; ++ky, row += y_step) {
#pragma GCC unroll 3
            for (int32_t kx = 0; kx < 3; ++kx) {
                BLOCK_MAC(row + kx * x_step, vldrbq_s16(w + (3 * ky + kx) * lanes), offset, a.val[0], a.val[1]);
                BLOCK_SUMS_DONE("+w"(a.val[0]), "+w"(a.val[1]));
            }
        }
        vst2q_s32(acc, a);
    }
}

/* The DSP loop uses dqa_mac.h's SXTB16 helpers, which it defines for the cores without MVE. */
#elif defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#define DQA_DW_BLOCKS 1
#define DQA_DW_BLOCKS_3X3 1

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

/* The input offset in both halfwords: SXTAB16's addend. */
static inline int16x2_t offset_pairs(const dw_walk_t *k)
{
    return (int16x2_t)(((uint32_t)k->offset & 0xffffu) * 0x10001u);
}

/* channel_acc of the four channels of a weight block (depth multiplier 1: inputs and weights in the same
 * channel order; a tap's four weights are one word, the next tap's the next word). */
static inline void block_acc(const int8_t *x, const int8_t *w, const dw_walk_t *k, int32_t *acc)
{
    const int32_t x_step = k->x_step, y_step = k->y_step;
    const int16x2_t offset2 = offset_pairs(k);
    const int32_t lanes = (int32_t)DW_LANES;
    int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
    if (k->row_taps == 2) { /* a 3-wide window's first or last column: rows' taps unrolled */
        for (int32_t row = 0; row < k->rows; ++row, x += y_step, w += k->w_row) {
            QUAD_TAP(x, w, offset2, a0, a1, a2, a3);
            QUAD_TAP(x + x_step, w + lanes, offset2, a0, a1, a2, a3);
        }
    } else {
        for (int32_t row = 0; row < k->rows; ++row, x += y_step, w += k->w_row) {
            for (int32_t kx = 0; kx < k->row_taps; ++kx) {
                QUAD_TAP(x + kx * x_step, w + kx * lanes, offset2, a0, a1, a2, a3);
            }
        }
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

/* block_acc of `blocks` consecutive blocks for a full window of a 3x3 kernel (every interior pixel): each
 * block's nine taps are nine consecutive words, read at immediate offsets, the taps unrolled. Out of line
 * and on its own, so that GCC keeps the steps and the four accumulators in registers (in the general
 * block_acc's loop it spilled them). */
static __attribute__((noinline)) void blocks_3x3(const int8_t *x, const int8_t *w, const dw_walk_t *k,
                                                 uint32_t blocks, int32_t *acc)
{
    const int32_t x_step = k->x_step, y_step = k->y_step, lanes = (int32_t)DW_LANES;
    const int16x2_t offset2 = offset_pairs(k);
    for (uint32_t b = 0; b < blocks; ++b, x += DW_LANES, w += DW_3X3_TAPS * DW_LANES, acc += DW_LANES) {
        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
        const int8_t *row = x;
#pragma GCC unroll 3
        for (int32_t ky = 0; ky < 3; ++ky, row += y_step) {
            QUAD_TAP(row, w + 3 * ky * lanes, offset2, a0, a1, a2, a3);
            QUAD_TAP(row + x_step, w + (3 * ky + 1) * lanes, offset2, a0, a1, a2, a3);
            QUAD_TAP(row + 2 * x_step, w + (3 * ky + 2) * lanes, offset2, a0, a1, a2, a3);
        }
        acc[0] = a0;
        acc[1] = a1;
        acc[2] = a2;
        acc[3] = a3;
    }
}
#else
#define DQA_DW_BLOCKS 0
#define DQA_DW_BLOCKS_3X3 0
#endif

/* The accumulators acc[0 .. n) of one pixel's channels oc .. oc + n - 1 (oc a multiple of DW_LANES), its
 * window's first tap `first_tap` at x (channel 0), block by block from `block`, the weights of channel
 * oc. Out of line, so that the loops have the registers to themselves: inlined into the row loop, GCC 12
 * kept the weights' pointers, the steps and the input offset on the stack (VWW on Cortex-M7). */
static __attribute__((noinline)) void pixel_acc(const int8_t *x, const int8_t *block, int32_t first_tap, uint32_t oc,
                                                uint32_t n, const dw_walk_t *walk, int32_t *acc)
{
    dw_walk_t k = *walk; /* a copy: the stores to acc cannot alias it */
    const size_t block_bytes = DW_LANES * (size_t)k.taps;
    uint32_t c = 0;
#if DQA_DW_BLOCKS
    if (k.multiplier == 1u) {
        k.w_row = k.kernel_w * (int32_t)DW_LANES;
        const int8_t *w = block + first_tap * (int32_t)DW_LANES;
        for (; c + DW_LANES <= n; c += DW_LANES, w += block_bytes) {
            block_acc(x + oc + c, w, &k, acc + c);
        }
        block += (size_t)c * (size_t)k.taps;
    }
#endif
    for (; c < n; c += DW_LANES, block += block_bytes) { /* the rest, channel by channel */
        const uint32_t lanes = n - c < DW_LANES ? n - c : DW_LANES; /* the layer's last block may be narrower */
        k.w_step = (int32_t)lanes;
        k.w_row = k.kernel_w * (int32_t)lanes;
        for (uint32_t i = 0; i < lanes; ++i) {
            acc[c + i] = channel_acc(x + (oc + c + i) / k.multiplier, block + first_tap * (int32_t)lanes + i, &k);
        }
    }
}

/* Per output pixel and channel, the taps inside the input (padding holds the zero point: its taps add
 * nothing); weights in blocks of DW_LANES output channels (the last one narrower when out_c is not a
 * multiple of DW_LANES), each block tap-major (kernel_h x kernel_w x its channels), so that a tap's weights
 * for consecutive channels lie together as the input's channels do and a block's taps follow each other.
 * With depth multiplier 1, a block at a time (block_acc, blocks_3x3 for a full 3x3 window, on DSP and MVE
 * cores); the rest one by one. Output rows [first_row, end_row); an output row's input rows are read in
 * place where they lie at one stride in memory, else (a ring's slots wrap inside the window) copied together
 * into `window_rows` first. */
void dqa_depthwise_conv2d_s8_rows(const dqa_conv_s8_params_t *p, const dqa_rows_s8_t *input,
                                  const dqa_rows_s8_t *output, uint32_t first_row, uint32_t end_row,
                                  int8_t *window_rows)
{
    const uint32_t out_c = p->out_c, multiplier = p->out_c_per_group;
    const int32_t in_c = p->in_c, dilation_h = p->dilation_h;
    const dqa_rows_s8_t in = *input, out_rows = *output;
    const int32_t in_place_step = dilation_h * (int32_t)in.row_bytes;
    dw_walk_t k = {0, 0, p->dilation_w * in_c, in_place_step, 0, 0, p->input_offset, p->kernel_w,
                   p->kernel_h * p->kernel_w, multiplier};
#if DQA_DW_BLOCKS_3X3
    const int kernel_3x3 = multiplier == 1u && k.taps == DW_3X3_TAPS && p->kernel_w == 3; /* blocks_3x3's */
#endif
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
            const int8_t *window[2];
            int32_t row_taps[2], first_tap[2];
            for (uint32_t j = 0; j < count; ++j) {
                const int32_t left = (ox + (int32_t)j) * p->stride_w - p->pad_left;
                int32_t kx0, kx1;
                taps_inside(left, p->in_w, p->kernel_w, p->dilation_w, &kx0, &kx1);
                row_taps[j] = kx1 - kx0;
                /* the first tap inside (none: the pixel's window is all padding, nothing is read) */
                const int any = k.rows > 0 && row_taps[j] > 0;
                window[j] = rows + (any ? (ptrdiff_t)(left + kx0 * p->dilation_w) * in_c : 0);
                first_tap[j] = any ? ky0 * p->kernel_w + kx0 : 0;
            }
            for (uint32_t oc = 0; oc < out_c; oc += DQA_REQUANTIZE_CHANNELS) {
                const uint32_t left_c = out_c - oc;
                const uint32_t n = left_c < DQA_REQUANTIZE_CHANNELS ? left_c : DQA_REQUANTIZE_CHANNELS;
                int32_t acc[2][DQA_REQUANTIZE_CHANNELS];
                for (uint32_t j = 0; j < count; ++j) { /* every block before channel oc is full */
                    uint32_t c = 0;
                    k.row_taps = row_taps[j];
#if DQA_DW_BLOCKS_3X3
                    /* a full window straight to the unrolled loop (pixel_acc's entry cost as much) */
                    if (kernel_3x3 && k.rows == 3 && k.row_taps == 3) {
                        c = n / DW_LANES * DW_LANES;
                        blocks_3x3(window[j] + oc, p->weights + (size_t)oc * DW_3X3_TAPS, &k, n / DW_LANES, acc[j]);
                    }
#endif
                    if (c < n) {
                        pixel_acc(window[j], p->weights + (size_t)(oc + c) * (size_t)k.taps, first_tap[j], oc + c,
                                  n - c, &k, acc[j] + c);
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
