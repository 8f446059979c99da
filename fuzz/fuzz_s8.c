/*
 * libFuzzer target: the TFLite-exact int8 kernels (dqa_runtime_s8.h) on any activation bytes, weights
 * and biases. Byte 0 picks the kernel; the next bytes its geometry, made consistent as the code
 * generator makes it (TFLite SAME / VALID padding, output shapes from input shapes), and its
 * multipliers and shifts in the ranges TFLite's quantizer produces; every array is malloc'ed at
 * exactly the size the kernel's contract gives it, so AddressSanitizer reports an access outside,
 * and UndefinedBehaviorSanitizer any overflow or bad shift on these bytes.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dqa_runtime_s8.h"

typedef struct {
    const uint8_t *data;
    size_t left;
} source_t;

static uint8_t next_byte(source_t *s)
{
    if (s->left == 0) {
        return 0x5Au;
    }
    s->left--;
    return *s->data++;
}

static uint32_t next_word(source_t *s)
{
    uint32_t w = next_byte(s);
    w |= (uint32_t)next_byte(s) << 8;
    w |= (uint32_t)next_byte(s) << 16;
    return w | (uint32_t)next_byte(s) << 24;
}

/* 1..limit */
static uint16_t next_dim(source_t *s, uint32_t limit)
{
    return (uint16_t)(1u + next_byte(s) % limit);
}

/* A buffer of exactly `bytes` bytes (one for none, so that a pointer exists). */
static void *fresh(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1u);
    if (p == NULL) {
        abort();
    }
    return p;
}

/* A buffer of exactly `bytes` bytes filled from the input. */
static void *next_array(source_t *s, size_t bytes)
{
    uint8_t *p = fresh(bytes);
    size_t i;
    for (i = 0; i < bytes; i++) {
        p[i] = next_byte(s);
    }
    return p;
}

/* TFLite's quantized multiplier (Q31 in [2^30, 2^31)) and its shift, here in [-31, 7]. */
static void next_multiplier(source_t *s, int32_t *multiplier, int32_t *shift)
{
    *multiplier = (int32_t)((1u << 30) | (next_word(s) & ((1u << 30) - 1u)));
    *shift = (int32_t)(next_byte(s) % 39u) - 31;
}

/* Per channel multipliers, and their shifts as a convolution stores them (int8_t). */
static int32_t *next_multipliers(source_t *s, uint32_t count, int8_t **shifts)
{
    int32_t *m = fresh(sizeof(int32_t) * count);
    uint32_t i;
    *shifts = fresh(count);
    for (i = 0; i < count; i++) {
        int32_t shift;
        next_multiplier(s, &m[i], &shift);
        (*shifts)[i] = (int8_t)shift;
    }
    return m;
}

/* Output size and leading padding of TFLite's SAME (same = 1) or VALID padding; 0 when VALID
 * leaves no output. */
static uint16_t out_size(uint16_t in, uint16_t kernel, uint16_t stride, uint16_t dilation, int same,
                         uint16_t *pad)
{
    uint32_t effective = (uint32_t)(kernel - 1u) * dilation + 1u, out, total;
    if (same) {
        out = (in + stride - 1u) / stride;
        total = (out - 1u) * stride + effective;
        *pad = (uint16_t)(total > in ? (total - in) / 2u : 0u);
        return (uint16_t)out;
    }
    *pad = 0;
    return (uint16_t)(in >= effective ? (in - effective) / stride + 1u : 0u);
}

static void activation_range(source_t *s, int32_t *lo, int32_t *hi)
{
    int32_t a = (int8_t)next_byte(s), b = (int8_t)next_byte(s);
    *lo = a < b ? a : b;
    *hi = a < b ? b : a;
}

/* A convolution's quantization and constant operands, read in this order: offsets, activation range,
 * `weight_bytes` of weights, int32 biases, multipliers and shifts. */
