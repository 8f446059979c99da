/* dqa-mcu runtime: AVERAGE_POOL_2D, TFLite-exact int8 (docs/spec_tflite.md 3.5). */
#include <stddef.h>
#include <string.h>

#include "dqa_s8_internal.h"

/* The mean of `count` taps summing to `sum`, rounded half away from zero, clamped. */
static inline int8_t average(int32_t sum, int32_t count, const dqa_pool_s8_params_t *p)
{
    const int32_t avg = sum > 0 ? (sum + count / 2) / count : (sum - count / 2) / count;
    return (int8_t)dqa__clamp_s8(avg, p->act_min, p->act_max);
}

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
                *output++ = average(sum, count, p);
            }
        }
    }
}

/* A pool whose one window is the whole input (VALID, filter in_h x in_w), fed input rows [first_row,
 * end_row) at a time: `sums` (channels int32) carries the window's sums from call to call. */
void dqa_avgpool_s8_global_rows(const dqa_pool_s8_params_t *p, const dqa_rows_s8_t *input, uint32_t first_row,
                                uint32_t end_row, int32_t *sums, int8_t *output)
{
    const uint32_t channels = p->channels;
    if (first_row == 0 && end_row > 0) {
        memset(sums, 0, channels * sizeof *sums);
    }
    for (uint32_t y = first_row; y < end_row; ++y) {
        const int8_t *x = dqa_row_s8(input, y);
        for (uint32_t i = 0; i < p->in_w; ++i, x += channels) {
            for (uint32_t c = 0; c < channels; ++c) {
                sums[c] += x[c];
            }
        }
    }
    if (end_row == p->in_h && first_row < end_row) {
        for (uint32_t c = 0; c < channels; ++c) {
            output[c] = average(sums[c], (int32_t)p->in_h * p->in_w, p);
        }
    }
}
