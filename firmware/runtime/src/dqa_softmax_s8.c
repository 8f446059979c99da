/* dqa-mcu runtime: SOFTMAX, TFLite-exact int8, gemmlowp fixed point (docs/spec_tflite.md 3.8). */
#include <stddef.h>

#include "dqa_s8_internal.h"

#define EXP_INPUT_INT_BITS 5       /* exp's input is Q5.26 */
#define SUM_INT_BITS 12            /* the sum of exps is Q12.19 */
#define EXP_ONE_EIGHTH (1 << 28)   /* 1/8 in Q0.31 */
#define EXP_MINUS_ONE_EIGHTH 1895147668 /* exp(-1/8) in Q0.31 */
#define ONE_THIRD 715827883        /* 1/3 in Q0.31 */
#define RECIP_48_OVER_17 1515870810      /* Q2.29 */
#define RECIP_NEG_32_OVER_17 (-1010580540) /* Q2.29 */
#define RECIP_ONE (1 << 29)        /* 1 in Q2.29 */

/* exp(-2^k) in Q0.31 for k = -2..4: the barrel shifter of gemmlowp's exp */
static const int32_t exp_of_minus_power_of_two[7] = {1672461947, 1302514674, 790015084, 290630308,
                                                     39332535, 720401, 242};

/* gemmlowp SaturatingRoundingMultiplyByPOT for an exponent e > 0. */
static int32_t shl_saturate(int32_t x, int32_t e)
{
    const int32_t limit = (int32_t)(((uint32_t)1 << (31 - e)) - 1u);
    if (x > limit) {
        return INT32_MAX;
    }
    if (x < -limit) {
        return INT32_MIN;
    }
    return (int32_t)((uint32_t)x << e);
}

/* exp(a) for a in [-1/4, 0), Q0.31 in and out: a Taylor polynomial around -1/8. */
static int32_t exp_quarter(int32_t a)
{
    const int32_t x = dqa__wadd(a, EXP_ONE_EIGHTH);
    const int32_t x2 = dqa__srdhm(x, x);
    const int32_t x3 = dqa__srdhm(x2, x);
    const int32_t x4 = dqa__srdhm(x2, x2);
    const int32_t x4_over_4 = dqa__rdbpot(x4, 2);
    const int32_t poly =
        dqa__rdbpot(dqa__wadd(dqa__srdhm(dqa__wadd(x4_over_4, x3), ONE_THIRD), x2), 1);
    return dqa__wadd(EXP_MINUS_ONE_EIGHTH, dqa__srdhm(EXP_MINUS_ONE_EIGHTH, dqa__wadd(x, poly)));
}

/* exp(a) for a <= 0 in Q5.26; result Q0.31. */
static int32_t exp_negative(int32_t a)
{
    const int32_t frac_bits = 31 - EXP_INPUT_INT_BITS;
    const int32_t one_quarter = 1 << (frac_bits - 2);
    const int32_t a_mod = dqa__wsub(a & (one_quarter - 1), one_quarter);
    int32_t result = exp_quarter(shl_saturate(a_mod, EXP_INPUT_INT_BITS));
    const int32_t remainder = dqa__wsub(a_mod, a);
    for (int32_t k = 0; k < 7; ++k) {
        if (remainder & (1 << (frac_bits - 2 + k))) {
            result = dqa__srdhm(result, exp_of_minus_power_of_two[k]);
        }
    }
    return a == 0 ? INT32_MAX : result;
}

/* 1 / (1 + a) for a in [0, 1) in Q0.31: Newton-Raphson in Q2.29, result Q0.31. */
static int32_t one_over_one_plus(int32_t a)
{
    const int64_t s = (int64_t)a + INT32_MAX;
    /* RoundingHalfSum(a, 1): (s + sign) / 2 with C division, by shifts */
    const int32_t half_denominator = (int32_t)(s >= 0 ? (s + 1) >> 1 : -((1 - s) >> 1));
    int32_t x = dqa__wadd(RECIP_48_OVER_17, dqa__srdhm(half_denominator, RECIP_NEG_32_OVER_17));
    for (int i = 0; i < 3; ++i) {
        const int32_t one_minus = dqa__wsub(RECIP_ONE, dqa__srdhm(half_denominator, x));
        x = dqa__wadd(x, shl_saturate(dqa__srdhm(x, one_minus), 2));
    }
    return shl_saturate(x, 1);
}

static int32_t count_leading_zeros(uint32_t v)
{
    int32_t n = 32;
    for (; v != 0; v >>= 1) {
        --n;
    }
    return n;
}

static int32_t scaled_diff(const dqa_softmax_s8_params_t *p, int32_t diff)
{
    return dqa__srdhm((int32_t)((uint32_t)diff << p->input_left_shift), p->input_multiplier);
}

void dqa_softmax_s8(const dqa_softmax_s8_params_t *p, const int8_t *input, int8_t *output)
{
    for (uint32_t row = 0; row < p->rows; ++row) {
        const int8_t *x = input + (size_t)row * p->depth;
        int8_t *y = output + (size_t)row * p->depth;
        int32_t max = INT8_MIN;
        for (uint32_t c = 0; c < p->depth; ++c) {
            max = x[c] > max ? x[c] : max;
        }
        int32_t sum = 0;
        for (uint32_t c = 0; c < p->depth; ++c) {
            const int32_t diff = x[c] - max;
            if (diff >= p->diff_min) {
                sum = dqa__wadd(sum, dqa__rdbpot(exp_negative(scaled_diff(p, diff)), SUM_INT_BITS));
            }
        }
        const int32_t headroom = count_leading_zeros((uint32_t)sum);
        const int32_t scale = one_over_one_plus((int32_t)(((uint32_t)sum << headroom) - ((uint32_t)1 << 31)));
        const int32_t exponent = SUM_INT_BITS - headroom + 31 - 8; /* to Q0.8, the output's 1/256 steps */
        for (uint32_t c = 0; c < p->depth; ++c) {
            const int32_t diff = x[c] - max;
            int32_t v = INT8_MIN;
            if (diff >= p->diff_min) {
                v = dqa__rdbpot(dqa__srdhm(scale, exp_negative(scaled_diff(p, diff))), exponent) + INT8_MIN;
            }
            y[c] = (int8_t)dqa__clamp_s8(v, INT8_MIN, INT8_MAX);
        }
    }
}
