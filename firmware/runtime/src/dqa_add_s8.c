/* dqa-mcu runtime: ADD, TFLite-exact int8 (docs/spec_tflite.md 3.4). */
#include "dqa_s8_internal.h"

static int32_t rescale(int32_t v, int32_t multiplier, int32_t shift)
{
    return dqa__rdbpot(dqa__srdhm(v, multiplier), -shift); /* shift <= 0 (checked offline) */
}

void dqa_add_s8(const dqa_add_s8_params_t *p, const int8_t *input1, const int8_t *input2, int8_t *output)
{
    for (uint32_t i = 0; i < p->size; ++i) {
        const int32_t a = (int32_t)((uint32_t)(input1[i] + p->input1_offset) << p->left_shift);
        const int32_t b = (int32_t)((uint32_t)(input2[i] + p->input2_offset) << p->left_shift);
        const int32_t sum = dqa__wadd(rescale(a, p->input1_multiplier, p->input1_shift),
                                      rescale(b, p->input2_multiplier, p->input2_shift));
        const int32_t y = rescale(sum, p->output_multiplier, p->output_shift) + p->output_offset;
        output[i] = (int8_t)dqa__clamp_s8(y, p->act_min, p->act_max);
    }
}
