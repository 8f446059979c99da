/* dqa-mcu runtime: LEAKY_RELU, RELU and RELU6, TFLite-exact int8 (docs/spec_tflite.md 3.11). */
#include "dqa_s8_internal.h"

void dqa_leaky_relu_s8(const dqa_leaky_relu_s8_params_t *p, const int8_t *input, int8_t *output)
{
    for (uint32_t i = 0; i < p->size; ++i) {
        const int32_t v = input[i] - p->input_zero_point;
        const int32_t y = v >= 0 ? dqa__mbqm(v, p->multiplier, p->shift)
                                 : dqa__mbqm(v, p->alpha_multiplier, p->alpha_shift);
        output[i] = (int8_t)dqa__clamp_s8(y + p->output_zero_point, p->act_min, p->act_max);
    }
}
