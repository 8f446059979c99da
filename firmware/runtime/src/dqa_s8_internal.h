/*
 * dqa-mcu runtime, TFLite-exact int8 mode: the fixed-point primitives of
 * docs/spec_tflite.md section 2 (not part of the public API). Integer only,
 * no 64-bit division (libgcc's helpers for it are not linked).
 */
#ifndef DQA_S8_INTERNAL_H
#define DQA_S8_INTERNAL_H

#include <stdint.h>

#include "dqa_internal.h"
#include "dqa_mac.h"
#include "dqa_runtime_s8.h"

/* int32 addition / subtraction that wraps like the hardware (spec 1). */
static inline int32_t dqa__wadd(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a + (uint32_t)b);
}

static inline int32_t dqa__wsub(int32_t a, int32_t b)
{
    return (int32_t)((uint32_t)a - (uint32_t)b);
}

static inline int32_t dqa__clamp_s8(int32_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : (v > hi ? hi : v);
}

/* SRDHM: (a * b + nudge) / 2^31, C division (toward zero); -2^31 * -2^31 saturates. The same value as
 * floor((a * b + 2^30) / 2^31) (spec 2): bits 31..62 of the 64-bit sum (SMULL, ADDS, ADC, a shift and an
 * ORR on Cortex-M), not a branch on the sign and a 64-bit negation. */
static inline int32_t dqa__srdhm(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    const uint64_t nudged = (uint64_t)((int64_t)a * b) + ((uint64_t)1 << 30);
    return (int32_t)(uint32_t)(nudged >> 31);
}

/* RDBPOT: x / 2^e rounded to nearest, ties away from zero; 0 <= e <= 31. Spec 2 writes it as
 * (x >> e) + (remainder > threshold); the same value is the magnitude's (|x| + 2^e / 2) >> e with x's
 * sign, which needs no signed shift (a branch on the sign in portable C). */
static inline int32_t dqa__rdbpot(int32_t x, int32_t e)
{
    const uint32_t half = ((uint32_t)1 << e) >> 1;
    const uint32_t magnitude = x < 0 ? 0u - (uint32_t)x : (uint32_t)x;
    const uint32_t q = (magnitude + half) >> e; /* <= 2^31: |x| + half fits in 32 bits */
    return (int32_t)(x < 0 ? 0u - q : q);
}

/* MBQM: TFLite's MultiplyByQuantizedMultiplier, double rounding. */
static inline int32_t dqa__mbqm(int32_t x, int32_t multiplier, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    return dqa__rdbpot(dqa__srdhm((int32_t)((uint32_t)x << left), multiplier), shift > 0 ? 0 : -shift);
}

/* MBQM for a right shift of at least 2 (`right` = -shift) and a multiplier >= 0 (the importer checks every
 * scale is positive): SRDHM's rounding and RDBPOT's compose into one of the 64-bit product (spec 2),
 * floor((x * M + nudge) / 2^(31 + right)) with nudge = 2^30 + 2^(30 + right), less 2^31 for x < 0. The
 * nudge's high word (2^(right - 2), less one for x < 0) and low word (2^30 or -2^30) start one SMLAL.
 * |result| <= 2^29. */
static inline int32_t dqa__mbqm_right(int32_t x, int32_t multiplier, int32_t right)
{
    const uint32_t negative = x < 0;
    const uint32_t nudge_high = ((uint32_t)1 << (right - 2)) - negative;
    const uint64_t nudge = ((uint64_t)nudge_high << 32) | (negative ? 0xC0000000u : 0x40000000u);
    return (int32_t)((int64_t)(nudge + (uint64_t)((int64_t)x * multiplier)) >> 32) >> (right - 1);
}

/* A convolution's int8 output from its accumulator (spec 3.1's epilogue). The reference adds the offset
 * without bounds; after a left shift the sum may pass int32 and is saturated instead (no UB, found by
 * fuzz_s8), which the clamp to int8 then makes the same. */
static inline int8_t dqa__conv_output_s8(int32_t acc, int32_t bias, int32_t multiplier, int32_t shift,
                                         int32_t output_offset, int32_t act_min, int32_t act_max)
{
    const int32_t x = dqa__wadd(acc, bias);
    int32_t v;
    if (shift <= -2) { /* every conv of a usual model */
        v = dqa__mbqm_right(x, multiplier, -shift) + output_offset;
    } else if (__builtin_add_overflow(dqa__mbqm(x, multiplier, shift), output_offset, &v)) {
        v = output_offset < 0 ? INT32_MIN : INT32_MAX;
    }
    return (int8_t)dqa__clamp_s8(v, act_min, act_max);
}

/* Values k .. k + n - 1 of a column for the MAC tiles (dqa_mac.h), which take int16: x[i] + offset (|.| <=
 * 255, offset = -zero point), value k at column + (k / 2) * pair_step + k % 2 (pair_step 2: contiguous;
 * DQA_COLUMN_PAIR_STEP: one of two interleaved columns). Out of line (dqa_widen_s8.c): one copy for the
 * conv's and the FC's call sites keeps the flash small. */
void dqa__widen_s8(int16_t *column, uint32_t k, uint32_t pair_step, const int8_t *x, uint32_t n, int32_t offset);

#endif /* DQA_S8_INTERNAL_H */
