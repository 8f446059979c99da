/* dqa-mcu runtime: the epilogue of CONV_2D and DEPTHWISE_CONV_2D, TFLite-exact int8 (docs/spec_tflite.md
 * 3.1, 3.2): accumulators to int8 outputs, a run of channels of one or two pixels per call. */
#include <string.h>

#include "dqa_s8_internal.h"

#if !DQA_CONV_TILE_ROWS
/* out[0 .. n) raised to at least act_min: on DSP cores four at a time (SSUB8 sets a flag per byte, SEL
 * picks; v7-M loads and stores words unaligned). */
__attribute__((noinline)) static void clamp_below(int8_t *out, uint32_t n, int32_t act_min)
{
    uint32_t i = 0;
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP
    const int8x4_t min4 = (int8x4_t)((uint32_t)(uint8_t)act_min * 0x01010101u);
    for (; i + sizeof(uint32_t) <= n; i += sizeof(uint32_t)) {
        int8x4_t v;
        memcpy(&v, out + i, sizeof v);
        (void)__ssub8(v, min4);
        v = (int8x4_t)__sel((uint8x4_t)v, (uint8x4_t)min4);
        memcpy(out + i, &v, sizeof v);
    }
#endif
    for (; i < n; ++i) {
        out[i] = (int8_t)(out[i] < act_min ? act_min : out[i]);
    }
}
#endif

#if DQA_CONV_TILE_ROWS
/* Spec 3.1's epilogue of four channels, lane by lane: (acc + bias) << left (wraps; with_left 0: no channel
 * shifts left, a folded_epilogue layer); VQRDMULH is SRDHM, floor((x * M + 2^30) / 2^31), saturating only
 * -2^31 * -2^31 (spec 2); RDBPOT by VRSHL, which rounds ties up, of a negative value one lower, which rounds
 * them away from zero instead (x - 1 only saturates at -2^31, whose quotient is exact); the offset added
 * saturating (as dqa__conv_output_s8: after a left shift the wrapped sum could cross the clamp); clamped.
 * neg_right: -right, 0 for a left shift. */
static inline int32x4_t requantize_vector(int32x4_t acc, int32x4_t bias, int32x4_t left, int32x4_t multiplier,
                                          int32x4_t neg_right, int32_t output_offset, int32x4_t lo, int32x4_t hi,
                                          const int with_left)
{
    const int32x4_t x = with_left ? vshlq_s32(vaddq_s32(acc, bias), left) : vaddq_s32(acc, bias);
    const int32x4_t high = vqrdmulhq_s32(x, multiplier);
    const int32x4_t away = vqaddq_s32(high, vshrq_n_s32(vandq_s32(high, neg_right), 31));
    return vminq_s32(vmaxq_s32(vqaddq_n_s32(vrshlq_s32(away, neg_right), output_offset), lo), hi);
}

/* Channels [0, rows) of both pixels (acc, acc1 -> out, out1; out1 first: a lone pixel's partner is its own
 * place), four per step: whole vectors unpredicated (GCC 12 gives every predicated instruction its own
 * VPST), the rest predicated. */
