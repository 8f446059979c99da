/*
 * dqa-mcu C runtime: the integer semantics of docs/spec.md, in C99.
 *
 * Tensors are stored packed (an n-bit code plane plus, for DQA, a Huffman
 * coded error stream). Kernels never unpack a whole tensor: they read it
 * pixel by pixel in index order through a dqa_reader_t (keeping only the
 * rows a window needs in a scratch line buffer) and write their output pixel
 * by pixel through a dqa_writer_t. Every kernel that needs scratch memory
 * has a *_get_buffer_size() sibling; the generated model sizes one shared
 * scratch area with them.
 */
#ifndef DQA_RUNTIME_H
#define DQA_RUNTIME_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define DQA_HUFFMAN_TABLE_BITS 8 /* spec 2.2: 256-entry decode tables */

/* What the application can read after each inference (spec 2.3). */
typedef struct {
    uint32_t overflowed_tensors; /* error streams closed early by the capacity limit */
} dqa_status_t;

/* Constant description of a stored tensor (lives in flash). */
typedef struct {
    uint16_t height, width, channels;
    uint8_t bits;        /* n: code width, 2..8, or 16 for the graph output */
    uint8_t extra_bits;  /* m: 0 = direct quantization */
    uint8_t is_signed;   /* codes are two's complement */
    const uint8_t *important;     /* per channel 1/0; NULL when no channel is */
    const uint8_t *huffman_table; /* 256 entries (length << 4 | symbol); NULL without errors */
    uint32_t stream_capacity_bits;
    const int8_t *lut;            /* input stage only: channels x 256, pixel -> value */
    /* Encoder side of the Huffman code (2^m entries each, indexed by error symbol):
     * the canonical code value (spec 2.2, written most significant bit first) and its
     * length. NULL: the writer derives them from huffman_table (slower). */
    const uint8_t *huffman_codes;
    const uint8_t *huffman_lengths;
} dqa_tensor_info_t;

/* A tensor's storage in the activation arena (lives in RAM). */
typedef struct {
    const dqa_tensor_info_t *info;
    uint8_t *plane;   /* ceil(H*W*C*n / 8) bytes */
    uint8_t *stream;  /* (capacity + 7)/8 + 1 bytes, NULL without errors */
    uint32_t n_coded; /* error symbols the producer managed to code */
    /* Row-streamed (spec 2.4) when ring_rows > 0: image row h lives in slot h % ring_rows, slot_bytes
     * apart from plane on (its codes) and from stream on (its error stream of row_capacity_bits, if
     * stream is not NULL), and then the slot's last 4 bytes hold the row's n_coded. */
    uint16_t ring_rows;
    uint32_t slot_bytes;
    uint32_t row_capacity_bits;
} dqa_tensor_t;

/* Sequential reader: yields fine-domain values (spec section 1), pixel by pixel. It works on one
 * band at a time: the whole tensor, or one row of a row-streamed tensor (entered when reached). */
typedef struct {
    const dqa_tensor_t *tensor;
    uint32_t element;    /* next element index (h*W + w)*C + c */
    uint32_t symbol;     /* next error symbol index of the band */
    uint32_t bit;        /* next bit of the band's error stream */
    uint32_t band_start; /* the band's first element; band_end: one past its last */
    uint32_t band_end;
    const uint8_t *plane; /* the band's code plane and error stream */
    const uint8_t *stream;
    uint32_t stream_bytes; /* bytes the band's producer can have written */
    uint32_t n_coded;
} dqa_reader_t;

void dqa_reader_init(dqa_reader_t *reader, const dqa_tensor_t *tensor);
/* Reads the next pixel's `channels` values into v. */
void dqa_read_pixel(dqa_reader_t *reader, int16_t *v);
/* Skips the next `pixels` pixels (error symbols of the band still have to be decoded; the rows of a
 * row-streamed tensor skipped whole are not touched). */
void dqa_skip_pixels(dqa_reader_t *reader, uint32_t pixels);

