/* dqa-mcu runtime: AVERAGE_POOL_2D, TFLite-exact int8 (docs/spec_tflite.md 3.5). */
#include <stddef.h>

#include "dqa_s8_internal.h"

void dqa_avgpool_s8(const dqa_pool_s8_params_t *p, const int8_t *input, int8_t *output)
{
    for (int32_t oy = 0; oy < p->out_h; ++oy) {
        const int32_t top = oy * p->stride_h - p->pad_top;
        for (int32_t ox = 0; ox < p->out_w; ++ox) {
            const int32_t left = ox * p->stride_w - p->pad_left;
            for (uint32_t c = 0; c < p->channels; ++c) {
                int32_t sum = 0;
                int32_t count = 0; /* valid taps only: padding is not counted */
                for (int32_t iy = top < 0 ? 0 : top; iy < top + p->filter_h && iy < p->in_h; ++iy) {
                    for (int32_t ix = left < 0 ? 0 : left; ix < left + p->filter_w && ix < p->in_w; ++ix) {
                        sum += input[((size_t)iy * p->in_w + (size_t)ix) * p->channels + c];
                        ++count;
                    }
                }
                /* the mean rounded half away from zero */
                const int32_t avg = sum > 0 ? (sum + count / 2) / count : (sum - count / 2) / count;
                *output++ = (int8_t)dqa__clamp_s8(avg, p->act_min, p->act_max);
            }
        }
    }
}
