/*
 * dqa-mcu runtime, TFLite-exact int8 mode: the fixed-point primitives of
 * docs/spec_tflite.md section 2 (not part of the public API). Integer only,
 * no 64-bit division (libgcc's helpers for it are not linked).
 */
#ifndef DQA_S8_INTERNAL_H
#define DQA_S8_INTERNAL_H

#include <stdint.h>

#include "dqa_internal.h"
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

/* SRDHM: (a * b + nudge) / 2^31, C division (toward zero); -2^31 * -2^31 saturates. */
static inline int32_t dqa__srdhm(int32_t a, int32_t b)
{
    if (a == INT32_MIN && b == INT32_MIN) {
        return INT32_MAX;
    }
    const int64_t ab = (int64_t)a * b;
    const int64_t p = ab + (ab >= 0 ? ((int64_t)1 << 30) : (1 - ((int64_t)1 << 30)));
    /* truncating p / 2^31 with shifts: the magnitude shifted, the sign put back */
    return p >= 0 ? (int32_t)((uint64_t)p >> 31) : -(int32_t)((0u - (uint64_t)p) >> 31);
}

/* RDBPOT: x / 2^e rounded to nearest, ties away from zero; 0 <= e <= 31. */
static inline int32_t dqa__rdbpot(int32_t x, int32_t e)
{
    const int32_t mask = (int32_t)(((uint32_t)1 << e) - 1u);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return dqa__asr(x, (unsigned)e) + (remainder > threshold ? 1 : 0);
}

/* MBQM: TFLite's MultiplyByQuantizedMultiplier, double rounding. */
static inline int32_t dqa__mbqm(int32_t x, int32_t multiplier, int32_t shift)
{
    const int32_t left = shift > 0 ? shift : 0;
    return dqa__rdbpot(dqa__srdhm((int32_t)((uint32_t)x << left), multiplier), shift > 0 ? 0 : -shift);
}

#endif /* DQA_S8_INTERNAL_H */