static void next_conv_operands(source_t *s, dqa_conv_s8_params_t *p, size_t weight_bytes, int8_t **shift)
{
    p->input_offset = -(int32_t)(int8_t)next_byte(s);
    p->output_offset = (int8_t)next_byte(s);
    activation_range(s, &p->act_min, &p->act_max);
    if (next_byte(s) & 1u) { /* the usual top, which the folded epilogue needs */
        p->act_max = 127;
    }
    p->weights = next_array(s, weight_bytes);
    p->bias = next_array(s, sizeof(int32_t) * p->out_c);
    p->multiplier = next_multipliers(s, p->out_c, shift);
    p->shift = *shift;
    p->folded_epilogue = p->act_max == 127; /* as the code generator sets it */
    for (uint32_t c = 0; c < p->out_c; c++) {
        p->folded_epilogue &= (uint8_t)((*shift)[c] <= DQA_FOLDED_MAX_SHIFT && (*shift)[c] >= DQA_FOLDED_MIN_SHIFT);
    }
}

static void free_conv_operands(dqa_conv_s8_params_t *p, int8_t *shift)
{
    free((void *)p->weights);
    free((void *)p->bias);
    free((void *)p->multiplier);
    free(shift);
}

/* The *_rows kernels over rings (docs/spec_tflite.md 5.1): output row by output row, the input rows each
 * needs loaded into a ring of `in_slots` (at least the window's rows), the output into a ring of
 * `out_slots`, each row copied out at once; the result must be the whole-tensor call's, `expected`. */
static void check_conv_rows(source_t *s, const dqa_conv_s8_params_t *p, int depthwise, const int8_t *input,
                            const int8_t *expected, int16_t *column)
{
    const uint32_t in_row = (uint32_t)p->in_w * p->in_c, out_row = (uint32_t)p->out_w * p->out_c;
    const uint32_t window = (uint32_t)(p->kernel_h - 1u) * p->dilation_h + 1u;
    const uint32_t span = window < p->in_h ? window : p->in_h;
    dqa_rows_s8_t in, out;
    int8_t *window_rows, *got;
    uint32_t oy, r;
    in.slots = (uint16_t)(span + next_byte(s) % (p->in_h - span + 1u));
    in.row_bytes = in_row;
    in.data = fresh((size_t)in.slots * in_row);
    out.slots = next_dim(s, p->out_h ? p->out_h : 1u);
    out.row_bytes = out_row;
    out.data = fresh((size_t)out.slots * out_row);
    window_rows = fresh(dqa_depthwise_conv2d_s8_rows_get_buffer_size(p));
    got = fresh((size_t)p->out_h * out_row);
    for (oy = 0; oy < p->out_h; oy++) {
        const int32_t top = (int32_t)(oy * p->stride_h) - p->pad_top;
        for (r = 0; r < window; r++) {
            const int32_t iy = top + (int32_t)r;
            if (iy >= 0 && iy < p->in_h) {
                memcpy(dqa_row_s8(&in, (uint32_t)iy), input + (size_t)iy * in_row, in_row);
            }
        }
        if (depthwise) {
            dqa_depthwise_conv2d_s8_rows(p, &in, &out, oy, oy + 1u, window_rows);
        } else {
            dqa_conv2d_s8_rows(p, &in, &out, oy, oy + 1u, column);
        }
        memcpy(got + (size_t)oy * out_row, dqa_row_s8(&out, oy), out_row);
    }
    if (memcmp(got, expected, (size_t)p->out_h * out_row) != 0) {
        abort(); /* a ring changed a result */
    }
    free(got);
    free(window_rows);
    free(out.data);
    free(in.data);
}

/* CONV_2D on weight tiles; with one input channel per group, DEPTHWISE_CONV_2D (OHWI weights); then the
 * same over rings (check_conv_rows). */