static inline __attribute__((always_inline)) void requantize_channels(const int32_t *acc, const int32_t *bias,
    const int32_t *multiplier, const int8_t *shift, uint32_t rows, int8_t *out, int8_t *out1, int32_t output_offset,
    int32_t act_min, int32_t act_max, const int with_left)
{
    const int32_t *acc1 = acc + DQA_REQUANTIZE_CHANNELS;
    const int32x4_t zero = vdupq_n_s32(0), lo = vdupq_n_s32(act_min), hi = vdupq_n_s32(act_max);
    uint32_t r = 0;
    for (; r + 4u <= rows; r += 4u) {
        const int32x4_t shifts = vldrbq_s32(shift + r);
        const int32x4_t left = with_left ? vmaxq_s32(shifts, zero) : zero, neg_right = vminq_s32(shifts, zero);
        const int32x4_t biases = vldrwq_s32(bias + r), multipliers = vldrwq_s32(multiplier + r);
        vstrbq_s32(out1 + r, requantize_vector(vldrwq_s32(acc1 + r), biases, left, multipliers, neg_right,
                                               output_offset, lo, hi, with_left));
        vstrbq_s32(out + r, requantize_vector(vldrwq_s32(acc + r), biases, left, multipliers, neg_right,
                                              output_offset, lo, hi, with_left));
    }
    if (r < rows) { /* acc holds DQA_REQUANTIZE_CHANNELS per pixel: its whole vector may be read */
        const mve_pred16_t active = vctp32q(rows - r);
        const int32x4_t shifts = vldrbq_z_s32(shift + r, active);
        const int32x4_t left = with_left ? vmaxq_s32(shifts, zero) : zero, neg_right = vminq_s32(shifts, zero);
        const int32x4_t biases = vldrwq_z_s32(bias + r, active), multipliers = vldrwq_z_s32(multiplier + r, active);
        vstrbq_p_s32(out1 + r, requantize_vector(vldrwq_s32(acc1 + r), biases, left, multipliers, neg_right,
                                                 output_offset, lo, hi, with_left), active);
        vstrbq_p_s32(out + r, requantize_vector(vldrwq_s32(acc + r), biases, left, multipliers, neg_right,
                                                output_offset, lo, hi, with_left), active);
    }
}
#endif

/* A channel's parameters are read once for both pixels. The fields are read into locals first: a store
 * through int8_t * could alias them, and the compiler would read them again for every output. */
void dqa__requantize_s8(const dqa_conv_s8_params_t *p, const int32_t *acc, uint32_t count,
                        uint32_t oc, uint32_t rows, int8_t *const *pixel_out)
{
    const int32_t *bias = p->bias + oc, *multiplier = p->multiplier + oc;
    const int8_t *shift = p->shift + oc;
    const int32_t output_offset = p->output_offset, act_min = p->act_min, act_max = p->act_max;
    /* a lone pixel's partner outputs go to its own place first, then its own overwrite them */
    int8_t *out = pixel_out[0] + oc, *out1 = pixel_out[count == 2u ? 1 : 0] + oc;
#if DQA_CONV_TILE_ROWS /* MVE: four channels as one vector; a folded_epilogue layer shifts none left */
    if (p->folded_epilogue) {
        requantize_channels(acc, bias, multiplier, shift, rows, out, out1, output_offset, act_min, act_max, 0);
    } else {
        requantize_channels(acc, bias, multiplier, shift, rows, out, out1, output_offset, act_min, act_max, 1);
    }
#else
    if (p->folded_epilogue) { /* nearly every layer: one form, no test per channel, the offset in the nudge */
        const int32_t *acc1 = acc + DQA_REQUANTIZE_CHANNELS; /* at a constant offset: no register of its own */
        for (uint32_t r = 0; r < rows; ++r) {
            const int32_t b = bias[r], m = multiplier[r], right = -shift[r];
            const int32_t base = dqa__folded_base(output_offset, right);
            out1[r] = (int8_t)dqa__folded_s8(acc1[r], b, m, base, right);
            out[r] = (int8_t)dqa__folded_s8(acc[r], b, m, base, right); /* a lone one's */
        }
        /* a clamp above -128 (a ReLU whose output zero point is above -128) as a pass of its own: in
         * the loop above, act_min took a register that GCC 12 found by spilling (VWW on Cortex-M7, this and
         * the three-instruction nudge: 19.11 -> 17.75 M) */
        if (act_min > INT8_MIN) {
            clamp_below(out1, rows, act_min);
            clamp_below(out, rows, act_min);
        }
        return;
    }
    for (uint32_t r = 0; r < rows; ++r) { /* the rare layers (none in the bench's models): one general form */
        for (uint32_t j = 2u; j-- > 0u;) {
            (j ? out1 : out)[r] = dqa__conv_output_s8(acc[j * DQA_REQUANTIZE_CHANNELS + r], bias[r], multiplier[r],
                                                      shift[r], output_offset, act_min, act_max);
        }
    }
#endif
}
