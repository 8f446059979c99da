/*
 * dqa-mcu C runtime, TFLite-exact int8 mode: kernels that reproduce TFLite's
 * reference int8 kernels bit for bit (docs/spec_tflite.md; the NumPy side is
 * dqa_mcu/reference/tflite.py). Tensors are plain int8 NHWC arrays (or [1, N]
 * vectors) in the model's static arena; dqa_conv2d_s8, dqa_fully_connected_s8 and dqa_add_s8 need scratch memory.
 *
 * Multipliers and shifts follow TFLite's convention: real ~= M * 2^(shift - 31),
 * shift > 0 multiplies first (spec 2, MBQM).
 */
#ifndef DQA_RUNTIME_S8_H
#define DQA_RUNTIME_S8_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* A tensor's rows in the arena (docs/spec_tflite.md 5.1): row y at data + (y % slots) * row_bytes. A whole
 * tensor has a slot per row; a row-streamed one is a ring of fewer, the rows its readers still need. The
 * *_rows kernels take their tensors so, and compute rows [first_row, end_row) of their output (of their
 * input for dqa_avgpool_s8_global_rows); the whole-tensor kernels call them with every row. */
typedef struct {
    int8_t *data;
    uint32_t row_bytes; /* width x channels */
    uint16_t slots;
} dqa_rows_s8_t;

static inline int8_t *dqa_row_s8(const dqa_rows_s8_t *t, uint32_t y)
{
    return t->data + (size_t)(y % t->slots) * t->row_bytes;
}

/* A whole tensor of `height` rows (an input is only read through it). */
static inline dqa_rows_s8_t dqa_whole_s8(const int8_t *data, uint32_t row_bytes, uint16_t height)
{
    const dqa_rows_s8_t t = {(int8_t *)(uintptr_t)data, row_bytes, height};
    return t;
}

/* The shifts of a layer whose params' folded_epilogue may be 1 (dqa__folded_s8): down to the lowest its
 * high word stays inside int32; up to the highest its nudge's high word is exact without the sign. */
#define DQA_FOLDED_MIN_SHIFT (-23)
#define DQA_FOLDED_MAX_SHIFT (-2)

/* CONV_2D (spec 3.1, groups allowed), DEPTHWISE_CONV_2D (spec 3.2) and TRANSPOSE_CONV (spec 3.15, no
 * dilation, one group). */
typedef struct {
    uint16_t in_h, in_w, in_c, out_h, out_w, out_c;
    uint16_t kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left;
    uint16_t in_c_per_group;  /* weights' depth: in_c / groups (1 for depthwise) */
    uint16_t out_c_per_group; /* out_c / groups (the depth multiplier for depthwise) */
    /* 1 when act_max is 127 and every channel's shift lies in DQA_FOLDED_MIN_SHIFT .. DQA_FOLDED_MAX_SHIFT, its
     * multiplier >= 0 (set offline): the epilogue then takes one form (spec_tflite 2's one rounding, the
     * offset in the nudge) without testing each channel */
    uint8_t folded_epilogue;
    int32_t input_offset, output_offset, act_min, act_max;
    /* CONV_2D: per group, tiles of 4 output channels as dqa_conv2d_weights_size() in dqa_runtime.h lays
     * them out (K = kernel_h * kernel_w * in_c_per_group); DEPTHWISE_CONV_2D: blocks of 4 output
     * channels (the last one narrower), each tap-major, kernel_h x kernel_w x its channels;
     * TRANSPOSE_CONV: OHWI, out_c x kernel_h x kernel_w x in_c */
    const int8_t *weights;
    const int32_t *bias;       /* out_c */
    const int32_t *multiplier; /* out_c */
    const int8_t *shift;       /* out_c, each in [-31, 31] (checked offline) */
} dqa_conv_s8_params_t;

/* FULLY_CONNECTED, rescaled as round((double) acc * scale) (spec 3.3): in
 * binary64 hardware where the core has it, else in integers from the double's
 * bits. The input offset is folded into the bias offline (spec 5), so the inner
 * loop is w * x. */
typedef struct {
    uint32_t rows;
    uint16_t in_depth, out_depth;
    int32_t output_offset, act_min, act_max;
    const int8_t *weights;         /* tiles of 4 outputs, as a 1x1 CONV_2D's (dqa_conv2d_weights_size()) */
    const int32_t *folded_bias;    /* out_depth: bias[o] + input_offset * sum_i weights[o][i], wrapped */
    const double *scale;           /* out_depth: s_x * s_w[o] / s_y in double, positive and normal */
} dqa_fully_connected_s8_params_t;

