/*
 * Inner multiply-accumulate kernel of conv2d and linear: a tile of
 * DQA_MAC_ROWS output channels against runs of int16 activations (kernel
 * rows of the line buffer), int8 weights, int32 accumulators kept in
 * registers across the runs; one interface, one pair step per ISA.
 *
 * Weight tile layout (written offline by the code generator, see
 * dqa_conv2d_weights_size() in dqa_runtime.h): the tile's K weights per row
 * (row r = output channel, k = flattened (kh, kw, ci) index of OHWI) in pairs
 * (k, k+1), k even, each pair 8 bytes
 *     [w(0,k) w(1,k) w(0,k+1) w(1,k+1)]  [w(2,k) w(3,k) w(2,k+1) w(3,k+1)]
 * so that SXTB16 of the first word is row 0's pair (w(0,k), w(0,k+1)) and
 * SXTB16 of it rotated by 8 is row 1's, ready for SMLAD against the
 * activation pair (x_k, x_k+1) as it lies in the line buffer. Missing rows
 * and the pad of an odd K are zero weights.
 *
 * Cores with the DSP extension (Cortex-M4/M7/M33) take two MACs per SMLAD;
 * other cores and the host use portable C. Cortex-M55 (MVE) takes eight per
 * VMLADAVA over 8 int16 lanes; for it the code generator writes each tile's
 * rows contiguous instead (w(r, k) at r * row + k, row = the tile's bytes / 4,
 * DQA_CONV_TILE_ROWS in dqa_runtime.h), as one widening load then reads 8
 * weights of a row. All are exact: every partial sum is bounded by
 * max|v_x| * sum|W| < 2^31 (docs/spec.md 3.1), and SMLAD and VMLADAVA wrap,
 * never saturate.
 */
#ifndef DQA_MAC_H
#define DQA_MAC_H

#include <stdint.h>
#include <string.h>

#include "dqa_runtime.h"

#define DQA_MAC_ROWS 4u        /* output channels per tile */
#define DQA_TILE_PAIR_BYTES 8u /* one pair (k, k+1) of all DQA_MAC_ROWS rows */
#define DQA_MAC_UNROLL 4u      /* pairs per iteration of the main loop */

/* A run of consecutive activations x[0..len) and the weights k.. they multiply. */
typedef struct {
    const int16_t *x;
    uint32_t k;
    uint32_t len; /* at least 1 */
} dqa_mac_run_t;

/* Bytes of one tile of K weights per row. */
static inline uint32_t dqa__tile_bytes(uint32_t k)
{
    return ((k + 1u) >> 1) * DQA_TILE_PAIR_BYTES;
}

#if DQA_CONV_TILE_ROWS
#include <arm_mve.h>

#define DQA_MVE_LANES 8u /* int16 lanes of a vector */

/* acc[r] += sum over the runs of sum over i < len of w(r, k + i) * (x + x_offset)[i], rows contiguous;
 * whole vectors unpredicated (GCC 12 gives every predicated instruction its own VPST), then one step
 * predicated to the run's rest (inactive lanes are neither read nor added). */
