/* dqa-mcu runtime: ADD (and SUB), TFLite-exact int8 (docs/spec_tflite.md 3.4, 3.10). */
#include <stddef.h>

#include "dqa_s8_internal.h"

static inline int32_t rescale(int32_t v, int32_t multiplier, int32_t shift)
{
    return dqa__rdbpot(dqa__srdhm(v, multiplier), -shift); /* shift <= 0 (checked offline) */
}

/* One output from its operands' rescaled values. */
static inline int8_t add_element(int32_t rescaled1, int32_t rescaled2, int32_t multiplier, int32_t shift,
                                 int32_t offset, int32_t act_min, int32_t act_max)
{
    return (int8_t)dqa__clamp_s8(rescale(dqa__wadd(rescaled1, rescaled2), multiplier, shift) + offset, act_min,
                                 act_max);
}

/* An operand's rescaled value depends on its int8 value alone: `tables` (2 x 256 int32 of scratch) keeps
 * them for all 256 values of each operand, computed once per call (512 rescales instead of two per
 * element). The parameters the loop needs are copied first: stores through int8_t * could alias them,
 * and the compiler would read every field again per element. Operand k's row y is row y of its rows
 * (row 0 of a single-row one, broadcast over the output's rows). */
void dqa_add_s8_rows(const dqa_add_s8_params_t *p, const dqa_rows_s8_t *input1, const dqa_rows_s8_t *input2,
                     const dqa_rows_s8_t *output, uint32_t first_row, uint32_t end_row, int32_t *tables)
{
    const dqa_broadcast_s8_t shape = p->shape, *s = &shape;
    const int32_t multiplier = p->output_multiplier, shift = p->output_shift, offset = p->output_offset;
    const int32_t act_min = p->act_min, act_max = p->act_max;
    int32_t *const rescaled1 = tables + 128, *const rescaled2 = tables + 256 + 128; /* indexed by the value */
    if (first_row >= end_row) {
        return;
    }
    for (int32_t q = INT8_MIN; q <= INT8_MAX; ++q) {
        rescaled1[q] = rescale((int32_t)((uint32_t)(q + p->input1_offset) << p->left_shift), p->input1_multiplier,
                               p->input1_shift);
        rescaled2[q] = rescale((int32_t)((uint32_t)(q + p->input2_offset) << p->left_shift), p->input2_multiplier,
                               p->input2_shift);
    }
    for (uint32_t y = first_row; y < end_row; ++y) {
        const int8_t *row1 = dqa_row_s8(input1, y), *row2 = dqa_row_s8(input2, y);
        int8_t *out = dqa_row_s8(output, y);
        for (uint32_t x = 0; x < s->out_w; ++x) {
            const int8_t *in1 = row1 + (size_t)x * s->input1_stride_w;
            const int8_t *in2 = row2 + (size_t)x * s->input2_stride_w;
            const uint32_t step1 = s->input1_stride_c, step2 = s->input2_stride_c;
            if (step1 == 1u && step2 == 1u) { /* no broadcast along the channels: the pointers step alone */
                for (const int8_t *end = in1 + s->out_c; in1 != end; ++in1, ++in2) {
                    *out++ = add_element(rescaled1[*in1], rescaled2[*in2], multiplier, shift, offset, act_min,
                                         act_max);
                }
                continue;
            }
            for (uint32_t c = 0; c < s->out_c; ++c) {
                *out++ = add_element(rescaled1[in1[c * step1]], rescaled2[in2[c * step2]], multiplier, shift,
                                     offset, act_min, act_max);
            }
        }
    }
}

/* An operand broadcast over the output's rows (stride 0) is one row. */
void dqa_add_s8(const dqa_add_s8_params_t *p, const int8_t *input1, const int8_t *input2, int8_t *output,
                int32_t *tables)
{
    const dqa_broadcast_s8_t *s = &p->shape;
    const dqa_rows_s8_t in1 = dqa_whole_s8(input1, s->input1_stride_h, s->input1_stride_h ? s->out_h : 1u);
    const dqa_rows_s8_t in2 = dqa_whole_s8(input2, s->input2_stride_h, s->input2_stride_h ? s->out_h : 1u);
    const dqa_rows_s8_t out = dqa_whole_s8(output, (uint32_t)s->out_w * s->out_c, s->out_h);
    dqa_add_s8_rows(p, &in1, &in2, &out, 0, s->out_h, tables);
}