static void fuzz_conv(source_t *s)
{
    dqa_conv_s8_params_t p;
    int8_t *shift;
    uint16_t groups = next_dim(s, 4);
    int same = next_byte(s) & 1;
    int depthwise;
    size_t weight_bytes;
    int8_t *input, *output;
    int16_t *column;
    memset(&p, 0, sizeof p);
    p.in_h = next_dim(s, 12);
    p.in_w = next_dim(s, 12);
    p.in_c_per_group = next_dim(s, 8);
    p.out_c_per_group = next_dim(s, 8);
    p.in_c = (uint16_t)(groups * p.in_c_per_group);
    p.out_c = (uint16_t)(groups * p.out_c_per_group);
    p.kernel_h = next_dim(s, 5);
    p.kernel_w = next_dim(s, 5);
    p.stride_h = next_dim(s, 3);
    p.stride_w = next_dim(s, 3);
    p.dilation_h = next_dim(s, 2);
    p.dilation_w = next_dim(s, 2);
    p.out_h = out_size(p.in_h, p.kernel_h, p.stride_h, p.dilation_h, same, &p.pad_top);
    p.out_w = out_size(p.in_w, p.kernel_w, p.stride_w, p.dilation_w, same, &p.pad_left);
    depthwise = p.in_c_per_group == 1;
    weight_bytes = (size_t)p.out_c * p.kernel_h * p.kernel_w;
    if (!depthwise) { /* per group, tiles of 4 rows, K padded to even (dqa_conv2d_weights_size()) */
        size_t k = (size_t)p.kernel_h * p.kernel_w * p.in_c_per_group;
        weight_bytes = (size_t)groups * ((p.out_c_per_group + 3u) / 4u) * ((k + 1u) / 2u) * 8u;
    }
    next_conv_operands(s, &p, weight_bytes, &shift);
    input = next_array(s, (size_t)p.in_h * p.in_w * p.in_c);
    output = fresh((size_t)p.out_h * p.out_w * p.out_c);
    column = fresh(dqa_conv2d_s8_get_buffer_size(&p));
    if (depthwise) {
        dqa_depthwise_conv2d_s8(&p, input, output);
    } else {
        dqa_conv2d_s8(&p, input, output, column);
    }
    check_conv_rows(s, &p, depthwise, input, output, column);
    free(column);
    free(input);
    free(output);
    free_conv_operands(&p, shift);
}

static void fuzz_fully_connected(source_t *s)
{
    dqa_fully_connected_s8_params_t p;
    int16_t *column;
    double *scale;
    int8_t *input, *output;
    uint32_t o;
    memset(&p, 0, sizeof p);
    p.rows = next_dim(s, 4);
    p.in_depth = next_dim(s, 64);
    p.out_depth = next_dim(s, 32);
    p.output_offset = (int8_t)next_byte(s);
    activation_range(s, &p.act_min, &p.act_max);
    scale = fresh(sizeof(double) * p.out_depth);
    for (o = 0; o < p.out_depth; o++) { /* a double's bits: scales in [2^-50, 2^0) */
        const uint64_t fraction = ((uint64_t)next_word(s) << 20) & (((uint64_t)1 << 52) - 1u);
        const uint64_t biased_exponent = 1022u - next_byte(s) % 50u;
        const uint64_t bits = (biased_exponent << 52) | fraction;
        memcpy(&scale[o], &bits, sizeof bits);
    }
    p.scale = scale;
    /* tiles of 4 rows, the depth padded to even (a 1x1 conv's, dqa_conv2d_weights_size()) */
    p.weights = next_array(s, ((size_t)p.out_depth + 3u) / 4u * ((p.in_depth + 1u) / 2u) * 8u);
    p.folded_bias = next_array(s, sizeof(int32_t) * p.out_depth);
    input = next_array(s, (size_t)p.rows * p.in_depth);
    output = fresh((size_t)p.rows * p.out_depth);
    column = fresh(dqa_fully_connected_s8_get_buffer_size(&p));
    dqa_fully_connected_s8(&p, input, output, column);
    free(column);
    free(input);
    free(output);
    free((void *)p.weights);
    free((void *)p.folded_bias);
    free(scale);
}

