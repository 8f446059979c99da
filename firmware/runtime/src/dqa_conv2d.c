/*
 * conv2d (docs/spec.md 5.2, 5.3): generic stride, padding, dilation and
 * groups (depthwise included), optional fused residual input, and linear as
 * a 1x1 convolution over a (1, 1, C) input.
 *
 * Scratch (4-byte aligned), in this order:
 *   int32 acc[C_out]                      accumulators, then u in place
 *   int16 ring[R * C_in]                  input window ring, R = dqa__window_ring_pixels()
 *   int16 res[C_res]                      residual pixel (only with a residual)
 */
#include "dqa_internal.h"
#include "dqa_mac.h"

static uint32_t conv_ring_pixels(const dqa_conv_params_t *p, const dqa_tensor_info_t *input)
{
    return dqa__window_ring_pixels(input->height, input->width, p->kernel_h, p->kernel_w,
                                   p->dilation_h ? p->dilation_h : 1u, p->dilation_w ? p->dilation_w : 1u);
}

size_t dqa_conv2d_get_buffer_size(const dqa_conv_params_t *params, const dqa_tensor_info_t *input,
                                  const dqa_tensor_info_t *residual, const dqa_tensor_info_t *output)
{
    size_t size = (size_t)output->channels * sizeof(int32_t);
    size += (size_t)conv_ring_pixels(params, input) * input->channels * sizeof(int16_t);
    if (residual != NULL) {
        size += (size_t)residual->channels * sizeof(int16_t);
    }
    return DQA_ALIGN4(size);
}

/* The window's values come in runs (dqa_mac_run_t): one kernel row of taps when its input pixels follow
 * each other in the ring, else one tap; k is the offset into every output channel's OHWI row and len
 * counts values per group (taps * c_in_g). */
#define RUNS_PER_PASS 16u /* runs gathered before one pass over the output channels */

typedef struct {
    const int8_t *weights;
    uint32_t w_stride; /* weights per output channel: K = KH * KW * c_in_g */
    uint32_t c_in_g, c_out_g, groups;
} conv_shape_t;

/* Depthwise weights stay OHWI (channel-vectorized per tap); all others are in tiles (dqa_mac.h). */
static int is_depthwise(uint32_t c_in_g, uint32_t c_out_g)
{
    return c_in_g == 1u && c_out_g == 1u;
}

static uint32_t tiles_per_group(uint32_t c_out_g)
{
    return (c_out_g + DQA_MAC_ROWS - 1u) / DQA_MAC_ROWS;
}

size_t dqa_conv2d_weights_size(const dqa_conv_params_t *params, uint16_t in_channels, uint16_t out_channels)
{
    uint32_t groups = params->groups ? params->groups : 1u;
    uint32_t c_in_g = in_channels / groups, c_out_g = out_channels / groups;
    uint32_t k = (uint32_t)params->kernel_h * params->kernel_w * c_in_g;
    if (is_depthwise(c_in_g, c_out_g)) {
        return (size_t)out_channels * k;
    }
    return (size_t)groups * tiles_per_group(c_out_g) * dqa__tile_bytes(k);
}

/* acc[o] += the dot products of every run with output channel o's weights. */
static void accumulate(int32_t *acc, const conv_shape_t *k, const dqa_mac_run_t *runs, uint32_t n_runs)
{
    uint32_t g, o = 0, s;
    const int8_t *tile = k->weights;
    uint32_t tile_bytes = dqa__tile_bytes(k->w_stride);
    if (is_depthwise(k->c_in_g, k->c_out_g)) {
        uint32_t c_out = k->groups;
        for (s = 0; s < n_runs; s++) {
            const int8_t *w = k->weights + runs[s].k;
            for (o = 0; o < c_out; o++) {
                acc[o] += (int32_t)w[(size_t)o * k->w_stride] * runs[s].x[o];
            }
        }
        return;
    }
    for (g = 0; g < k->groups; g++) {
        uint32_t end = o + k->c_out_g;
        uint32_t x_offset = g * k->c_in_g;
        for (; o < end; o += DQA_MAC_ROWS, tile += tile_bytes) {
            uint32_t rows = end - o < DQA_MAC_ROWS ? end - o : DQA_MAC_ROWS, r;
            int32_t sums[DQA_MAC_ROWS] = {0};
            dqa__mac_tile_runs(sums, tile, tile_bytes, runs, n_runs, x_offset);
            for (r = 0; r < rows; r++) { /* the tile's zero rows past the group's end are dropped */
                acc[o + r] += sums[r];
            }
        }
        o = end;
    }
}

