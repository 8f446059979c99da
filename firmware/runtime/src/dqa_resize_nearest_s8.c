/* dqa-mcu runtime: RESIZE_NEAREST_NEIGHBOR, TFLite-exact int8 (docs/spec_tflite.md 3.12): a copy. */
#include <stddef.h>
#include <string.h>

#include "dqa_s8_internal.h"

void dqa_resize_nearest_s8(const dqa_resize_nearest_s8_params_t *p, const int8_t *input, int8_t *output)
{
    for (uint32_t y = 0; y < p->out_h; ++y) {
        const int8_t *row = input + (size_t)p->y_index[y] * p->in_w * p->channels;
        for (uint32_t x = 0; x < p->out_w; ++x) {
            memcpy(output, row + (size_t)p->x_index[x] * p->channels, p->channels);
            output += p->channels;
        }
    }
}
