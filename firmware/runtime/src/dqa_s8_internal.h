/*
 * dqa-mcu runtime, TFLite-exact int8 mode: the fixed-point primitives of
 * docs/spec_tflite.md section 2 (not part of the public API). Integer only,
 * no 64-bit division (libgcc's helpers for it are not linked).
 */
#ifndef DQA_S8_INTERNAL_H
#define DQA_S8_INTERNAL_H

#include <stdint.h>

#if defined(__ARM_FEATURE_SAT) && __ARM_FEATURE_SAT
#include <arm_acle.h>
#endif

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

/* The high word of x * M + the nudge whose words are `high` and `low`: one SMLAL onto them (the callers
 * build the two words apart, with no carry between them, not as a 64-bit add). */
static inline int32_t dqa__high_word(int32_t x, int32_t multiplier, uint32_t high, uint32_t low)
{
    const uint64_t nudge = ((uint64_t)high << 32) | low;
    return (int32_t)((int64_t)(nudge + (uint64_t)((int64_t)x * multiplier)) >> 32);
}

/* The high word of x * M + h * 2^31 + 2^30, the one-rounding MBQM's sum (spec 2): the nudge's words are
 * h >> 1 (arithmetic) and h's bit 0 at bit 31 | 2^30 (four instructions). */
static inline int32_t dqa__nudged_high(int32_t x, int32_t multiplier, int32_t h)
{
    return dqa__high_word(x, multiplier, (uint32_t)(h >> 1), ((uint32_t)h << 31) | ((uint32_t)1 << 30));
}

/* MBQM for a right shift (`right` = -shift, 1..31) and a multiplier >= 0 (the importer checks every scale
 * is positive): SRDHM's rounding and RDBPOT's compose into one of the 64-bit product (spec 2),
 * floor((x * M + 2^30 + 2^(30 + right) - [x < 0] 2^31) / 2^(31 + right)): the nudge is h * 2^31 + 2^30
 * with h = 2^(right - 1) - [x < 0] >= 0, and the quotient dqa__nudged_high's word shifted by right - 1.
 * |result| <= 2^30. */
static inline int32_t dqa__mbqm_right(int32_t x, int32_t multiplier, int32_t right)
{
    const int32_t h = (int32_t)(((uint32_t)1 << (right - 1)) - ((uint32_t)x >> 31));
    return dqa__nudged_high(x, multiplier, h) >> (right - 1);
}

/* A convolution's int8 output from its accumulator (spec 3.1's epilogue), for any shift. The reference
 * adds the offset without bounds; after a left shift the sum may pass int32 and is saturated instead (no
 * UB, found by fuzz_s8), which the clamp to int8 then makes the same. */
static inline int8_t dqa__conv_output_s8(int32_t acc, int32_t bias, int32_t multiplier, int32_t shift,
                                         int32_t output_offset, int32_t act_min, int32_t act_max)
{
    int32_t v;
    if (__builtin_add_overflow(dqa__mbqm(dqa__wadd(acc, bias), multiplier, shift), output_offset, &v)) {
        v = output_offset < 0 ? INT32_MIN : INT32_MAX;
    }
    return (int8_t)dqa__clamp_s8(v, act_min, act_max);
}

/* The high word of the folded epilogue's nudge, before its sign term, for a channel of right shift
 * `right` (2..23) and output offset z: (1 + 2 z) 2^(right - 2), |.| < 2^29 (written with right - 1, which
 * is ~shift: one instruction less). */
static inline int32_t dqa__folded_base(int32_t output_offset, int32_t right)
{
    return (int32_t)((uint32_t)(1 + 2 * output_offset) << (right - 1)) >> 1;
}

/* v clamped to int8: one SSAT where the core has it (GCC 12 makes compares of the portable form). */
static inline int32_t dqa__saturate_s8(int32_t v)
{
#if defined(__ARM_FEATURE_SAT) && __ARM_FEATURE_SAT
    return __ssat(v, 8);
#else
    return v < INT8_MIN ? INT8_MIN : (v > INT8_MAX ? INT8_MAX : v);
#endif
}

/* dqa__conv_output_s8's value for a right shift `right` (2..23), a multiplier >= 0, act_max = 127 and
 * act_min = -128, with one rounding (dqa__mbqm_right's) and the output offset z folded into the nudge:
 * z + MBQM is floor((x * M + 2^30 + h 2^31) / 2^(31 + right)) with h = (1 + 2 z) 2^(right - 1) - [x < 0]
 * (spec 2). For right >= 2, h 2^31 + 2^30 is, as two words with no carry between them, `base` - [x < 0]
 * (high; base = dqa__folded_base(z, right)) and x's sign bit | 2^30 (low): three instructions, then one
 * SMLAL onto them. Neither the offset nor act_max takes a register in the caller's loop. For right <= 23
 * the high word stays inside int32: |x * M| / 2^32 < 2^30 and |base| < 2^29. */
static inline int32_t dqa__folded_s8(int32_t acc, int32_t bias, int32_t multiplier, int32_t base, int32_t right)
{
    const int32_t x = dqa__wadd(acc, bias);
    const uint32_t high = (uint32_t)(base - (int32_t)((uint32_t)x >> 31));
    const uint32_t low = ((uint32_t)x & 0x80000000u) | ((uint32_t)1 << 30);
    return dqa__saturate_s8(dqa__high_word(x, multiplier, high, low) >> (right - 1));
}

/* Values k .. k + n - 1 of a column for the MAC tiles (dqa_mac.h), which take int16: x[i] + offset (|.| <=
 * 255, offset = -zero point), value k at column + (k / 2) * pair_step + k % 2 (pair_step 2: contiguous;
 * DQA_COLUMN_PAIR_STEP: one of two interleaved columns). Out of line (dqa_widen_s8.c): one copy for the
 * conv's and the FC's call sites keeps the flash small. */
void dqa__widen_s8(int16_t *column, uint32_t k, uint32_t pair_step, const int8_t *x, uint32_t n, int32_t offset);

/* Output channels per dqa__requantize_s8 call (whole MAC tiles): its call, the loads of the layer's
 * parameters and its loop set-up are paid once for them, not once per tile (VWW int8 on Cortex-M7:
 * 21.02 -> 20.82 M instructions); 2 x 32 x 4 bytes of the caller's stack. */
#define DQA_REQUANTIZE_CHANNELS (8u * DQA_MAC_ROWS)

/* The int8 outputs of channels oc .. oc + rows - 1 (rows <= DQA_REQUANTIZE_CHANNELS) of `count` (1 or 2)
 * pixels from their accumulators acc[j * DQA_REQUANTIZE_CHANNELS + r] (no bias yet; spec 3.1's epilogue),
 * pixel j's channel 0 at pixel_out[j] (the two may lie in different ring slots). With count 1, pixel 1's
 * accumulators are read too and must hold defined values; its outputs are overwritten. Out of line: one
 * copy for the conv and the depthwise. */
void dqa__requantize_s8(const dqa_conv_s8_params_t *p, const int32_t *acc, uint32_t count,
                        uint32_t oc, uint32_t rows, int8_t *const *pixel_out);

#endif /* DQA_S8_INTERNAL_H */