/* Requantization parameters of a conv without leaky_relu, hoisted out of its channel loop. */
typedef struct {
    const int32_t *restrict multiplier, *restrict residual_multiplier, *restrict bias;
    const uint8_t *restrict shift;
    const int32_t *restrict out_min, *restrict out_max;
} linear_requant_t;

/* Spec 5.2 for channel o with residual value r: (acc + B) * M formed as acc * M + B * M, the same
 * int64 value from two 32 x 32 -> 64 multiplies. */
static inline int32_t requant_channel(const linear_requant_t *q, uint32_t o, int32_t acc, int32_t r)
{
    int64_t t = (int64_t)acc * q->multiplier[o] + (int64_t)q->bias[o] * q->multiplier[o];
    if (r != 0) {
        t += (int64_t)r * q->residual_multiplier[o];
    }
    return dqa__requant(t, q->shift[o], q->out_min[o], q->out_max[o]);
}

/* Spec 5.2's epilogue, u[o] from acc[o] in place; `res`: the residual pixel (NULL without one), read
 * for output channels [offset, offset + c_res). */
static void requantize(int32_t *restrict acc, const dqa_conv_params_t *p, uint32_t c_out, const int16_t *res,
                       uint32_t c_res)
{
    const dqa_requant_t *rq = &p->requant;
    uint32_t offset = p->residual_channel_offset, res_end = 0, o;
    linear_requant_t q;
    if (res == NULL || rq->residual_multiplier == NULL) {
        offset = c_out; /* no channel has a residual */
    }
    res_end = offset + c_res < c_out ? offset + c_res : c_out;
    if (rq->negative_multiplier != NULL || p->bias == NULL) { /* leaky_relu: the sum decides the multiplier */
        for (o = 0; o < c_out; o++) {
            int32_t r = o >= offset && o < res_end ? res[o - offset] : 0;
            int64_t x = (int64_t)acc[o] + (p->bias != NULL ? p->bias[o] : 0);
            acc[o] = dqa__requant(dqa__sum(rq, o, x, r), rq->shift[o], rq->out_min[o], rq->out_max[o]);
        }
        return;
    }
    q.multiplier = rq->multiplier;
    q.residual_multiplier = rq->residual_multiplier;
    q.bias = p->bias;
    q.shift = rq->shift;
    q.out_min = rq->out_min;
    q.out_max = rq->out_max;
    for (o = 0; o < offset && o < c_out; o++) {
        acc[o] = requant_channel(&q, o, acc[o], 0);
    }
    for (; o < res_end; o++) {
        acc[o] = requant_channel(&q, o, acc[o], res[o - offset]);
    }
    for (; o < c_out; o++) {
        acc[o] = requant_channel(&q, o, acc[o], 0);
    }
}

/* First tap k >= 0 of a window starting at `start` (step `step`) that lies inside [0, size),
 * and the end of those taps (at most `taps`). */
static int32_t first_inside(int32_t start, int32_t step)
{
    return start >= 0 ? 0 : (step - 1 - start) / step;
}

static int32_t end_inside(int32_t start, int32_t step, int32_t size, int32_t taps)
{
    int32_t end;
    if (start >= size) {
        return 0;
    }
    end = (size - 1 - start) / step + 1;
    return end < taps ? end : taps;
}

void dqa_conv2d_start(dqa_conv_state_t *state, const dqa_conv_params_t *params, const dqa_tensor_t *input,
                      const dqa_tensor_t *residual, dqa_tensor_t *output, void *scratch)
{
    uint32_t ring_pixels = conv_ring_pixels(params, input->info);
    int16_t *ring = (int16_t *)(void *)((int32_t *)scratch + output->info->channels);
    dqa__window_init(&state->win, input, ring, ring_pixels);
    state->has_residual = residual != NULL;
    if (residual != NULL) {
        dqa_reader_init(&state->residual, residual);
    }
    dqa_writer_init(&state->writer, output);
    state->scratch = scratch;
    state->residual_pos = 0;
    state->row = 0;
}

