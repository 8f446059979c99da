/* dqa-mcu runtime: ADD (and SUB), TFLite-exact int8 (docs/spec_tflite.md 3.4, 3.10). */
#include <stddef.h>

#include "dqa_s8_internal.h"

/* Every int8 value's rescaled value (spec 3.4), table[q] = RDBPOT(SRDHM(x, M), right) with x = (q + offset) *
 * 2^left_shift (which fits int32: |q + offset| <= 255, left_shift 20), as one rounding of the 64-bit product
 * (spec 2): floor((x * M + nudge) / 2^(31 + right)), the nudge 2^31 lower for a negative product. The sum is
 * stepped by M * 2^left_shift from one value to the next; the product changes sign once, at x = 0 (where
 * either nudge gives 0), so two loops with one nudge each; the quotient is the sum's high word shifted by
 * right - 1 (for right = 0 the sum is doubled and the high word is the quotient). M < 0 for SUB's second
 * operand. */
static void rescale_table(int32_t *table, int32_t offset, int32_t left_shift, int32_t multiplier, int32_t shift)
{
    const int32_t right = -shift; /* shift <= 0 (checked offline) */
    const int32_t doubling = right == 0, rest = right == 0 ? 0 : right - 1;
    const int64_t step = (int64_t)multiplier * ((int64_t)1 << (left_shift + doubling));
    const int64_t sign_change = right > 0 ? (int64_t)1 << 31 : 0; /* the nudges' difference */
    int64_t sum = (INT8_MIN + offset) * step + ((int64_t)1 << (30 + doubling)) +
                  (right > 0 ? (int64_t)1 << (30 + right) : 0) - (multiplier >= 0 ? sign_change : 0);
    int32_t q = INT8_MIN;
    for (; q < -offset; ++q, sum += step) { /* x < 0 */
        table[q] = (int32_t)(sum >> 32) >> rest;
    }
    sum += multiplier >= 0 ? sign_change : -sign_change;
    for (; q <= INT8_MAX; ++q, sum += step) {
        table[q] = (int32_t)(sum >> 32) >> rest;
    }
}

/* The output of a sum of rescaled values, with one rounding (spec 2): the output shift is -1 or less
 * (checked offline). */
static inline int8_t add_output(int32_t sum, int32_t multiplier, int32_t shift, int32_t offset, int32_t act_min,
                                int32_t act_max)
{
    return (int8_t)dqa__clamp_s8(dqa__mbqm_right(sum, multiplier, -shift) + offset, act_min, act_max);
}

/* Rows first_row .. end_row - 1 from the operands' tables. The parameters the loop needs are copied first:
 * stores through int8_t * could alias them, and the compiler would read every field again per element.
 * Operand k's row y is row y of its rows (row 0 of a single-row one, broadcast over the output's rows). */
static inline void add_rows(const dqa_add_s8_params_t *p, const dqa_rows_s8_t *input1, const dqa_rows_s8_t *input2,
                            const dqa_rows_s8_t *output, uint32_t first_row, uint32_t end_row,
                            const int32_t *rescaled1, const int32_t *rescaled2)
{
    const dqa_broadcast_s8_t shape = p->shape, *s = &shape;
    const int32_t multiplier = p->output_multiplier, shift = p->output_shift, offset = p->output_offset;
    const int32_t act_min = p->act_min, act_max = p->act_max;
    for (uint32_t y = first_row; y < end_row; ++y) {
        const int8_t *row1 = dqa_row_s8(input1, y), *row2 = dqa_row_s8(input2, y);
        int8_t *out = dqa_row_s8(output, y);
        for (uint32_t x = 0; x < s->out_w; ++x) {
            const int8_t *in1 = row1 + (size_t)x * s->input1_stride_w;
            const int8_t *in2 = row2 + (size_t)x * s->input2_stride_w;
            const uint32_t step1 = s->input1_stride_c, step2 = s->input2_stride_c;
            if (step1 == 1u && step2 == 1u) { /* no broadcast along the channels: the pointers step alone */
                for (const int8_t *end = in1 + s->out_c; in1 != end; ++in1, ++in2) {
                    *out++ = add_output(dqa__wadd(rescaled1[*in1], rescaled2[*in2]), multiplier, shift, offset,
                                        act_min, act_max);
                }
                continue;
            }
            for (uint32_t c = 0; c < s->out_c; ++c) {
                *out++ = add_output(dqa__wadd(rescaled1[in1[c * step1]], rescaled2[in2[c * step2]]), multiplier,
                                    shift, offset, act_min, act_max);
            }
        }
    }
}

/* An operand's rescaled value depends on its int8 value alone: `tables` (2 x 256 int32 of scratch) keeps
 * them for all 256 values of each operand, computed once per call (512 rescales instead of two per
 * element). */
void dqa_add_s8_rows(const dqa_add_s8_params_t *p, const dqa_rows_s8_t *input1, const dqa_rows_s8_t *input2,
                     const dqa_rows_s8_t *output, uint32_t first_row, uint32_t end_row, int32_t *tables)
{
    int32_t *const rescaled1 = tables + 128, *const rescaled2 = tables + 256 + 128; /* indexed by the value */
    if (first_row >= end_row) {
        return;
    }
    rescale_table(rescaled1, p->input1_offset, p->left_shift, p->input1_multiplier, p->input1_shift);
    rescale_table(rescaled2, p->input2_offset, p->left_shift, p->input2_multiplier, p->input2_shift);
    add_rows(p, input1, input2, output, first_row, end_row, rescaled1, rescaled2);
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
