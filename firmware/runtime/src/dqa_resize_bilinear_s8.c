/* dqa-mcu runtime: RESIZE_BILINEAR, TFLite-exact int8 (docs/spec_tflite.md 3.13). */
#include <stddef.h>

#include "dqa_s8_internal.h"

#define ONE_Q10 (1 << 10)

typedef struct {
    int32_t lower, upper, weight; /* weight of `upper`, Q10 (negative before the first half-pixel centre) */
} tap_t;

static tap_t tap(int32_t i, int32_t scale_10, int32_t half_pixel_centers, int32_t in_size)
{
    const int32_t position = i * scale_10 + (half_pixel_centers ? scale_10 / 2 - ONE_Q10 / 2 : 0);
    tap_t t;
    t.lower = position / ONE_Q10 < 0 ? 0 : position / ONE_Q10; /* C division */
    t.upper = (position + ONE_Q10 - 1) / ONE_Q10;
    t.upper = t.upper > in_size - 1 ? in_size - 1 : t.upper;
    t.weight = position - ONE_Q10 * t.lower;
    return t;
}

void dqa_resize_bilinear_s8(const dqa_resize_bilinear_s8_params_t *p, const int8_t *input, int8_t *output)
{
    const size_t row = (size_t)p->in_w * p->channels;
    for (int32_t y = 0; y < p->out_h; ++y) {
        const tap_t ty = tap(y, p->scale_10_h, p->half_pixel_centers, p->in_h);
        for (int32_t x = 0; x < p->out_w; ++x) {
            const tap_t tx = tap(x, p->scale_10_w, p->half_pixel_centers, p->in_w);
            const int8_t *x00 = input + (size_t)ty.lower * row + (size_t)tx.lower * p->channels;
            const int8_t *x10 = input + (size_t)ty.upper * row + (size_t)tx.lower * p->channels;
            const int8_t *x01 = input + (size_t)ty.lower * row + (size_t)tx.upper * p->channels;
            const int8_t *x11 = input + (size_t)ty.upper * row + (size_t)tx.upper * p->channels;
            for (uint32_t c = 0; c < p->channels; ++c) {
                /* the four products in int64 as the reference kernel, in its order; the sum is x 2^20
                 * a value of the input's range, so it fits int32 for the division */
                const int64_t sum = (int64_t)x00[c] * (ONE_Q10 - ty.weight) * (ONE_Q10 - tx.weight) +
                                    (int64_t)x10[c] * ty.weight * (ONE_Q10 - tx.weight) +
                                    (int64_t)x01[c] * (ONE_Q10 - ty.weight) * tx.weight +
                                    (int64_t)x11[c] * ty.weight * tx.weight;
                const int32_t s = (int32_t)sum;
                *output++ = (int8_t)((s + (s > 0 ? (1 << 19) : -(1 << 19))) / (1 << 20));
            }
        }
    }
}
