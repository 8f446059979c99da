/*
 * Inner multiply-accumulate kernel of conv2d and linear: a tile of
 * DQA_MAC_ROWS output channels against one run of int16 activations, int8
 * weights, int32 accumulators; one interface, one implementation per ISA.
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
 * Cores with the DSP extension (Cortex-M4/M7/M33/M55) take two MACs per
 * SMLAD; other cores and the host use portable C. Both are exact: every
 * partial sum is bounded by max|v_x| * sum|W| < 2^31 (docs/spec.md 3.1), and
 * SMLAD wraps, never saturates.
 */
#ifndef DQA_MAC_H
#define DQA_MAC_H

#include <stdint.h>
#include <string.h>

#define DQA_MAC_ROWS 4u       /* output channels per tile */
#define DQA_TILE_PAIR_BYTES 8u /* one pair (k, k+1) of all DQA_MAC_ROWS rows */

/* Bytes of one tile of K weights per row. */
static inline uint32_t dqa__tile_bytes(uint32_t k)
{
    return ((k + 1u) >> 1) * DQA_TILE_PAIR_BYTES;
}

/* acc[r] += w(r, k) * xk for the one weight k (a run's odd first or last element). */
static inline void dqa__mac_tile_single(int32_t *acc, const int8_t *tile, uint32_t k, int32_t xk)
{
    const int8_t *q = tile + (k >> 1) * DQA_TILE_PAIR_BYTES + (k & 1u) * 2u;
    acc[0] += q[0] * xk;
    acc[1] += q[1] * xk;
    acc[2] += q[4] * xk;
    acc[3] += q[5] * xk;
}

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

/* One pair of all four rows: a_r += row r's pair times the activation pair xp. */
#define DQA__MAC_PAIR(pairs, xp, a0, a1, a2, a3)                                                              \
    do {                                                                                                      \
        uint32_t w01_ = dqa__load32(pairs), w23_ = dqa__load32((pairs) + 4);                                  \
        a0 = __smlad(__sxtb16((int8x4_t)w01_), xp, a0);                                                      \
        a1 = __smlad(dqa__sxtb16_ror8(w01_), xp, a1);                                                         \
        a2 = __smlad(__sxtb16((int8x4_t)w23_), xp, a2);                                                      \
        a3 = __smlad(dqa__sxtb16_ror8(w23_), xp, a3);                                                         \
    } while (0)

/* acc[r] += sum over pairs p < n_pairs of the pair p of row r times (x[2p], x[2p+1]);
 * four pairs per iteration to cut the loop's overhead, then one at a time. */
static inline void dqa__mac_tile_pairs(int32_t *acc, const int8_t *pairs, const int16_t *x, uint32_t n_pairs)
{
    const int16_t *x_end = x + 2u * (n_pairs & ~3u), *x_tail = x + 2u * n_pairs;
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    for (; x != x_end; x += 8, pairs += 4u * DQA_TILE_PAIR_BYTES) {
        int16x2_t x01 = (int16x2_t)dqa__load32(x), x23 = (int16x2_t)dqa__load32(x + 2);
        int16x2_t x45 = (int16x2_t)dqa__load32(x + 4), x67 = (int16x2_t)dqa__load32(x + 6);
        DQA__MAC_PAIR(pairs, x01, a0, a1, a2, a3);
        DQA__MAC_PAIR(pairs + DQA_TILE_PAIR_BYTES, x23, a0, a1, a2, a3);
        DQA__MAC_PAIR(pairs + 2u * DQA_TILE_PAIR_BYTES, x45, a0, a1, a2, a3);
        DQA__MAC_PAIR(pairs + 3u * DQA_TILE_PAIR_BYTES, x67, a0, a1, a2, a3);
    }
    for (; x != x_tail; x += 2, pairs += DQA_TILE_PAIR_BYTES) {
        int16x2_t xp = (int16x2_t)dqa__load32(x);
        DQA__MAC_PAIR(pairs, xp, a0, a1, a2, a3);
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

#else /* portable C */

static inline void dqa__mac_tile_pairs(int32_t *acc, const int8_t *pairs, const int16_t *x, uint32_t n_pairs)
{
    const int16_t *x_end = x + 2u * n_pairs;
    int32_t a0 = acc[0], a1 = acc[1], a2 = acc[2], a3 = acc[3];
    for (; x != x_end; x += 2, pairs += DQA_TILE_PAIR_BYTES) {
        int32_t x0 = x[0], x1 = x[1];
        a0 += pairs[0] * x0 + pairs[2] * x1;
        a1 += pairs[1] * x0 + pairs[3] * x1;
        a2 += pairs[4] * x0 + pairs[6] * x1;
        a3 += pairs[5] * x0 + pairs[7] * x1;
    }
    acc[0] = a0;
    acc[1] = a1;
    acc[2] = a2;
    acc[3] = a3;
}

#endif

/* acc[r] += sum over i < len of w(r, k + i) * x[i]: a run of len activations against weights k.. */
static inline void dqa__mac_tile(int32_t *acc, const int8_t *tile, uint32_t k, const int16_t *x, uint32_t len)
{
    uint32_t end = k + len;
    if ((k & 1u) && k < end) { /* odd start: the second half of a pair */
        dqa__mac_tile_single(acc, tile, k, *x++);
        k++;
    }
    dqa__mac_tile_pairs(acc, tile + (k >> 1) * DQA_TILE_PAIR_BYTES, x, (end - k) >> 1);
    if ((end - k) & 1u) {
        dqa__mac_tile_single(acc, tile, end - 1u, x[end - 1u - k]);
    }
}

#endif /* DQA_MAC_H */
