/* dqa-mcu runtime: MEAN over height and width, TFLite-exact int8 (docs/spec_tflite.md 3.7). */
#include <stddef.h>

#include "dqa_s8_internal.h"

void dqa_mean_s8(const dqa_mean_s8_params_t *p, const int8_t *input, int8_t *output)
{
    for (uint32_t c = 0; c < p->channels; ++c) {
        int32_t sum = 0;
        for (uint32_t i = 0; i < p->count; ++i) {
            sum += input[(size_t)i * p->channels + c];
        }
        const int32_t shifted = dqa__wsub(sum, p->input_zero_point * (int32_t)p->count);
        const int32_t y = dqa__mbqm(shifted, p->multiplier, p->shift) + p->output_zero_point;
        output[c] = (int8_t)dqa__clamp_s8(y, INT8_MIN, INT8_MAX);
    }
}
