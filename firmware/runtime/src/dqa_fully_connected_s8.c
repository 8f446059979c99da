/* dqa-mcu runtime: FULLY_CONNECTED, TFLite-exact int8 (docs/spec_tflite.md 3.3). */
#include <stddef.h>
#include <string.h>

#include "dqa_s8_internal.h"

/* Hardware binary64 (Cortex-M7's fpv5-d16, Cortex-M55, the host) multiplies as spec 3.3 says in a few
 * instructions; cores without it (Cortex-M0/M3, single precision only on M4/M33) take the integer
 * formulation. Defined to 1 it is taken anywhere (the host tests check both against the reference). */
#ifndef DQA_FC_INTEGER_RESCALE
#if defined(__arm__) && !(defined(__ARM_FP) && (__ARM_FP & 8))
#define DQA_FC_INTEGER_RESCALE 1
#else
#define DQA_FC_INTEGER_RESCALE 0
#endif
#endif

/* |round(acc * scale)| past this saturates the int8 output whatever the offset (|offset| <= 128): the
 * rescale clamps to it, which keeps the offset's addition and the double -> int32 conversion defined. */
#define FC_RESCALED_LIMIT 65536

#if DQA_FC_INTEGER_RESCALE
/* round_scaled's fast path: units of 2^-g (2^32 of the product's 2^-k) kept from a rounding boundary. One
 * is enough: the bits below the high word (< 2^32), a * scale's excess over P (a * m_lo / 2^21 < 2^31, m_lo
 * the mantissa's 21 bits below m32) and binary64's rounding (< 2^27 where the clamp does not decide) stay
 * below 2^33 together (host_tests/test_tflite_backend.py fails with 0). */
#define FC_FAST_MARGIN 1u

/* Bits needed for v: a count-leading-zeros instruction (CLZ from Cortex-M3 on), not a loop per bit. */
static uint32_t bit_length(uint64_t v)
{
    return v == 0 ? 0u : 64u - (uint32_t)__builtin_clzll(v);
}

/*
 * round((double) acc * scale) exactly as IEEE-754 binary64 computes it, without
 * floating point, scale = mantissa * 2^exponent taken from the double's bits
 * (a normal positive double: mantissa in [2^52, 2^53)): the exact product is
 * rounded to 53 significant bits (to nearest, ties to even), then to an
 * integer (ties away from zero, C round()), clamped to +-FC_RESCALED_LIMIT.
 */
__attribute__((noinline)) /* the rare case: out of the output loop, which then keeps its values in registers */
static int32_t round_scaled_exact(int32_t acc, uint64_t bits)
{
    const uint32_t biased = (uint32_t)(bits >> 52) & 0x7ffu;
    const uint32_t a = acc < 0 ? 0u - (uint32_t)acc : (uint32_t)acc;
    const uint64_t mantissa = (bits & (((uint64_t)1 << 52) - 1u)) | ((uint64_t)1 << 52);
    const int32_t exponent = (int32_t)biased - 1075; /* the bias 1023, and 52 fraction bits */
    /* the exact product a * mantissa, up to 85 bits, as hi:lo */
    const uint64_t low = (uint64_t)a * (uint32_t)mantissa;
    const uint64_t high = (uint64_t)a * (uint32_t)(mantissa >> 32);
    const uint64_t lo = low + (high << 32);
    const uint64_t hi = (high >> 32) + (lo < low ? 1u : 0u);
    const uint32_t length = hi != 0 ? 64u + bit_length(hi) : bit_length(lo);
    const int32_t drop = length > 53u ? (int32_t)length - 53 : 0; /* at most 32: all within lo */
    uint64_t q = lo;
    if (drop > 0) {
        const uint64_t rest = lo & (((uint64_t)1 << drop) - 1u);
        const uint64_t half = (uint64_t)1 << (drop - 1);
        q = (lo >> drop) | (hi << (64 - drop));
        if (rest > half || (rest == half && (q & 1u) != 0)) {
            ++q;
        }
    }
    if (q == 0) {
        return 0;
    }
    const int32_t frac = -(exponent + drop); /* the double's value is q / 2^frac */
    if (frac <= 0) {
        return acc < 0 ? -FC_RESCALED_LIMIT : FC_RESCALED_LIMIT; /* q >= 2^52 */
    }
    const uint64_t r = frac >= 64 ? 0u : (q + ((uint64_t)1 << (frac - 1))) >> frac;
    const uint32_t magnitude = r > FC_RESCALED_LIMIT ? FC_RESCALED_LIMIT : (uint32_t)r;
    return acc < 0 ? -(int32_t)magnitude : (int32_t)magnitude;
}