static inline void dqa__mac_tile_runs(int32_t *acc, const int8_t *tile, uint32_t tile_bytes, const dqa_mac_run_t *run,
                                      uint32_t n_runs, uint32_t x_offset)
{
    uint32_t row = tile_bytes / DQA_MAC_ROWS;
    const dqa_mac_run_t *runs_end = run + n_runs;
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    for (; run != runs_end; run++) {
        const int16_t *x = run->x + x_offset;
        const int8_t *w = tile + run->k;
        uint32_t left = run->len;
        const int8_t *w1 = w + row, *w2 = w1 + row, *w3 = w2 + row;
        for (; left >= DQA_MVE_LANES; left -= DQA_MVE_LANES) {
            int16x8_t xv = vldrhq_s16(x);
            a0 = vmladavaq_s16(a0, xv, vldrbq_s16(w));
            a1 = vmladavaq_s16(a1, xv, vldrbq_s16(w1));
            a2 = vmladavaq_s16(a2, xv, vldrbq_s16(w2));
            a3 = vmladavaq_s16(a3, xv, vldrbq_s16(w3));
            x += DQA_MVE_LANES;
            w += DQA_MVE_LANES;
            w1 += DQA_MVE_LANES;
            w2 += DQA_MVE_LANES;
            w3 += DQA_MVE_LANES;
        }
        if (left > 0u) {
            mve_pred16_t active = vctp16q(left);
            int16x8_t xv = vldrhq_z_s16(x, active);
            a0 = vmladavaq_p_s16(a0, xv, vldrbq_z_s16(w, active), active);
            a1 = vmladavaq_p_s16(a1, xv, vldrbq_z_s16(w1, active), active);
            a2 = vmladavaq_p_s16(a2, xv, vldrbq_z_s16(w2, active), active);
            a3 = vmladavaq_p_s16(a3, xv, vldrbq_z_s16(w3, active), active);
        }
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

#else /* weight pairs: SMLAD or portable C */

/* a_r += w(r, k) * xk for the one weight k (a run's odd first or last element). */
#define DQA__MAC_SINGLE(tile, k, xk, a0, a1, a2, a3)                                                          \
    do {                                                                                                      \
        const int8_t *q_ = (tile) + ((k) >> 1) * DQA_TILE_PAIR_BYTES + ((k) & 1u) * 2u;                       \
        int32_t x_ = (xk);                                                                                    \
        a0 += q_[0] * x_;                                                                                     \
        a1 += q_[1] * x_;                                                                                     \
        a2 += q_[4] * x_;                                                                                     \
        a3 += q_[5] * x_;                                                                                     \
    } while (0)

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
#include <arm_acle.h>

/* 32-bit load at any alignment (LDR on these cores). */
static inline uint32_t dqa__load32(const void *p)
{
    uint32_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

/* SXTB16 of w rotated by 8: bytes 1 and 3 (no ACLE intrinsic fuses the rotation in GCC 12). */
static inline int16x2_t dqa__sxtb16_ror8(uint32_t w)
{
    int16x2_t r;
    __asm__("sxtb16 %0, %1, ror #8" : "=r"(r) : "r"(w));
    return r;
}

/* SXTAB16 of x rotated by 8: (offset + byte 1, offset + byte 3), halfword-wise, in one instruction. */
static inline int16x2_t dqa__sxtab16_ror8(int16x2_t offset, uint32_t x)
{
    int16x2_t r;
    __asm__("sxtab16 %0, %1, %2, ror #8" : "=r"(r) : "r"(offset), "r"(x));
    return r;
}

/* One pair of all four rows against the activations x[0], x[1]: four SMLADs. The empty asm keeps
 * GCC's Cortex-M4/M33/M55 scheduling from hoisting the next pair's loads above these, which ran out
 * of registers and spilled accumulators to the stack inside the loop (Cortex-M7's did not). */
#define DQA__MAC_PAIR(pairs, x, a0, a1, a2, a3)                                                               \
    do {                                                                                                      \
        int16x2_t xp_ = (int16x2_t)dqa__load32(x);                                                            \
        uint32_t w01_ = dqa__load32(pairs), w23_ = dqa__load32((pairs) + 4);                                  \
        a0 = __smlad(__sxtb16((int8x4_t)w01_), xp_, a0);                                                     \
        a1 = __smlad(dqa__sxtb16_ror8(w01_), xp_, a1);                                                        \
        a2 = __smlad(__sxtb16((int8x4_t)w23_), xp_, a2);                                                     \
        a3 = __smlad(dqa__sxtb16_ror8(w23_), xp_, a3);                                                        \
        __asm__ volatile("" ::: "memory");                                                                    \
    } while (0)

#else /* portable C */

#define DQA__MAC_PAIR(pairs, x, a0, a1, a2, a3)                                                               \
    do {                                                                                                      \
        const int8_t *p_ = (pairs);                                                                           \
        int32_t x0_ = (x)[0], x1_ = (x)[1];                                                                   \
        a0 += p_[0] * x0_ + p_[2] * x1_;                                                                      \
        a1 += p_[1] * x0_ + p_[3] * x1_;                                                                      \
        a2 += p_[4] * x0_ + p_[6] * x1_;                                                                      \
        a3 += p_[5] * x0_ + p_[7] * x1_;                                                                      \
    } while (0)

#endif

/* acc[r] += sum over the runs of sum over i < len of w(r, k + i) * (x + x_offset)[i]; x_offset: the
 * group's first input channel; tile_bytes: the size of a tile (the row layout's). */
static inline void dqa__mac_tile_runs(int32_t *acc, const int8_t *tile, uint32_t tile_bytes, const dqa_mac_run_t *run,
                                      uint32_t n_runs, uint32_t x_offset)
{
    const dqa_mac_run_t *runs_end = run + n_runs;
    (void)tile_bytes; /* pairs of all rows lie together */
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    for (; run != runs_end; run++) {
        const int16_t *x = run->x + x_offset;
        uint32_t k = run->k, end = k + run->len;
        const int8_t *pairs;
        const int16_t *x_unrolled_end, *x_pairs_end;
        if (k & 1u) { /* odd start: the second half of a pair */
            DQA__MAC_SINGLE(tile, k, *x, a0, a1, a2, a3);
            x++;
            k++;
        }
        pairs = tile + (k >> 1) * DQA_TILE_PAIR_BYTES;
        x_pairs_end = x + ((end - k) & ~1u);
        x_unrolled_end = x + ((end - k) & ~(2u * DQA_MAC_UNROLL - 1u));
        for (; x != x_unrolled_end; x += 2u * DQA_MAC_UNROLL, pairs += DQA_MAC_UNROLL * DQA_TILE_PAIR_BYTES) {
            DQA__MAC_PAIR(pairs, x, a0, a1, a2, a3);
            DQA__MAC_PAIR(pairs + DQA_TILE_PAIR_BYTES, x + 2, a0, a1, a2, a3);
            DQA__MAC_PAIR(pairs + 2u * DQA_TILE_PAIR_BYTES, x + 4, a0, a1, a2, a3);
            DQA__MAC_PAIR(pairs + 3u * DQA_TILE_PAIR_BYTES, x + 6, a0, a1, a2, a3);
        }
        for (; x != x_pairs_end; x += 2, pairs += DQA_TILE_PAIR_BYTES) {
            DQA__MAC_PAIR(pairs, x, a0, a1, a2, a3);
        }
        if ((end - k) & 1u) { /* odd end: the first half of a pair */
            DQA__MAC_SINGLE(tile, end - 1u, *x, a0, a1, a2, a3);
        }
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

#endif /* DQA_CONV_TILE_ROWS */

/*
 * Two output pixels' columns of K' (even) int16 values for dqa__mac_tile_2cols, in one buffer of 2 K'
 * values: value k of column j at dqa__column_base(buffer, j, K') + (k / 2) * DQA_COLUMN_PAIR_STEP + k % 2.
 * With pairs (SMLAD, portable C) the two columns' pairs alternate, so that one LDRD reads a pair of both;
 * MVE reads 8 values of a column with one load, so there the columns lie one after the other.
 */
#if DQA_CONV_TILE_ROWS
#define DQA_COLUMN_PAIR_STEP 2u
static inline int16_t *dqa__column_base(int16_t *buffer, uint32_t j, uint32_t len)
{
    return buffer + j * len;
}
#else
#define DQA_COLUMN_PAIR_STEP 4u
static inline int16_t *dqa__column_base(int16_t *buffer, uint32_t j, uint32_t len)
{
    (void)len;
    return buffer + 2u * j;
}
#endif

#if DQA_CONV_TILE_ROWS

/* Rows (2 * half, 2 * half + 1) of the tile against both columns, 8 values at a time: each weight vector
 * loaded once for both columns (four accumulators, even registers as VMLADAVA wants, and the four
 * pointers fit; all four rows at once would not). The rest predicated, as dqa__mac_tile_runs. */
static inline void dqa__mac_tile_2cols(int32_t *acc0, int32_t *acc1, const int8_t *tile, uint32_t tile_bytes,
                                       const int16_t *columns, uint32_t len)
{
    const uint32_t row = tile_bytes / DQA_MAC_ROWS;
    for (uint32_t half = 0; half < DQA_MAC_ROWS / 2u; ++half) {
        const int16_t *x0 = columns, *x1 = columns + len;
        const int8_t *wa = tile + 2u * half * row, *wb = wa + row;
        int32_t a0 = 0, b0 = 0, a1 = 0, b1 = 0; /* a: row 2 * half, b: the next; 0, 1: the column */
        uint32_t left = len;
        for (; left >= DQA_MVE_LANES; left -= DQA_MVE_LANES) {
            const int16x8_t xv0 = vldrhq_s16(x0), xv1 = vldrhq_s16(x1);
            const int16x8_t wva = vldrbq_s16(wa), wvb = vldrbq_s16(wb);
            a0 = vmladavaq_s16(a0, xv0, wva);
            a1 = vmladavaq_s16(a1, xv1, wva);
            b0 = vmladavaq_s16(b0, xv0, wvb);
            b1 = vmladavaq_s16(b1, xv1, wvb);
            x0 += DQA_MVE_LANES;
            x1 += DQA_MVE_LANES;
            wa += DQA_MVE_LANES;
            wb += DQA_MVE_LANES;
        }
        if (left > 0u) {
            const mve_pred16_t active = vctp16q(left);
            const int16x8_t xv0 = vldrhq_z_s16(x0, active), xv1 = vldrhq_z_s16(x1, active);
            const int16x8_t wva = vldrbq_z_s16(wa, active), wvb = vldrbq_z_s16(wb, active);
            a0 = vmladavaq_p_s16(a0, xv0, wva, active);
            a1 = vmladavaq_p_s16(a1, xv1, wva, active);
            b0 = vmladavaq_p_s16(b0, xv0, wvb, active);
            b1 = vmladavaq_p_s16(b1, xv1, wvb, active);
        }
        acc0[2u * half] = a0;
        acc0[2u * half + 1u] = b0;
        acc1[2u * half] = a1;
        acc1[2u * half + 1u] = b1;
    }
}

#else

#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
/* Rows (2 * half, 2 * half + 1) of a tile, pair (k, k+1), against both columns: one weight word (the pair of
 * both rows) widened once, one LDRD of both columns' pairs, four SMLADs: 8 instructions per 8 MACs. The
 * four accumulators, two pointers, the end and four temporaries fit in Cortex-M registers; eight
 * accumulators (all rows) would not. */
#define DQA__MAC_HALF_PAIR(w_, x_, a00, a10, a01, a11)                                                         \
    do {                                                                                                      \
        const uint32_t wp_ = dqa__load32(w_);                                                                 \
        const int16x2_t lo_ = __sxtb16((int8x4_t)wp_), hi_ = dqa__sxtb16_ror8(wp_);                          \
        uint32_t xw_[2];                                                                                      \
        memcpy(xw_, (x_), sizeof xw_);                                                                        \
        const int16x2_t xa_ = (int16x2_t)xw_[0], xb_ = (int16x2_t)xw_[1];                                    \
        a00 = __smlad(lo_, xa_, a00);                                                                         \
        a10 = __smlad(hi_, xa_, a10);                                                                         \
        a01 = __smlad(lo_, xb_, a01);                                                                         \
        a11 = __smlad(hi_, xb_, a11);                                                                         \
    } while (0)
#else
#define DQA__MAC_HALF_PAIR(w_, x_, a00, a10, a01, a11)                                                         \
    do {                                                                                                      \
        const int8_t *q_ = (w_);                                                                              \
        const int16_t *xa_ = (x_), *xb_ = xa_ + 2;                                                            \
        a00 += q_[0] * xa_[0] + q_[2] * xa_[1];                                                               \
        a10 += q_[1] * xa_[0] + q_[3] * xa_[1];                                                               \
        a01 += q_[0] * xb_[0] + q_[2] * xb_[1];                                                               \
        a11 += q_[1] * xb_[0] + q_[3] * xb_[1];                                                               \
    } while (0)
#endif

/* Pairs per iteration of dqa__mac_tile_2cols's main loop: 8 (32 MACs of a half tile each) halves the loop's
 * own instructions against 4 (ResNet-8 int8 on Cortex-M7: 21.45 -> 20.78 M). */
#define DQA_MAC_2COLS_UNROLL 8u

/* acc0[r] = sum over k < len of w(r, k) * x0[k], acc1[r] the same with x1: two output pixels' columns,
 * laid out as dqa__column_base() says (even len: an odd K's columns end in a zero, which meets the tile's
 * zero pad weight). `columns` is word-aligned. */
static inline void dqa__mac_tile_2cols(int32_t *acc0, int32_t *acc1, const int8_t *tile, uint32_t tile_bytes,
                                       const int16_t *columns, uint32_t len)
{
    /* a pair of both columns is two aligned words, which the compiler reads with one LDRD */
    const int16_t *both = (const int16_t *)__builtin_assume_aligned(columns, 4);
    const int16_t *unrolled_end = both + 2u * (len & ~(2u * DQA_MAC_2COLS_UNROLL - 1u)), *end = both + 2u * len;
    (void)tile_bytes; /* pairs of all rows lie together */
    for (uint32_t half = 0; half < DQA_MAC_ROWS / 2u; ++half) {
        const int8_t *pairs = tile + half * (DQA_TILE_PAIR_BYTES / 2u);
        const int16_t *x = both;
        int32_t a00 = 0, a10 = 0, a01 = 0, a11 = 0;
        for (; x != unrolled_end; x += DQA_MAC_2COLS_UNROLL * DQA_COLUMN_PAIR_STEP,
                                  pairs += DQA_MAC_2COLS_UNROLL * DQA_TILE_PAIR_BYTES) {
            DQA__MAC_HALF_PAIR(pairs, x, a00, a10, a01, a11);
            DQA__MAC_HALF_PAIR(pairs + DQA_TILE_PAIR_BYTES, x + DQA_COLUMN_PAIR_STEP, a00, a10, a01, a11);
            DQA__MAC_HALF_PAIR(pairs + 2u * DQA_TILE_PAIR_BYTES, x + 2u * DQA_COLUMN_PAIR_STEP, a00, a10, a01, a11);
            DQA__MAC_HALF_PAIR(pairs + 3u * DQA_TILE_PAIR_BYTES, x + 3u * DQA_COLUMN_PAIR_STEP, a00, a10, a01, a11);
            DQA__MAC_HALF_PAIR(pairs + 4u * DQA_TILE_PAIR_BYTES, x + 4u * DQA_COLUMN_PAIR_STEP, a00, a10, a01, a11);
            DQA__MAC_HALF_PAIR(pairs + 5u * DQA_TILE_PAIR_BYTES, x + 5u * DQA_COLUMN_PAIR_STEP, a00, a10, a01, a11);
            DQA__MAC_HALF_PAIR(pairs + 6u * DQA_TILE_PAIR_BYTES, x + 6u * DQA_COLUMN_PAIR_STEP, a00, a10, a01, a11);
            DQA__MAC_HALF_PAIR(pairs + 7u * DQA_TILE_PAIR_BYTES, x + 7u * DQA_COLUMN_PAIR_STEP, a00, a10, a01, a11);
        }
        for (; x != end; x += DQA_COLUMN_PAIR_STEP, pairs += DQA_TILE_PAIR_BYTES) {
            DQA__MAC_HALF_PAIR(pairs, x, a00, a10, a01, a11);
        }
        acc0[2u * half] = a00;
        acc0[2u * half + 1u] = a10;
        acc1[2u * half] = a01;
        acc1[2u * half + 1u] = a11;
    }
}

#endif

#endif /* DQA_MAC_H */