/* The operands of an element-wise op, broadcast as NumPy over an NHWC output (a [1, N] vector is
 * 1 x 1 x N): output element (y, x, c) reads operand k at y * stride_h + x * stride_w + c * stride_c,
 * with stride 0 along an axis of size 1 that the output is larger on. */
typedef struct {
    uint16_t out_h, out_w, out_c;
    uint32_t input1_stride_h, input1_stride_w, input1_stride_c;
    uint32_t input2_stride_h, input2_stride_w, input2_stride_c;
} dqa_broadcast_s8_t;

/* ADD (spec 3.4); SUB too, with input2_multiplier negated (spec 3.10). */
typedef struct {
    dqa_broadcast_s8_t shape;
    int32_t left_shift;
    int32_t input1_offset, input1_multiplier, input1_shift;
    int32_t input2_offset, input2_multiplier, input2_shift;
    int32_t output_offset, output_multiplier, output_shift;
    int32_t act_min, act_max;
} dqa_add_s8_params_t;

/* AVERAGE_POOL_2D and MAX_POOL_2D (spec 3.5, 3.6). */
typedef struct {
    uint16_t in_h, in_w, channels, out_h, out_w;
    uint16_t filter_h, filter_w, stride_h, stride_w, pad_top, pad_left;
    int32_t act_min, act_max;
} dqa_pool_s8_params_t;

/* MEAN over height and width (spec 3.7). */
typedef struct {
    uint32_t count; /* in_h * in_w */
    uint16_t channels;
    int32_t input_zero_point, output_zero_point, multiplier, shift;
} dqa_mean_s8_params_t;

/* SOFTMAX along the last axis (spec 3.8). */
typedef struct {
    uint32_t rows;
    uint16_t depth;
    int32_t input_multiplier, input_left_shift, diff_min;
} dqa_softmax_s8_params_t;

/* PAD of the height and width axes with a constant (spec 3.9). */
typedef struct {
    uint16_t in_h, in_w, channels, pad_top, pad_bottom, pad_left, pad_right;
    int8_t pad_value;
} dqa_pad_s8_params_t;

/* MUL (spec 3.10). */
typedef struct {
    dqa_broadcast_s8_t shape;
    int32_t input1_offset, input2_offset, output_offset, output_multiplier, output_shift;
    int32_t act_min, act_max;
} dqa_mul_s8_params_t;

/* LEAKY_RELU, RELU and RELU6 (spec 3.11): x - z_x rescaled to the output, by the alpha multiplier
 * where it is negative (RELU / RELU6 give the identity multiplier there too), then clamped. */
typedef struct {
    uint32_t size;
    int32_t input_zero_point, output_zero_point;
    int32_t multiplier, shift, alpha_multiplier, alpha_shift;
    int32_t act_min, act_max;
} dqa_leaky_relu_s8_params_t;

/* HARD_SWISH in int16 fixed point (spec 3.14). */
typedef struct {
    uint32_t size;
    int16_t input_zero_point, output_zero_point;
    int16_t output_multiplier, reluish_multiplier; /* Q15 */
    int16_t output_exponent;                       /* <= 0 */
    int16_t reluish_exponent;
} dqa_hard_swish_s8_params_t;

/* RESIZE_NEAREST_NEIGHBOR (spec 3.12): output pixel (y, x) copies input pixel (y_index[y], x_index[x]). */
typedef struct {
    uint16_t in_w, channels, out_h, out_w;
    const int16_t *y_index; /* out_h */
    const int16_t *x_index; /* out_w */
} dqa_resize_nearest_s8_params_t;

/* RESIZE_BILINEAR (spec 3.13): Q10 source positions, scale_10 input steps per output step. */
typedef struct {
    uint16_t in_h, in_w, channels, out_h, out_w;
    int32_t scale_10_h, scale_10_w;
    uint8_t half_pixel_centers;
} dqa_resize_bilinear_s8_params_t;

/* DEPTH_TO_SPACE (spec 3.16): in_c = block^2 x the output's channels. */
typedef struct {
    uint16_t in_h, in_w, in_c, block;
} dqa_depth_to_space_s8_params_t;

/* column: scratch of 2 x K' int16 values, two output pixels' windows: K' = kernel_h * kernel_w *
 * in_c_per_group rounded up to even. The *_get_buffer_size() functions give the scratch bytes, which the
 * generated dqa_model_init() checks against the plan; inline, so that on a model's constant parameters
 * the check costs no code. */
static inline size_t dqa_conv2d_s8_get_buffer_size(const dqa_conv_s8_params_t *p)
{
    const size_t k = (size_t)p->kernel_h * p->kernel_w * p->in_c_per_group;
    return 2u * (k + (k & 1u)) * sizeof(int16_t);
}
void dqa_conv2d_s8(const dqa_conv_s8_params_t *p, const int8_t *input, int8_t *output, int16_t *column);
void dqa_conv2d_s8_rows(const dqa_conv_s8_params_t *p, const dqa_rows_s8_t *input, const dqa_rows_s8_t *output,
                        uint32_t first_row, uint32_t end_row, int16_t *column);
