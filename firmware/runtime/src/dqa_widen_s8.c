/* dqa-mcu runtime, TFLite-exact int8 mode: int8 activations widened for the MAC tiles (dqa_s8_internal.h). */
#include <string.h>

#include "dqa_s8_internal.h"

void dqa__widen_s8(int16_t *column, uint32_t k, uint32_t pair_step, const int8_t *x, uint32_t n, int32_t offset)
{
#if DQA_CONV_TILE_ROWS /* MVE: columns contiguous (pair_step 2), 8 per widening load, the rest predicated */
    (void)pair_step;
    column += k;
    for (; n >= DQA_MVE_LANES; n -= DQA_MVE_LANES, x += DQA_MVE_LANES, column += DQA_MVE_LANES) {
        vstrhq_s16(column, vaddq_n_s16(vldrbq_s16(x), (int16_t)offset));
    }
    if (n > 0u) {
        const mve_pred16_t active = vctp16q(n);
        vstrhq_p_s16(column, vaddq_n_s16(vldrbq_z_s16(x, active), (int16_t)offset), active);
    }
#else
    if ((k & 1u) && n > 0u) { /* the second half of a pair first */
        column[(k >> 1) * pair_step + 1u] = (int16_t)(*x++ + offset);
        k++;
        n--;
    }
    int16_t *pair = column + (k >> 1) * pair_step;
#if defined(__ARM_FEATURE_DSP) && __ARM_FEATURE_DSP /* 4 per word: SXTAB16 even / odd bytes + offset, PKHBT/TB */
    const int16x2_t offsets = (int16x2_t)((uint32_t)(uint16_t)offset * 0x10001u);
    for (; n >= 4u; n -= 4u, x += 4, pair += 2u * pair_step) {
        const uint32_t v = dqa__load32(x);
        const int16x2_t even = __sxtab16(offsets, (int8x4_t)v);  /* x0, x2 (int8 + offset: no halfword wraps) */
        const int16x2_t odd = dqa__sxtab16_ror8(offsets, v);     /* x1, x3 */
        uint32_t x01, x23;
        /* GCC 12 writes these with four instructions each as C (masks, shifts, ORRs) */
        __asm__("pkhbt %0, %1, %2, lsl #16" : "=r"(x01) : "r"(even), "r"(odd));
        __asm__("pkhtb %0, %1, %2, asr #16" : "=r"(x23) : "r"(odd), "r"(even));
        memcpy(pair, &x01, sizeof x01);
        memcpy(pair + pair_step, &x23, sizeof x23);
    }
#endif
    for (; n >= 2u; n -= 2u, x += 2, pair += pair_step) {
        pair[0] = (int16_t)(x[0] + offset);
        pair[1] = (int16_t)(x[1] + offset);
    }
    if (n > 0u) {
        pair[0] = (int16_t)(x[0] + offset);
    }
#endif
}