#define DQA_MAX_EXTRA_BITS 4 /* m: at most 2^4 error symbols */

/* Sequential writer: takes storage-domain values u, pixel by pixel, band by band as the reader. */
typedef struct {
    dqa_tensor_t *tensor;
    uint32_t element;
    uint32_t symbol;
    uint32_t bit;
    uint32_t band_start, band_end;
    uint8_t *plane; /* the band's code plane and error stream */
    uint8_t *stream;
    uint32_t capacity_bits;
    uint8_t closed;     /* the band's error stream overflowed (spec 2.3, 2.4) */
    uint8_t overflowed; /* some band of the tensor did */
    uint8_t stream_codes[1 << DQA_MAX_EXTRA_BITS]; /* huffman_codes bit-reversed into stream order */
} dqa_writer_t;

void dqa_writer_init(dqa_writer_t *writer, dqa_tensor_t *tensor);
void dqa_write_pixel(dqa_writer_t *writer, const int32_t *u);
/* Counts an overflow of the tensor in status (each band's n_coded is recorded as it fills). */
void dqa_writer_finish(dqa_writer_t *writer, dqa_status_t *status);

/*
 * Sliding window over an input tensor read in index order (dqa_window.c): a ring of the most recent
 * `ring_pixels` pixels (int16, `channels` values each). Pixel q lives in slot q % ring_pixels while it
 * is among the last ring_pixels pixels read.
 */
typedef struct {
    dqa_reader_t reader;
    int16_t *ring;
    uint32_t ring_pixels;
    uint32_t next; /* index of the next input pixel (read or skip) */
    uint16_t channels;
} dqa_window_t;

/* Per-output-channel requantization (spec 5.2, 5.4, 5.5). */
typedef struct {
    const int32_t *multiplier;
    const int32_t *residual_multiplier; /* NULL without a second input */
    const uint8_t *shift;
    const int32_t *out_min;
    const int32_t *out_max;
    /* leaky_relu (spec 4): the multipliers of a negative sum; NULL otherwise */
    const int32_t *negative_multiplier;
    const int32_t *negative_residual_multiplier;
} dqa_requant_t;

/* conv2d (generic, 1x1, depthwise, grouped) and linear (1x1 on a 1x1 input). */
typedef struct {
    uint16_t kernel_h, kernel_w;
    uint16_t stride_h, stride_w;
    uint16_t pad_top, pad_left; /* bottom/right padding follow from the shapes */
    uint16_t dilation_h, dilation_w;
    uint16_t groups;
    const int8_t *weights; /* depthwise: OHWI; otherwise in tiles, see dqa_conv2d_weights_size() */
    const int32_t *bias;
    dqa_requant_t requant;
    uint16_t residual_stride;         /* fused residual input, spec 5.2 */
    uint16_t residual_channel_offset;
    uint8_t one_pixel; /* 1: output pixels one at a time, never in pairs: slower, but half the work memory
                        * (dqa_conv2d_get_work_size(); the planner's choice where that lowers the arena) */
} dqa_conv_params_t;

/* Bytes of a conv's weights as dqa_conv2d reads them. A depthwise conv (one input and one output
 * channel per group) keeps OHWI. Any other: per group, tiles of 4 output channels (the last one
 * padded with zero rows); per tile, the K = kernel_h * kernel_w * (in_channels / groups) weights of
 * each row (OHWI order) in pairs (k, k+1), k even, as the 8 bytes w(0,k) w(1,k) w(0,k+1) w(1,k+1)
 * w(2,k) w(3,k) w(2,k+1) w(3,k+1) (an odd K padded with a zero weight). The code generator writes
 * them so (dqa_mcu.codegen.dqa.tile_conv_weights); src/dqa_mac.h says why. */