void dqa_depthwise_conv2d_s8(const dqa_conv_s8_params_t *p, const int8_t *input, int8_t *output);
/* window_rows: scratch of kernel_h input rows (in_w x in_c bytes each), for the output rows whose input
 * rows wrap around a ring (dqa_depthwise_conv2d_s8 passes none: a whole tensor's rows never do). */
static inline size_t dqa_depthwise_conv2d_s8_rows_get_buffer_size(const dqa_conv_s8_params_t *p)
{
    return (size_t)p->kernel_h * p->in_w * p->in_c;
}
void dqa_depthwise_conv2d_s8_rows(const dqa_conv_s8_params_t *p, const dqa_rows_s8_t *input,
                                  const dqa_rows_s8_t *output, uint32_t first_row, uint32_t end_row,
                                  int8_t *window_rows);
void dqa_transpose_conv_s8(const dqa_conv_s8_params_t *p, const int8_t *input, int8_t *output);
void dqa_mul_s8(const dqa_mul_s8_params_t *p, const int8_t *input1, const int8_t *input2, int8_t *output);
void dqa_leaky_relu_s8(const dqa_leaky_relu_s8_params_t *p, const int8_t *input, int8_t *output);
void dqa_hard_swish_s8(const dqa_hard_swish_s8_params_t *p, const int8_t *input, int8_t *output);
/* LOGISTIC and TANH (spec 3.17): output[i] = table[input[i] + 128]. */
void dqa_lookup_s8(const int8_t *table, uint32_t size, const int8_t *input, int8_t *output);
void dqa_resize_nearest_s8(const dqa_resize_nearest_s8_params_t *p, const int8_t *input, int8_t *output);
void dqa_resize_bilinear_s8(const dqa_resize_bilinear_s8_params_t *p, const int8_t *input, int8_t *output);
void dqa_depth_to_space_s8(const dqa_depth_to_space_s8_params_t *p, const int8_t *input, int8_t *output);
/* column: scratch of in_depth int16 values, rounded up to even. */
static inline size_t dqa_fully_connected_s8_get_buffer_size(const dqa_fully_connected_s8_params_t *p)
{
    return ((size_t)p->in_depth + (p->in_depth & 1u)) * sizeof(int16_t);
}
void dqa_fully_connected_s8(const dqa_fully_connected_s8_params_t *p, const int8_t *input, int8_t *output,
                            int16_t *column);
/* tables: scratch of DQA_ADD_S8_TABLE_VALUES int32 (each operand's rescaled value for every int8 value). */
#define DQA_ADD_S8_TABLE_VALUES 512
static inline size_t dqa_add_s8_get_buffer_size(void)
{
    return DQA_ADD_S8_TABLE_VALUES * sizeof(int32_t);
}
void dqa_add_s8(const dqa_add_s8_params_t *p, const int8_t *input1, const int8_t *input2, int8_t *output,
                int32_t *tables);
void dqa_add_s8_rows(const dqa_add_s8_params_t *p, const dqa_rows_s8_t *input1, const dqa_rows_s8_t *input2,
                     const dqa_rows_s8_t *output, uint32_t first_row, uint32_t end_row, int32_t *tables);
void dqa_avgpool_s8(const dqa_pool_s8_params_t *p, const int8_t *input, int8_t *output);
/* sums: scratch of `channels` int32 kept from the first input row's call to the last's. */
void dqa_avgpool_s8_global_rows(const dqa_pool_s8_params_t *p, const dqa_rows_s8_t *input, uint32_t first_row,
                                uint32_t end_row, int32_t *sums, int8_t *output);
void dqa_maxpool_s8(const dqa_pool_s8_params_t *p, const int8_t *input, int8_t *output);
void dqa_mean_s8(const dqa_mean_s8_params_t *p, const int8_t *input, int8_t *output);
void dqa_softmax_s8(const dqa_softmax_s8_params_t *p, const int8_t *input, int8_t *output);
void dqa_pad_s8(const dqa_pad_s8_params_t *p, const int8_t *input, int8_t *output);
/* CONCATENATION: `count` inputs, each copied `inner[i]` bytes at a time, `outer` times. */
void dqa_concat_s8(const int8_t *const *inputs, const uint32_t *inner, uint16_t count, uint32_t outer,
                   int8_t *output);

#ifdef __cplusplus
}
#endif

#endif /* DQA_RUNTIME_S8_H */