static void fuzz_pool(source_t *s, int is_max)
{
    dqa_pool_s8_params_t p;
    int same = next_byte(s) & 1;
    int8_t *input, *output;
    memset(&p, 0, sizeof p);
    p.in_h = next_dim(s, 12);
    p.in_w = next_dim(s, 12);
    p.channels = next_dim(s, 8);
    p.filter_h = next_dim(s, 5);
    p.filter_w = next_dim(s, 5);
    p.stride_h = next_dim(s, 3);
    p.stride_w = next_dim(s, 3);
    p.out_h = out_size(p.in_h, p.filter_h, p.stride_h, 1, same, &p.pad_top);
    p.out_w = out_size(p.in_w, p.filter_w, p.stride_w, 1, same, &p.pad_left);
    activation_range(s, &p.act_min, &p.act_max);
    input = next_array(s, (size_t)p.in_h * p.in_w * p.channels);
    output = fresh((size_t)p.out_h * p.out_w * p.channels);
    (is_max ? dqa_maxpool_s8 : dqa_avgpool_s8)(&p, input, output);
    free(input);
    free(output);
}

/* An output shape and operand 2's strides, broadcast NumPy-style along the axes `next_byte` picks
 * (bit k: operand 2 has size 1 along axis k = h, w, c); operand 1 has the output's shape. Returns
 * operand 2's bytes. */
static size_t next_broadcast(source_t *s, dqa_broadcast_s8_t *b)
{
    uint8_t broadcast = next_byte(s);
    uint32_t c2, w2;
    b->out_h = next_dim(s, 8);
    b->out_w = next_dim(s, 8);
    b->out_c = next_dim(s, 16);
    b->input1_stride_c = 1;
    b->input1_stride_w = b->out_c;
    b->input1_stride_h = (uint32_t)b->out_w * b->out_c;
    c2 = (broadcast & 4u) ? 1u : b->out_c;
    w2 = (broadcast & 2u) ? 1u : b->out_w;
    b->input2_stride_c = (broadcast & 4u) ? 0u : 1u;
    b->input2_stride_w = (broadcast & 2u) ? 0u : c2;
    b->input2_stride_h = (broadcast & 1u) ? 0u : w2 * c2;
    return (size_t)((broadcast & 1u) ? 1u : b->out_h) * w2 * c2;
}

static void fuzz_add(source_t *s)
{
    dqa_add_s8_params_t p;
    const dqa_broadcast_s8_t *b = &p.shape;
    int32_t *tables;
    int8_t *in1, *in2, *output;
    memset(&p, 0, sizeof p);
    in2 = next_array(s, next_broadcast(s, &p.shape));
    p.left_shift = 20; /* what TFLite's int8 ADD uses */
    p.input1_offset = -(int32_t)(int8_t)next_byte(s);
    p.input2_offset = -(int32_t)(int8_t)next_byte(s);
    p.output_offset = (int8_t)next_byte(s);
    next_multiplier(s, &p.input1_multiplier, &p.input1_shift);
    next_multiplier(s, &p.input2_multiplier, &p.input2_shift);
    next_multiplier(s, &p.output_multiplier, &p.output_shift);
    p.input1_shift = p.input1_shift > 0 ? -p.input1_shift : p.input1_shift; /* <= 0, as checked offline */
    p.input2_shift = p.input2_shift > 0 ? -p.input2_shift : p.input2_shift;
    p.output_shift = p.output_shift <= -1 ? p.output_shift : -1 - p.output_shift; /* <= -1, as checked offline */
    if (next_byte(s) & 1u) { /* SUB: the second multiplier negated (spec 3.10) */
        p.input2_multiplier = -p.input2_multiplier;
    }
    activation_range(s, &p.act_min, &p.act_max);
    in1 = next_array(s, (size_t)b->out_h * b->out_w * b->out_c);
    output = fresh((size_t)b->out_h * b->out_w * b->out_c);
    tables = fresh(dqa_add_s8_get_buffer_size());
    dqa_add_s8(&p, in1, in2, output, tables);
    free(tables);
    free(in1);
    free(in2);
    free(output);
}

static void fuzz_mul(source_t *s)
{
    dqa_mul_s8_params_t p;
    const dqa_broadcast_s8_t *b = &p.shape;
    int8_t *in1, *in2, *output;
    memset(&p, 0, sizeof p);
    in2 = next_array(s, next_broadcast(s, &p.shape));
    p.input1_offset = -(int32_t)(int8_t)next_byte(s);
    p.input2_offset = -(int32_t)(int8_t)next_byte(s);
    p.output_offset = (int8_t)next_byte(s);
    next_multiplier(s, &p.output_multiplier, &p.output_shift);
    activation_range(s, &p.act_min, &p.act_max);
    in1 = next_array(s, (size_t)b->out_h * b->out_w * b->out_c);
    output = fresh((size_t)b->out_h * b->out_w * b->out_c);
    dqa_mul_s8(&p, in1, in2, output);
    free(in1);
    free(in2);
    free(output);
}

