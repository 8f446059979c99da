/* dqa-mcu runtime: ADD (and SUB), TFLite-exact int8 (docs/spec_tflite.md 3.4, 3.10). */
#include <stddef.h>

#include "dqa_s8_internal.h"

static inline int32_t rescale(int32_t v, int32_t multiplier, int32_t shift)
{
    return dqa__rdbpot(dqa__srdhm(v, multiplier), -shift); /* shift <= 0 (checked offline) */
}

/* The parameters are copied first: stores through int8_t * could alias them, and the compiler would read
 * every field again per element. */
void dqa_add_s8(const dqa_add_s8_params_t *params, const int8_t *input1, const int8_t *input2, int8_t *output)
{
    const dqa_add_s8_params_t copy = *params, *p = &copy;
    const dqa_broadcast_s8_t *s = &p->shape;
    for (uint32_t y = 0; y < s->out_h; ++y) {
        for (uint32_t x = 0; x < s->out_w; ++x) {
            const int8_t *in1 = input1 + (size_t)y * s->input1_stride_h + (size_t)x * s->input1_stride_w;
            const int8_t *in2 = input2 + (size_t)y * s->input2_stride_h + (size_t)x * s->input2_stride_w;
            for (uint32_t c = 0; c < s->out_c; ++c) {
                const int32_t a = (int32_t)((uint32_t)(in1[c * s->input1_stride_c] + p->input1_offset)
                                            << p->left_shift);
                const int32_t b = (int32_t)((uint32_t)(in2[c * s->input2_stride_c] + p->input2_offset)
                                            << p->left_shift);
                const int32_t sum = dqa__wadd(rescale(a, p->input1_multiplier, p->input1_shift),
                                              rescale(b, p->input2_multiplier, p->input2_shift));
                const int32_t v = rescale(sum, p->output_multiplier, p->output_shift) + p->output_offset;
                *output++ = (int8_t)dqa__clamp_s8(v, p->act_min, p->act_max);
            }
        }
    }
}