size_t dqa_conv2d_weights_size(const dqa_conv_params_t *params, uint16_t in_channels, uint16_t out_channels);
/* 1 on cores with MVE (Cortex-M55): a tile's rows are contiguous instead, w(r, k) at byte
 * r * (tile bytes / 4) + k, for the vector loads; the generated model.c checks it. */
#if defined(__ARM_FEATURE_MVE) && (__ARM_FEATURE_MVE & 1)
#define DQA_CONV_TILE_ROWS 1
#else
#define DQA_CONV_TILE_ROWS 0
#endif
/* A conv's scratch is its window (the input rows its kernel still needs, kept between the calls of a
 * row-streamed layer) and its work (accumulators and columns, needed only within one call: the layers of
 * a segment share one). get_buffer_size = get_work_size + get_state_size, each a multiple of 4. */
size_t dqa_conv2d_get_buffer_size(const dqa_conv_params_t *params, const dqa_tensor_info_t *input,
                                  const dqa_tensor_info_t *residual, const dqa_tensor_info_t *output);
size_t dqa_conv2d_get_work_size(const dqa_conv_params_t *params, const dqa_tensor_info_t *input,
                                const dqa_tensor_info_t *residual, const dqa_tensor_info_t *output);
size_t dqa_conv2d_get_state_size(const dqa_conv_params_t *params, const dqa_tensor_info_t *input);
/* residual may be NULL. scratch: dqa_conv2d_get_buffer_size() bytes, 4-byte aligned. */
void dqa_conv2d(const dqa_conv_params_t *params, const dqa_tensor_t *input, const dqa_tensor_t *residual,
                dqa_tensor_t *output, void *scratch, dqa_status_t *status);

/* A layer of a row-streamed segment (spec 2.4) runs in pieces: *_start once, then *_rows(state, ...,
 * end, status) computes its output rows up to `end` (exclusive) in order, the last call finishing the
 * output; the scratch (a conv's window) must stay untouched in between. The whole-tensor call is start +
 * rows(height). */
typedef struct {
    dqa_window_t win;
    dqa_reader_t residual;
    dqa_writer_t writer;
    void *work;
    uint32_t residual_pos; /* residual pixels passed */
    uint16_t row;          /* output rows done */
    uint8_t has_residual;
} dqa_conv_state_t;

/* window: dqa_conv2d_get_state_size() bytes, untouched until the last rows call; work:
 * dqa_conv2d_get_work_size() bytes, free for other kernels between calls. Both 4-byte aligned. */
void dqa_conv2d_start(dqa_conv_state_t *state, const dqa_conv_params_t *params, const dqa_tensor_t *input,
                      const dqa_tensor_t *residual, dqa_tensor_t *output, void *window, void *work);
void dqa_conv2d_rows(dqa_conv_state_t *state, const dqa_conv_params_t *params, uint16_t end,
                     dqa_status_t *status);

typedef struct {
    uint16_t b_stride, b_channel_offset;
    dqa_requant_t requant;
} dqa_add_params_t;

size_t dqa_add_get_buffer_size(const dqa_tensor_info_t *a, const dqa_tensor_info_t *b,
                               const dqa_tensor_info_t *output);
void dqa_add(const dqa_add_params_t *params, const dqa_tensor_t *a, const dqa_tensor_t *b,
             dqa_tensor_t *output, void *scratch, dqa_status_t *status);

typedef struct {
    dqa_reader_t a, b;
    dqa_writer_t writer;
    void *scratch;
    uint32_t b_pos; /* b pixels passed */
    uint16_t row;   /* output rows done */
} dqa_add_state_t;

void dqa_add_start(dqa_add_state_t *state, const dqa_tensor_t *a, const dqa_tensor_t *b, dqa_tensor_t *output,
                   void *scratch);
void dqa_add_rows(dqa_add_state_t *state, const dqa_add_params_t *params, uint16_t end, dqa_status_t *status);

typedef struct {
    uint16_t kernel_h, kernel_w;
    uint16_t stride_h, stride_w;
    uint16_t pad_top, pad_left;
    dqa_requant_t requant; /* avgpool only (multiplier, shift, out_min, out_max) */
} dqa_pool_params_t;