void dqa_conv2d_rows(dqa_conv_state_t *state, const dqa_conv_params_t *params, uint16_t end,
                     dqa_status_t *status)
{
    const dqa_tensor_info_t *in = state->win.reader.tensor->info;
    const dqa_tensor_info_t *out = state->writer.tensor->info;
    uint32_t c_in = in->channels, c_out = out->channels;
    uint32_t groups = params->groups ? params->groups : 1u;
    uint32_t c_in_g = c_in / groups, c_out_g = c_out / groups;
    int32_t kh_n = params->kernel_h, kw_n = params->kernel_w;
    int32_t sh = params->stride_h ? params->stride_h : 1, sw = params->stride_w ? params->stride_w : 1;
    int32_t dh = params->dilation_h ? params->dilation_h : 1, dw = params->dilation_w ? params->dilation_w : 1;
    int32_t h = in->height, w = in->width;
    uint32_t w_stride = (uint32_t)kh_n * (uint32_t)kw_n * c_in_g; /* weights per output channel */
    uint32_t ring_pixels = state->win.ring_pixels;
    int32_t *acc = (int32_t *)state->scratch;
    int16_t *ring = state->win.ring;
    int16_t *res = ring + (size_t)ring_pixels * c_in;
    uint32_t c_res = 0, res_w = 0;
    int32_t res_stride = params->residual_stride ? params->residual_stride : 1;
    int32_t oh, ow;
    /* a kernel row's input pixels are consecutive in the ring and their channels in the weights
     * (a 1-channel "depthwise" conv, groups = 1, keeps its one-tap runs) */
    int rows_contiguous = groups == 1u && dw == 1 && !is_depthwise(c_in_g, c_out_g);
    conv_shape_t shape;

    shape.weights = params->weights;
    shape.w_stride = w_stride;
    shape.c_in_g = c_in_g;
    shape.c_out_g = c_out_g;
    shape.groups = groups;
    if (state->has_residual) {
        c_res = state->residual.tensor->info->channels;
        res_w = state->residual.tensor->info->width;
    }
    if (!dqa__rows_pending(&end, out->height, state->row)) {
        return; /* nothing new: a segment round in which this layer waits */
    }

    for (oh = state->row; oh < (int32_t)end; oh++) {
        int32_t top = oh * sh - (int32_t)params->pad_top;
        int32_t bottom = top + (kh_n - 1) * dh;
        for (ow = 0; ow < (int32_t)out->width; ow++) {
            int32_t left = ow * sw - (int32_t)params->pad_left;
            int32_t right = left + (kw_n - 1) * dw;
            int32_t kh, kw;
            uint32_t o;
            dqa__window_advance(&state->win, top, left, bottom, right);
            for (o = 0; o < c_out; o++) {
                acc[o] = 0;
            }
            {
                int32_t kh_end = end_inside(top, dh, h, kh_n), kw_end = end_inside(left, dw, w, kw_n);
                int32_t kw_first = first_inside(left, dw);
                dqa_mac_run_t runs[RUNS_PER_PASS];
                uint32_t n_runs = 0;
                for (kh = first_inside(top, dh); kh < kh_end; kh++) { /* taps outside: zero padding */
                    uint32_t row = (uint32_t)((top + kh * dh) * w + left);
                    for (kw = kw_first; kw < kw_end;) {
                        uint32_t slot = (row + (uint32_t)(kw * dw)) % ring_pixels;
                        uint32_t run = 1u;
                        if (rows_contiguous) { /* up to the ring's end; the rest starts at slot 0 */
                            run = (uint32_t)(kw_end - kw);
                            if (run > ring_pixels - slot) {
                                run = ring_pixels - slot;
                            }
                        }
                        runs[n_runs].x = ring + (size_t)slot * c_in;
                        runs[n_runs].k = ((uint32_t)kh * (uint32_t)kw_n + (uint32_t)kw) * c_in_g;
                        runs[n_runs].len = run * c_in_g;
                        if (++n_runs == RUNS_PER_PASS) {
                            accumulate(acc, &shape, runs, n_runs);
                            n_runs = 0;
                        }
                        kw += (int32_t)run;
                    }
                }
                accumulate(acc, &shape, runs, n_runs);
            }
            if (state->has_residual) { /* v_r[oh * s, ow * s, o - k] */
                uint32_t target = ((uint32_t)(oh * res_stride) * res_w + (uint32_t)(ow * res_stride));
                if (target > state->residual_pos) {
                    dqa_skip_pixels(&state->residual, target - state->residual_pos);
                }
                dqa_read_pixel(&state->residual, res);
                state->residual_pos = target + 1u;
            }
            requantize(acc, params, c_out, state->has_residual ? res : NULL, c_res);
            dqa_write_pixel(&state->writer, acc);
        }
    }
    state->row = (uint16_t)end;
    if (end == out->height) {
        dqa_writer_finish(&state->writer, status);
    }
}

void dqa_conv2d(const dqa_conv_params_t *params, const dqa_tensor_t *input, const dqa_tensor_t *residual,
                dqa_tensor_t *output, void *scratch, dqa_status_t *status)
{
    dqa_conv_state_t state;
    dqa_conv2d_start(&state, params, input, residual, output, scratch);
    dqa_conv2d_rows(&state, params, output->info->height, status);
}