static void fuzz_softmax(source_t *s)
{
    dqa_softmax_s8_params_t p;
    int8_t *input, *output;
    size_t n;
    memset(&p, 0, sizeof p);
    p.rows = next_dim(s, 4);
    p.depth = next_dim(s, 64);
    p.input_multiplier = (int32_t)((1u << 30) | (next_word(s) & ((1u << 30) - 1u)));
    p.input_left_shift = (int32_t)(next_byte(s) % 24u); /* beta * input scale * 2^(31 - 5), normalized */
    p.diff_min = -(int32_t)(next_word(s) % 100000u);
    n = (size_t)p.rows * p.depth;
    input = next_array(s, n);
    output = fresh(n);
    dqa_softmax_s8(&p, input, output);
    free(input);
    free(output);
}

static void fuzz_mean(source_t *s)
{
    dqa_mean_s8_params_t p;
    int8_t *input, *output;
    memset(&p, 0, sizeof p);
    p.count = next_dim(s, 255);
    p.channels = next_dim(s, 32);
    p.input_zero_point = (int8_t)next_byte(s);
    p.output_zero_point = (int8_t)next_byte(s);
    next_multiplier(s, &p.multiplier, &p.shift);
    input = next_array(s, (size_t)p.count * p.channels);
    output = fresh(p.channels);
    dqa_mean_s8(&p, input, output);
    free(input);
    free(output);
}

static void fuzz_pad_and_lookup(source_t *s)
{
    dqa_pad_s8_params_t p;
    int8_t *input, *output, *table;
    size_t in_bytes, out_bytes;
    memset(&p, 0, sizeof p);
    p.in_h = next_dim(s, 8);
    p.in_w = next_dim(s, 8);
    p.channels = next_dim(s, 8);
    p.pad_top = (uint16_t)(next_byte(s) % 4u);
    p.pad_bottom = (uint16_t)(next_byte(s) % 4u);
    p.pad_left = (uint16_t)(next_byte(s) % 4u);
    p.pad_right = (uint16_t)(next_byte(s) % 4u);
    p.pad_value = (int8_t)next_byte(s);
    in_bytes = (size_t)p.in_h * p.in_w * p.channels;
    out_bytes = (size_t)(p.in_h + p.pad_top + p.pad_bottom) * (p.in_w + p.pad_left + p.pad_right) * p.channels;
    table = next_array(s, 256);
    input = next_array(s, in_bytes);
    output = fresh(out_bytes);
    dqa_pad_s8(&p, input, output);
    dqa_lookup_s8(table, (uint32_t)out_bytes, output, output); /* in place, as LOGISTIC / TANH may run */
    free(table);
    free(input);
    free(output);
}

static void fuzz_transpose_conv(source_t *s)
{
    dqa_conv_s8_params_t p;
    int8_t *shift;
    int8_t *input, *output;
    memset(&p, 0, sizeof p);
    p.in_h = next_dim(s, 8);
    p.in_w = next_dim(s, 8);
    p.in_c = p.in_c_per_group = next_dim(s, 8);
    p.out_c = p.out_c_per_group = next_dim(s, 8);
    p.kernel_h = next_dim(s, 5);
    p.kernel_w = next_dim(s, 5);
    p.stride_h = next_dim(s, 3);
    p.stride_w = next_dim(s, 3);
    p.dilation_h = p.dilation_w = 1;
    /* TFLite's output shape is an operand of the op: any size, with the leading padding of SAME
     * (half of what the taps reach beyond it) or VALID (none) */
    p.out_h = next_dim(s, 24);
    p.out_w = next_dim(s, 24);
    if (next_byte(s) & 1u) {
        uint32_t reach_h = (uint32_t)(p.in_h - 1u) * p.stride_h + p.kernel_h;
        uint32_t reach_w = (uint32_t)(p.in_w - 1u) * p.stride_w + p.kernel_w;
        p.pad_top = (uint16_t)(reach_h > p.out_h ? (reach_h - p.out_h) / 2u : 0u);
        p.pad_left = (uint16_t)(reach_w > p.out_w ? (reach_w - p.out_w) / 2u : 0u);
    }
    next_conv_operands(s, &p, (size_t)p.out_c * p.kernel_h * p.kernel_w * p.in_c, &shift);
    input = next_array(s, (size_t)p.in_h * p.in_w * p.in_c);
    output = fresh((size_t)p.out_h * p.out_w * p.out_c);
    dqa_transpose_conv_s8(&p, input, output);
    free(input);
    free(output);
    free_conv_operands(&p, shift);
}