/* Scratch: the state a row-streamed layer keeps between calls and the work needed only within one, as
 * a conv's (dqa_conv2d_get_buffer_size()). */
size_t dqa_pool_get_buffer_size(const dqa_pool_params_t *params, const dqa_tensor_info_t *input,
                                const dqa_tensor_info_t *output);
size_t dqa_pool_get_state_size(const dqa_pool_params_t *params, const dqa_tensor_info_t *input,
                               const dqa_tensor_info_t *output);
size_t dqa_pool_get_work_size(const dqa_tensor_info_t *input, const dqa_tensor_info_t *output);
/* global average pooling is avgpool with the kernel covering the input */
void dqa_avgpool(const dqa_pool_params_t *params, const dqa_tensor_t *input, dqa_tensor_t *output,
                 void *scratch, dqa_status_t *status);
void dqa_maxpool(const dqa_pool_params_t *params, const dqa_tensor_t *input, dqa_tensor_t *output,
                 void *scratch, dqa_status_t *status);

/* Pooling in pieces: `end` counts output rows, or, for a single output position (global pooling),
 * input rows taken so far (the output is written with the last). */
typedef struct {
    dqa_window_t win;
    dqa_writer_t writer;
    int32_t *acc;  /* a single output position's sums (kept), else one output pixel's (work) */
    uint16_t row; /* units done: output rows, or input rows for a single output position */
    uint8_t is_max;
} dqa_pool_state_t;

/* kept: dqa_pool_get_state_size() bytes, untouched until the last rows call; work: dqa_pool_get_work_size()
 * bytes, free for other kernels between calls. */
void dqa_pool_start(dqa_pool_state_t *state, const dqa_pool_params_t *params, const dqa_tensor_t *input,
                    dqa_tensor_t *output, void *kept, void *work, int is_max);
void dqa_pool_rows(dqa_pool_state_t *state, const dqa_pool_params_t *params, uint16_t end, dqa_status_t *status);

size_t dqa_concat_get_buffer_size(const dqa_tensor_info_t *a, const dqa_tensor_info_t *b,
                                  const dqa_tensor_info_t *output);
void dqa_concat(const dqa_tensor_t *a, const dqa_tensor_t *b, dqa_tensor_t *output, void *scratch,
                dqa_status_t *status);

/* concat in row pieces (a row pipeline, spec 2.4): a pixel of each input per output pixel. */
typedef struct {
    dqa_reader_t a, b;
    dqa_writer_t writer;
    void *scratch;
    uint16_t row; /* output rows done */
} dqa_concat_state_t;

void dqa_concat_start(dqa_concat_state_t *state, const dqa_tensor_t *a, const dqa_tensor_t *b, dqa_tensor_t *output,
                      void *scratch);
void dqa_concat_rows(dqa_concat_state_t *state, uint16_t end, dqa_status_t *status);

size_t dqa_upsample_nearest_get_buffer_size(const dqa_tensor_info_t *input, const dqa_tensor_info_t *output);
void dqa_upsample_nearest(uint16_t scale_h, uint16_t scale_w, const dqa_tensor_t *input, dqa_tensor_t *output,
                          void *scratch, dqa_status_t *status);

/* Nearest upsampling in output-row pieces (a row pipeline, spec 2.4): each input row read scale_h times. */
typedef struct {
    dqa_reader_t reader, row_start; /* row_start: the reader at the start of the current input row */
    dqa_writer_t writer;
    void *scratch;
    uint16_t scale_h, scale_w;
    uint16_t row; /* output rows done */
} dqa_upsample_nearest_state_t;

void dqa_upsample_nearest_start(dqa_upsample_nearest_state_t *state, uint16_t scale_h, uint16_t scale_w,
                                const dqa_tensor_t *input, dqa_tensor_t *output, void *scratch);
