/* dqa-mcu runtime: MUL, TFLite-exact int8 (docs/spec_tflite.md 3.10). */
#include "dqa_s8_internal.h"

void dqa_mul_s8(const dqa_mul_s8_params_t *p, const int8_t *input1, const int8_t *input2, int8_t *output)
{
    uint32_t i1 = 0, i2 = 0; /* positions in operands that repeat along the output */
    for (uint32_t i = 0; i < p->size; ++i) {
        const int32_t product = (input1[i1] + p->input1_offset) * (input2[i2] + p->input2_offset);
        const int32_t y = dqa__mbqm(product, p->output_multiplier, p->output_shift) + p->output_offset;
        output[i] = (int8_t)dqa__clamp_s8(y, p->act_min, p->act_max);
        if (++i1 == p->input1_size) {
            i1 = 0;
        }
        if (++i2 == p->input2_size) {
            i2 = 0;
        }
    }
}