/* round((double) acc * scale) as round_scaled_exact(), most outputs faster. */
static int32_t round_scaled(int32_t acc, double scale)
{
    uint64_t bits;
    memcpy(&bits, &scale, sizeof bits);
    const uint32_t biased = (uint32_t)(bits >> 52) & 0x7ffu;
    const uint32_t a = acc < 0 ? 0u - (uint32_t)acc : (uint32_t)acc;
    /* Most outputs, faster: the mantissa's top 32 bits m32 give P = a * m32 / 2^k (k = g + 32), which lies
     * a * m_lo / 2^(k + 21) below a * scale, itself rounded by binary64 by less than |a * scale| * 2^-53; the high
     * word of a * m32 + 2^(k-1) holds round(P) (hi >> g) and the fraction of P + 1/2 in units of 2^-g. At least
     * FC_FAST_MARGIN units from a rounding boundary both ways, round(P) is the spec's value (with the clamp);
     * nearer, the exact formulation decides. g = 1022 - biased: scales from 2^-32 to under 2^-2. */
    const uint32_t g = 1022u - biased;
    if (g - 1u < 31u) {
        const uint32_t m32 = (uint32_t)(bits >> 21) | 0x80000000u; /* the implicit 1 and 31 fraction bits */
        const uint32_t hi = (uint32_t)(((uint64_t)a * m32) >> 32) + (1u << (g - 1u));
        const uint32_t fraction = hi & ((1u << g) - 1u);
        if (fraction >= FC_FAST_MARGIN && fraction + FC_FAST_MARGIN < (1u << g)) {
            const uint32_t r = hi >> g, magnitude = r > FC_RESCALED_LIMIT ? FC_RESCALED_LIMIT : r;
            return acc < 0 ? -(int32_t)magnitude : (int32_t)magnitude;
        }
    }
    return round_scaled_exact(acc, bits);
}
#else
/* round((double) acc * scale) with the hardware's binary64 multiply (IEEE exact, the spec's own
 * operation), clamped to +-FC_RESCALED_LIMIT; C round() without libm. On Cortex-M (every M-profile FPU
 * with binary64 has them) VMINNM / VMAXNM clamp and VRINTA rounds ties away from zero, no branch;
 * elsewhere as the reference writes it (trunc, then the fraction, exact for |v| < 2^52). */
static int32_t round_scaled(int32_t acc, double scale)
{
    const double limit = FC_RESCALED_LIMIT, v = (double)acc * scale;
#if defined(__arm__)
    return (int32_t)__builtin_round(__builtin_fmax(__builtin_fmin(v, limit), -limit));
#else
    const double clamped = v > limit ? limit : (v < -limit ? -limit : v);
    const int32_t whole = (int32_t)clamped;
    const double fraction = clamped - (double)whole;
    return whole + (fraction >= 0.5) - (fraction <= -0.5);
#endif
}
#endif

/* Per input row: the row widened to int16 into `column` once, then tiles of 4 outputs on the MAC tiles
 * of dqa_mac.h (the conv's kernel with one run: a matrix-vector product). */
void dqa_fully_connected_s8(const dqa_fully_connected_s8_params_t *p, const int8_t *input, int8_t *output,
                            int16_t *column)
{
    const uint32_t depth = p->in_depth, depth_even = (depth + 1u) & ~1u; /* an odd depth ends in a zero */
    const uint32_t tile_bytes = dqa__tile_bytes(depth);
    const dqa_mac_run_t row = {column, 0, depth_even};
    /* locals: a store through int8_t * could alias the fields, read again for every output otherwise */
    const int32_t *folded_bias = p->folded_bias;
    const double *scale = p->scale;
    const int32_t output_offset = p->output_offset, act_min = p->act_min, act_max = p->act_max;
    column[depth_even - 1u] = 0;
    for (uint32_t r = 0; r < p->rows; ++r) {
        const int8_t *tile = p->weights;
        dqa__widen_s8(column, 0, 2u, input + (size_t)r * depth, depth, 0); /* the input offset is in the bias */
        for (uint32_t o = 0; o < p->out_depth; o += DQA_MAC_ROWS, tile += tile_bytes) {
            int32_t acc[DQA_MAC_ROWS] = {0};
            const uint32_t rows = p->out_depth - o < DQA_MAC_ROWS ? p->out_depth - o : DQA_MAC_ROWS;
            dqa__mac_tile_runs(acc, tile, tile_bytes, &row, 1u, 0u);
            for (uint32_t i = 0; i < rows; ++i) {
                const int32_t v = round_scaled(dqa__wadd(acc[i], folded_bias[o + i]), scale[o + i]);
                *output++ = (int8_t)dqa__clamp_s8(v + output_offset, act_min, act_max);
            }
        }
    }
}
