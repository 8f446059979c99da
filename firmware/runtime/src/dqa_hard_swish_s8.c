/* dqa-mcu runtime: HARD_SWISH, TFLite-exact int8 in int16 fixed point (docs/spec_tflite.md 3.14). */
#include "dqa_s8_internal.h"

/* SRDHM on int16: (a * b + nudge) / 2^15, C division; -2^15 * -2^15 saturates. */
static int16_t srdhm16(int16_t a, int16_t b)
{
    if (a == INT16_MIN && b == INT16_MIN) {
        return INT16_MAX;
    }
    const int32_t ab = (int32_t)a * b;
    return (int16_t)((ab + (ab >= 0 ? (1 << 14) : 1 - (1 << 14))) / (1 << 15));
}

static int16_t saturate16(int32_t v)
{
    return (int16_t)(v < INT16_MIN ? INT16_MIN : (v > INT16_MAX ? INT16_MAX : v));
}

/* x * 2^shift clamped to int16: from 15 bits on, any non-zero x saturates (and the int32 product could
 * overflow), so it is not computed. */
static int16_t saturating_left_shift16(int16_t x, int32_t shift)
{
    if (shift >= 15) {
        return x > 0 ? INT16_MAX : (x < 0 ? INT16_MIN : 0);
    }
    return saturate16((int32_t)x * (1 << shift));
}

void dqa_hard_swish_s8(const dqa_hard_swish_s8_params_t *p, const int8_t *input, int8_t *output)
{
    for (uint32_t i = 0; i < p->size; ++i) {
        const int16_t hires = (int16_t)((input[i] - p->input_zero_point) * (1 << 7));
        const int16_t preshift = srdhm16(hires, p->output_multiplier); /* x on the output scale, unshifted */
        /* relu6(x + 3) / 6 as a Q0.15 value in [0, 1]: x rescaled so that 3 maps to 2^15, saturating */
        int16_t reluish = hires;
        if (p->reluish_exponent > 0) { /* all of the left shift but its last bit before the multiply */
            reluish = saturating_left_shift16(reluish, p->reluish_exponent - 1);
        }
        reluish = srdhm16(reluish, p->reluish_multiplier);
        if (p->reluish_exponent > 0) {
            reluish = saturate16((int32_t)reluish * 2);
        } else if (p->reluish_exponent < 0) {
            reluish = (int16_t)dqa__rdbpot(reluish, -p->reluish_exponent);
        }
        reluish = (int16_t)((reluish + (1 << 15)) >> 1);
        /* a truncating doubling high product (reluish >= 0, so no saturating case) */
        const int16_t product = (int16_t)(((int32_t)reluish * preshift) / (1 << 15));
        const int32_t y = dqa__rdbpot(product, -p->output_exponent) + p->output_zero_point;
        output[i] = (int8_t)dqa__clamp_s8(y, INT8_MIN, INT8_MAX);
    }
}
