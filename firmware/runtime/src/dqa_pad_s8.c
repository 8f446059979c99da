/* dqa-mcu runtime: PAD of height and width, TFLite-exact int8 (docs/spec_tflite.md 3.9). */
#include <stddef.h>
#include <string.h>

#include "dqa_s8_internal.h"

void dqa_pad_s8(const dqa_pad_s8_params_t *p, const int8_t *input, int8_t *output)
{
    const size_t row = (size_t)(p->pad_left + p->in_w + p->pad_right) * p->channels;
    const size_t left = (size_t)p->pad_left * p->channels;
    const size_t right = (size_t)p->pad_right * p->channels;
    const size_t inner = (size_t)p->in_w * p->channels;
    memset(output, p->pad_value, row * p->pad_top);
    output += row * p->pad_top;
    for (uint32_t y = 0; y < p->in_h; ++y) {
        memset(output, p->pad_value, left);
        memcpy(output + left, input + y * inner, inner);
        memset(output + left + inner, p->pad_value, right);
        output += row;
    }
    memset(output, p->pad_value, row * p->pad_bottom);
}