void dqa_upsample_nearest_rows(dqa_upsample_nearest_state_t *state, uint16_t end, dqa_status_t *status);

/* depth_to_space (PyTorch's pixel_shuffle, spec 5.6): (H, W, C*r*r) -> (H*r, W*r, C), output
 * (h*r + i, w*r + j, c) = input (h, w, c*r*r + i*r + j), u copied. Buffers one input row. */
size_t dqa_depth_to_space_get_buffer_size(const dqa_tensor_info_t *input, const dqa_tensor_info_t *output);
void dqa_depth_to_space(uint16_t block, const dqa_tensor_t *input, dqa_tensor_t *output, void *scratch,
                        dqa_status_t *status);

/* Bilinear upsampling by integer factors, align_corners=False (spec 5.6.1): (H, W, C) ->
 * (H*scale_h, W*scale_w, C), requantized like avgpool. Buffers two input rows. */
typedef struct {
    uint16_t scale_h, scale_w;
    dqa_requant_t requant; /* multiplier, shift, out_min, out_max (no residual) */
} dqa_upsample_params_t;

size_t dqa_upsample_bilinear_get_buffer_size(const dqa_upsample_params_t *params, const dqa_tensor_info_t *input,
                                             const dqa_tensor_info_t *output);
void dqa_upsample_bilinear(const dqa_upsample_params_t *params, const dqa_tensor_t *input, dqa_tensor_t *output,
                           void *scratch, dqa_status_t *status);

/* Element-wise multiply (spec 5.4.1, squeeze-excite): s has x's shape or is a (1, 1, C) vector
 * broadcast over x's pixels; u = clamp(rshift_round(v_x * v_s * M, T)). A vector s is read once. */
typedef struct {
    dqa_requant_t requant; /* multiplier, shift, out_min, out_max (no second multiplier) */
} dqa_mul_params_t;

size_t dqa_mul_get_buffer_size(const dqa_tensor_info_t *x, const dqa_tensor_info_t *s,
                               const dqa_tensor_info_t *output);
void dqa_mul(const dqa_mul_params_t *params, const dqa_tensor_t *x, const dqa_tensor_t *s, dqa_tensor_t *output,
             void *scratch, dqa_status_t *status);

/* Table activation (spec 5.4.2: sigmoid, hard-sigmoid, hard-swish, tanh, SiLU): per element the
 * input's fine value v to a common index k = clamp(rshift_round(v * A[c], S[c]), -reach, reach),
 * then u = requant(table[k + reach] * M[c]) into the output's channel c. Input and output have
 * the same shape. */
typedef struct {
    const int16_t *table;            /* the function at 2 * reach + 1 index steps, from -reach up */
    uint16_t reach;                  /* the index runs over [-reach, reach] */
    const int32_t *index_multiplier; /* A[c], per channel: fine value -> index */
    const uint8_t *index_shift;      /* S[c] */
    dqa_requant_t requant;           /* table entry -> output storage value */
} dqa_activation_params_t;

size_t dqa_activation_get_buffer_size(const dqa_tensor_info_t *input, const dqa_tensor_info_t *output);
void dqa_activation(const dqa_activation_params_t *params, const dqa_tensor_t *input, dqa_tensor_t *output,
                    void *scratch, dqa_status_t *status);

/* A table activation in row pieces (a row pipeline, spec 2.4): one input pixel per output pixel. */
typedef struct {
    dqa_reader_t reader;
    dqa_writer_t writer;
    void *scratch;
    uint16_t row; /* output rows done */
} dqa_activation_state_t;

void dqa_activation_start(dqa_activation_state_t *state, const dqa_tensor_t *input, dqa_tensor_t *output,
                          void *scratch);
void dqa_activation_rows(dqa_activation_state_t *state, const dqa_activation_params_t *params, uint16_t end,
                         dqa_status_t *status);

#ifdef __cplusplus
}
#endif

#endif /* DQA_RUNTIME_H */