static void fuzz_leaky_relu(source_t *s)
{
    dqa_leaky_relu_s8_params_t p;
    int8_t *input, *output;
    memset(&p, 0, sizeof p);
    p.size = next_dim(s, 255);
    p.input_zero_point = (int8_t)next_byte(s);
    p.output_zero_point = (int8_t)next_byte(s);
    next_multiplier(s, &p.multiplier, &p.shift);
    next_multiplier(s, &p.alpha_multiplier, &p.alpha_shift);
    activation_range(s, &p.act_min, &p.act_max);
    input = next_array(s, p.size);
    output = fresh(p.size);
    dqa_leaky_relu_s8(&p, input, output);
    free(input);
    free(output);
}

static void fuzz_hard_swish(source_t *s)
{
    dqa_hard_swish_s8_params_t p;
    int8_t *input, *output;
    memset(&p, 0, sizeof p);
    p.size = next_dim(s, 255);
    p.input_zero_point = (int8_t)next_byte(s);
    p.output_zero_point = (int8_t)next_byte(s);
    p.output_multiplier = (int16_t)next_word(s); /* Q15, as DownScaleInt32ToInt16Multiplier gives */
    p.reluish_multiplier = (int16_t)next_word(s);
    /* the exponents the export admits: e_o in [-31, 0], e_r >= -31 (spec_tflite 3.14) */
    p.output_exponent = (int16_t)-(int16_t)(next_byte(s) % 32u);
    p.reluish_exponent = (int16_t)((int32_t)next_byte(s) - 31);
    input = next_array(s, p.size);
    output = fresh(p.size);
    dqa_hard_swish_s8(&p, input, output);
    free(input);
    free(output);
}

/* count indices, each below `limit` (the code generator's index maps stay inside the input) */
static int16_t *next_indices(source_t *s, uint32_t count, uint16_t limit)
{
    int16_t *index = fresh(sizeof(int16_t) * count);
    uint32_t i;
    for (i = 0; i < count; i++) {
        index[i] = (int16_t)(next_byte(s) % limit);
    }
    return index;
}

static void fuzz_resize_nearest(source_t *s)
{
    dqa_resize_nearest_s8_params_t p;
    uint16_t in_h = next_dim(s, 8);
    int8_t *input, *output;
    memset(&p, 0, sizeof p);
    p.in_w = next_dim(s, 8);
    p.channels = next_dim(s, 8);
    p.out_h = next_dim(s, 24);
    p.out_w = next_dim(s, 24);
    p.y_index = next_indices(s, p.out_h, in_h);
    p.x_index = next_indices(s, p.out_w, p.in_w);
    input = next_array(s, (size_t)in_h * p.in_w * p.channels);
    output = fresh((size_t)p.out_h * p.out_w * p.channels);
    dqa_resize_nearest_s8(&p, input, output);
    free(input);
    free(output);
    free((void *)p.y_index);
    free((void *)p.x_index);
}

/* The Q10 input step per output step, as reference.tflite.bilinear_scale_10 derives it. */
static int32_t bilinear_scale_10(uint16_t out, uint16_t in, int align_corners)
{
    if (align_corners && out > 1u) {
        return (int32_t)((1024u * (in - 1u) + (out - 1u) / 2u) / (out - 1u));
    }
    return (int32_t)((1024u * in + out / 2u) / out);
}

/* Whether the last output position's lower tap lies inside the input (else the export refuses). */
static int inside(uint16_t out, uint16_t in, int32_t scale_10, int half_pixel_centers)
{
    int32_t last = (int32_t)(out - 1u) * scale_10 + (half_pixel_centers ? scale_10 / 2 - 512 : 0);
    return last / 1024 < (int32_t)in;
}

static void fuzz_resize_bilinear(source_t *s)
{
    dqa_resize_bilinear_s8_params_t p;
    uint8_t mode = next_byte(s); /* bit 0: align corners, bit 1: half-pixel centres */
    int8_t *input, *output;
    memset(&p, 0, sizeof p);
    p.in_h = next_dim(s, 8);
    p.in_w = next_dim(s, 8);
    p.channels = next_dim(s, 8);
    p.out_h = next_dim(s, 96);
    p.out_w = next_dim(s, 96);
    p.half_pixel_centers = (uint8_t)((mode >> 1) & 1u);
    p.scale_10_h = bilinear_scale_10(p.out_h, p.in_h, mode & 1u);
    p.scale_10_w = bilinear_scale_10(p.out_w, p.in_w, mode & 1u);
    if (!inside(p.out_h, p.in_h, p.scale_10_h, p.half_pixel_centers) ||
        !inside(p.out_w, p.in_w, p.scale_10_w, p.half_pixel_centers)) {
        return; /* refused at export (spec_tflite 3.13) */
    }
    input = next_array(s, (size_t)p.in_h * p.in_w * p.channels);
    output = fresh((size_t)p.out_h * p.out_w * p.channels);
    dqa_resize_bilinear_s8(&p, input, output);
    free(input);
    free(output);
}

static void fuzz_depth_to_space(source_t *s)
{
    dqa_depth_to_space_s8_params_t p;
    uint16_t out_c = next_dim(s, 8);
    int8_t *input, *output;
    size_t bytes;
    memset(&p, 0, sizeof p);
    p.in_h = next_dim(s, 8);
    p.in_w = next_dim(s, 8);
    p.block = next_dim(s, 4);
    p.in_c = (uint16_t)(out_c * p.block * p.block);
    bytes = (size_t)p.in_h * p.in_w * p.in_c;
    input = next_array(s, bytes);
    output = fresh(bytes);
    dqa_depth_to_space_s8(&p, input, output);
    free(input);
    free(output);
}

#define MAX_CONCAT_INPUTS 4

static void fuzz_concat(source_t *s)
{
    const int8_t *inputs[MAX_CONCAT_INPUTS];
    uint32_t inner[MAX_CONCAT_INPUTS], outer = next_dim(s, 8), total = 0;
    uint16_t count = next_dim(s, MAX_CONCAT_INPUTS), i;
    int8_t *output;
    for (i = 0; i < count; i++) {
        inner[i] = next_dim(s, 16);
        inputs[i] = next_array(s, (size_t)outer * inner[i]);
        total += inner[i];
    }
    output = fresh((size_t)outer * total);
    dqa_concat_s8(inputs, inner, count, outer, output);
    for (i = 0; i < count; i++) {
        free((void *)inputs[i]);
    }
    free(output);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    source_t s = {data, size};
    switch (next_byte(&s) % 16u) {
    case 0: fuzz_conv(&s); break;
    case 1: fuzz_fully_connected(&s); break;
    case 2: fuzz_pool(&s, 0); break;
    case 3: fuzz_pool(&s, 1); break;
    case 4: fuzz_add(&s); break;
    case 5: fuzz_softmax(&s); break;
    case 6: fuzz_mean(&s); break;
    case 7: fuzz_pad_and_lookup(&s); break;
    case 8: fuzz_transpose_conv(&s); break;
    case 9: fuzz_mul(&s); break;
    case 10: fuzz_leaky_relu(&s); break;
    case 11: fuzz_hard_swish(&s); break;
    case 12: fuzz_resize_nearest(&s); break;
    case 13: fuzz_resize_bilinear(&s); break;
    case 14: fuzz_depth_to_space(&s); break;
    default: fuzz_concat(&s); break;
    }
    return 0;
}
