/*
 * conv2d (docs/spec.md 5.2, 5.3): generic stride, padding, dilation and
 * groups (depthwise included), optional fused residual input, and linear as
 * a 1x1 convolution over a (1, 1, C) input.
 *
 * Output pixels go two at a time where they can (conv_pairs_pixels()): both windows are gathered into
 * columns and every weight tile is read once for both (dqa__mac_tile_2cols); a depthwise conv and a
 * lone last pixel of a row take the window's runs straight from the ring (dqa__mac_tile_runs).
 *
 * Memory (each part 4-byte aligned): the window, which a row-streamed layer keeps between its calls
 * (dqa_conv2d_get_state_size()),
 *   int16 ring[R * C_in]                  input window ring, R = dqa__window_ring_pixels()
 * and the work, which only lives within one call, so the layers of a segment share one
 * (dqa_conv2d_get_work_size()), in this order:
 *   int32 acc[C_out']                     accumulators, then u in place (C_out' = C_out, with pairs
 *                                         rounded up to whole tiles: see accumulate_pair())
 *   int32 acc_pair[C_out']                the second pixel's (only with pairs)
 *   int16 columns[groups * 2 * K']        both windows per group (only with pairs, dqa__column_base(),
 *                                         K' = K = KH * KW * C_in / groups rounded up to even)
 *   int16 res[C_res]                      residual pixel (only with a residual)
 * The whole-tensor dqa_conv2d() takes both in one scratch, the work first.
 */
#include "dqa_internal.h"
#include "dqa_mac.h"

static uint32_t conv_ring_pixels(const dqa_conv_params_t *p, const dqa_tensor_info_t *input)
{
    return dqa__window_ring_pixels(input->height, input->width, p->kernel_h, p->kernel_w,
                                   p->dilation_h ? p->dilation_h : 1u, p->dilation_w ? p->dilation_w : 1u);
}

/* The window's values come in runs (dqa_mac_run_t): one kernel row of taps when its input pixels follow
 * each other in the ring, else one tap; k is the offset into every output channel's OHWI row and len
 * counts values per group (taps * c_in_g). */
#define RUNS_PER_PASS 16u /* runs passed on at once */

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

static uint32_t conv_groups(const dqa_conv_params_t *p)
{
    return p->groups ? p->groups : 1u;
}

/* Values per window column of one group: K rounded up to even (whole pairs; the pad meets a zero weight). */
static uint32_t column_values(const dqa_conv_params_t *p, uint32_t c_in)
{
    uint32_t k = (uint32_t)p->kernel_h * p->kernel_w * (c_in / conv_groups(p));
    return k + (k & 1u);
}

/* Whether output pixels go in pairs: tiled weights, more than one output pixel, and not one_pixel. */
static int conv_pairs_pixels(const dqa_conv_params_t *p, uint32_t c_in, const dqa_tensor_info_t *output)
{
    uint32_t groups = conv_groups(p);
    return !p->one_pixel && !is_depthwise(c_in / groups, output->channels / groups) &&
           (uint32_t)output->height * output->width > 1u;
}

/* Accumulators per pixel with pairs: up to the end of the last group's last whole tile, which
 * dqa__mac_tile_2cols writes in full (with groups, more than C_out rounded up to whole tiles). */
static uint32_t pair_acc_values(uint32_t c_out, uint32_t groups)
{
    uint32_t c_out_g = c_out / groups;
    return c_out - c_out_g + tiles_per_group(c_out_g) * DQA_MAC_ROWS;
}

size_t dqa_conv2d_get_work_size(const dqa_conv_params_t *params, const dqa_tensor_info_t *input,
                                const dqa_tensor_info_t *residual, const dqa_tensor_info_t *output)
{
    size_t size = (size_t)output->channels * sizeof(int32_t);
    if (conv_pairs_pixels(params, input->channels, output)) {
        size = 2u * (size_t)pair_acc_values(output->channels, conv_groups(params)) * sizeof(int32_t);
        size += (size_t)conv_groups(params) * 2u * column_values(params, input->channels) * sizeof(int16_t);
    }
    if (residual != NULL) {
        size += (size_t)residual->channels * sizeof(int16_t);
    }
    return DQA_ALIGN4(size);
}

size_t dqa_conv2d_get_state_size(const dqa_conv_params_t *params, const dqa_tensor_info_t *input)
{
    return DQA_ALIGN4((size_t)conv_ring_pixels(params, input) * input->channels * sizeof(int16_t));
}

size_t dqa_conv2d_get_buffer_size(const dqa_conv_params_t *params, const dqa_tensor_info_t *input,
                                  const dqa_tensor_info_t *residual, const dqa_tensor_info_t *output)
{
    return dqa_conv2d_get_work_size(params, input, residual, output) + dqa_conv2d_get_state_size(params, input);
}

size_t dqa_conv2d_weights_size(const dqa_conv_params_t *params, uint16_t in_channels, uint16_t out_channels)
{
    uint32_t groups = conv_groups(params);
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

/* acc0[o], acc1[o] = the dot products of output channel o's weights with the two windows' columns of its
 * group (`values` each, the groups' 2 * values apart). A tile's zero rows past its group's end write 0
 * over the next group's first channels, which that group's first tile then sets (or over the padding of
 * acc0, acc1 after the last group: pair_acc_values()). */
__attribute__((noinline)) /* a function of its own, as accumulate(): bench/perf.py --breakdown counts the
                              MACs by function; the call costs 0.3 % (ResNet-8 DQA n=4, M7: 25.90 -> 25.98 M) */
static void accumulate_pair(int32_t *acc0, int32_t *acc1, const conv_shape_t *k, const int16_t *columns,
                            uint32_t values)
{
    uint32_t g, o = 0;
    const int8_t *tile = k->weights;
    uint32_t tile_bytes = dqa__tile_bytes(k->w_stride);
    for (g = 0; g < k->groups; g++, columns += 2u * values) {
        uint32_t end = o + k->c_out_g;
        for (; o < end; o += DQA_MAC_ROWS, tile += tile_bytes) {
            dqa__mac_tile_2cols(acc0 + o, acc1 + o, tile, tile_bytes, columns, values);
        }
        o = end;
    }
}

#if !DQA_CONV_TILE_ROWS
#define COPY_UNROLL 4u /* pairs per step of copy_values() */
/* Four pairs from x to their places in a column, as four words (memcpy: any alignment, no aliasing). */
#define COPY_PAIRS(pair, x)                                                                                   \
    do {                                                                                                      \
        uint32_t p_[COPY_UNROLL];                                                                             \
        memcpy(&p_[0], (x), sizeof p_[0]);                                                                    \
        memcpy(&p_[1], (x) + 2, sizeof p_[1]);                                                                \
        memcpy(&p_[2], (x) + 4, sizeof p_[2]);                                                                \
        memcpy(&p_[3], (x) + 6, sizeof p_[3]);                                                                \
        memcpy((pair), &p_[0], sizeof p_[0]);                                                                 \
        memcpy((pair) + DQA_COLUMN_PAIR_STEP, &p_[1], sizeof p_[1]);                                          \
        memcpy((pair) + 2u * DQA_COLUMN_PAIR_STEP, &p_[2], sizeof p_[2]);                                     \
        memcpy((pair) + 3u * DQA_COLUMN_PAIR_STEP, &p_[3], sizeof p_[3]);                                     \
    } while (0)
#endif

/* Values k .. k + n - 1 of a column (dqa__column_base()) from x[0 .. n). */
static void copy_values(int16_t *column, uint32_t k, const int16_t *x, uint32_t n)
{
#if DQA_CONV_TILE_ROWS /* columns contiguous: a vector of values at a time, the last predicated (a call of
                        * memcpy cost more than these runs of a few taps' channels: ResNet-8 8-bit, M55) */
    int16_t *to = column + k;
    for (; n >= DQA_MVE_LANES; n -= DQA_MVE_LANES, x += DQA_MVE_LANES, to += DQA_MVE_LANES) {
        vstrhq_s16(to, vldrhq_s16(x));
    }
    if (n > 0u) {
        const mve_pred16_t active = vctp16q(n);
        vstrhq_p_s16(to, vldrhq_z_s16(x, active), active);
    }
#else
    int16_t *pair;
    const int16_t *x_end;
    if ((k & 1u) && n > 0u) { /* the second half of a pair first */
        column[(k >> 1) * DQA_COLUMN_PAIR_STEP + 1u] = *x++;
        k++;
        n--;
    }
    pair = (int16_t *)__builtin_assume_aligned(column + (k >> 1) * DQA_COLUMN_PAIR_STEP, 4);
    x_end = x + (n & ~(2u * COPY_UNROLL - 1u));
    for (; x != x_end; x += 2u * COPY_UNROLL, pair += COPY_UNROLL * DQA_COLUMN_PAIR_STEP) {
        COPY_PAIRS(pair, x);
    }
    for (n &= 2u * COPY_UNROLL - 1u; n >= 2u; n -= 2u, x += 2, pair += DQA_COLUMN_PAIR_STEP) {
        memcpy(pair, x, 2u * sizeof *x);
    }
    if (n > 0u) {
        pair[0] = x[0];
    }
#endif
}

/* Where a window's runs go: one pixel's accumulators, or its column of each group. */
typedef struct {
    const conv_shape_t *shape;
    int32_t *acc;      /* accumulate(), or NULL: */
    int16_t *column;   /* group 0's column of the pixel; group g's lies g * 2 * values further */
    uint32_t values;
} run_sink_t;

/* A run of the window into the pixel's column of each group (run.len values from run.x + the group's
 * first channel). */
static void gather_run(const run_sink_t *sink, const dqa_mac_run_t *run)
{
    uint32_t g;
    /* group 0 on its own call: with one call site GCC 12 inlines copy_values into window_runs, which spills */
    copy_values(sink->column, run->k, run->x, run->len);
    for (g = 1; g < sink->shape->groups; g++) {
        copy_values(sink->column + (size_t)g * 2u * sink->values, run->k, run->x + g * sink->shape->c_in_g,
                    run->len);
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

#if DQA_CONV_TILE_ROWS
/* requant_channel of channels [o, end) without a residual, four per vector (MVE) where all four take
 * dqa__requant's common form: a shift above 32 and acc + B inside int32, so that t = (acc + B) * M and f is
 * t's high word (VMULH, exactly floor(t / 2^32)) shifted right by shift - 33; any other vector channel by
 * channel. Returns the first channel not done (fewer than four remain). */
static uint32_t requant_vectors(int32_t *restrict acc, const linear_requant_t *q, uint32_t o, uint32_t end)
{
    const uint32x4_t shift_33 = vdupq_n_u32(33u);
    for (; o + 4u <= end; o += 4u) {
        const int32x4_t a = vldrwq_s32(acc + o), b = vldrwq_s32(q->bias + o);
        const int32x4_t x = vaddq_s32(a, b);
        const uint32x4_t shifts = vldrbq_u32(q->shift + o);
        if (vcmpcsq_u32(shifts, shift_33) != 0xffffu || vcmpneq_s32(x, vqaddq_s32(a, b)) != 0u) {
            for (uint32_t i = o; i < o + 4u; i++) {
                acc[i] = requant_channel(q, i, acc[i], 0);
            }
            continue;
        }
        const int32x4_t f = vshlq_s32(vmulhq_s32(x, vldrwq_s32(q->multiplier + o)),
                                      vreinterpretq_s32_u32(vsubq_u32(shift_33, shifts)));
        const int32x4_t r = vsubq_s32(f, vshrq_n_s32(f, 1)); /* spec 3's rounding, as dqa__requant */
        vstrwq_s32(acc + o, vminq_s32(vmaxq_s32(r, vldrwq_s32(q->out_min + o)), vldrwq_s32(q->out_max + o)));
    }
    return o;
}
#endif

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
    o = 0;
#if DQA_CONV_TILE_ROWS
    o = requant_vectors(acc, &q, 0, offset < c_out ? offset : c_out);
#endif
    for (; o < offset && o < c_out; o++) {
        acc[o] = requant_channel(&q, o, acc[o], 0);
    }
    for (; o < res_end; o++) {
        acc[o] = requant_channel(&q, o, acc[o], res[o - offset]);
    }
#if DQA_CONV_TILE_ROWS
    o = requant_vectors(acc, &q, o, c_out);
#endif
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

/* The work's parts (see the top of this file). */
typedef struct {
    int32_t *acc, *acc_pair; /* acc_pair, columns: NULL without pairs */
    int16_t *columns, *res;
} conv_work_t;

static conv_work_t conv_work(void *work, int pairs, uint32_t c_out, uint32_t groups, uint32_t values)
{
    conv_work_t s;
    s.acc = (int32_t *)work;
    s.acc_pair = pairs ? s.acc + pair_acc_values(c_out, groups) : NULL;
    s.columns = pairs ? (int16_t *)(void *)(s.acc_pair + pair_acc_values(c_out, groups)) : NULL;
    s.res = pairs ? s.columns + (size_t)groups * 2u * values : (int16_t *)(void *)(s.acc + c_out);
    return s;
}

void dqa_conv2d_start(dqa_conv_state_t *state, const dqa_conv_params_t *params, const dqa_tensor_t *input,
                      const dqa_tensor_t *residual, dqa_tensor_t *output, void *window, void *work)
{
    dqa__window_init(&state->win, input, (int16_t *)window, conv_ring_pixels(params, input->info));
    state->has_residual = residual != NULL;
    if (residual != NULL) {
        dqa_reader_init(&state->residual, residual);
    }
    dqa_writer_init(&state->writer, output);
    state->work = work;
    state->residual_pos = 0;
    state->row = 0;
}

/* A conv's window geometry for dqa_conv2d_rows. */
typedef struct {
    int32_t kh_n, kw_n, sh, sw, dh, dw, h, w, pad_top, pad_left;
    uint32_t c_in, c_in_g, ring_pixels;
    const int16_t *ring;
    int rows_contiguous;
} conv_window_t;

/* The input position of output pixel (oh, ow)'s top-left tap. */
static int32_t window_top(const conv_window_t *g, int32_t oh)
{
    return oh * g->sh - g->pad_top;
}

static int32_t window_left(const conv_window_t *g, int32_t ow)
{
    return ow * g->sw - g->pad_left;
}

/* Whether every tap of the window at (top, left) lies inside the input (none is padding). */
static int window_inside(const conv_window_t *g, int32_t top, int32_t left)
{
    return top >= 0 && left >= 0 && top + (g->kh_n - 1) * g->dh < g->h && left + (g->kw_n - 1) * g->dw < g->w;
}

/* Output pixel (oh, ow)'s window, read into the ring, as runs passed to `sink` (taps in the padding have
 * none: zeros). */
static void window_runs(dqa_window_t *win, const conv_window_t *g, int32_t oh, int32_t ow, const run_sink_t *sink)
{
    int32_t top = window_top(g, oh), left = window_left(g, ow);
    int32_t kh_end = end_inside(top, g->dh, g->h, g->kh_n), kw_end = end_inside(left, g->dw, g->w, g->kw_n);
    int32_t kw_first = first_inside(left, g->dw), kh, kw;
    dqa_mac_run_t runs[RUNS_PER_PASS];
    uint32_t n_runs = 0;
    dqa__window_advance(win, top, left, top + (g->kh_n - 1) * g->dh, left + (g->kw_n - 1) * g->dw);
    for (kh = first_inside(top, g->dh); kh < kh_end; kh++) {
        uint32_t row = (uint32_t)((top + kh * g->dh) * g->w + left);
        for (kw = kw_first; kw < kw_end;) {
            uint32_t slot = (row + (uint32_t)(kw * g->dw)) % g->ring_pixels;
            uint32_t run = 1u;
            if (g->rows_contiguous) { /* up to the ring's end; the rest starts at slot 0 */
                run = (uint32_t)(kw_end - kw);
                if (run > g->ring_pixels - slot) {
                    run = g->ring_pixels - slot;
                }
            }
            runs[n_runs].x = g->ring + (size_t)slot * g->c_in;
            runs[n_runs].k = ((uint32_t)kh * (uint32_t)g->kw_n + (uint32_t)kw) * g->c_in_g;
            runs[n_runs].len = run * g->c_in_g;
            if (sink->acc == NULL) { /* a column takes each run as it comes */
                gather_run(sink, &runs[n_runs]);
            } else if (++n_runs == RUNS_PER_PASS) {
                accumulate(sink->acc, sink->shape, runs, n_runs);
                n_runs = 0;
            }
            kw += (int32_t)run;
        }
    }
    if (sink->acc != NULL) {
        accumulate(sink->acc, sink->shape, runs, n_runs);
    }
}

/* Output pixel (oh, ow) from its accumulators: the residual pixel read (spec 5.2's v_r[oh * s, ow * s,
 * o - k]), u in place, written. */
static void finish_pixel(dqa_conv_state_t *state, const dqa_conv_params_t *params, int32_t oh, int32_t ow,
                         int32_t *acc, int16_t *res)
{
    uint32_t c_res = 0;
    if (state->has_residual) {
        int32_t res_stride = params->residual_stride ? params->residual_stride : 1;
        uint32_t target = ((uint32_t)(oh * res_stride) * state->residual.tensor->info->width +
                           (uint32_t)(ow * res_stride));
        c_res = state->residual.tensor->info->channels;
        if (target > state->residual_pos) {
            dqa_skip_pixels(&state->residual, target - state->residual_pos);
        }
        dqa_read_pixel(&state->residual, res);
        state->residual_pos = target + 1u;
    }
    requantize(acc, params, state->writer.tensor->info->channels, state->has_residual ? res : NULL, c_res);
    dqa_write_pixel(&state->writer, acc);
}

void dqa_conv2d_rows(dqa_conv_state_t *state, const dqa_conv_params_t *params, uint16_t end,
                     dqa_status_t *status)
{
    const dqa_tensor_info_t *in = state->win.reader.tensor->info;
    const dqa_tensor_info_t *out = state->writer.tensor->info;
    uint32_t c_in = in->channels, c_out = out->channels;
    uint32_t groups = conv_groups(params), values = column_values(params, c_in);
    int pairs = conv_pairs_pixels(params, c_in, out);
    conv_work_t s = conv_work(state->work, pairs, c_out, groups, values);
    int32_t oh, ow, w_out = out->width;
    conv_shape_t shape;
    conv_window_t g;
    run_sink_t to_acc, to_columns;

    shape.weights = params->weights;
    shape.c_in_g = c_in / groups;
    shape.c_out_g = c_out / groups;
    shape.groups = groups;
    g.kh_n = params->kernel_h;
    g.kw_n = params->kernel_w;
    g.sh = params->stride_h ? params->stride_h : 1;
    g.sw = params->stride_w ? params->stride_w : 1;
    g.dh = params->dilation_h ? params->dilation_h : 1;
    g.dw = params->dilation_w ? params->dilation_w : 1;
    g.h = in->height;
    g.w = in->width;
    g.pad_top = params->pad_top;
    g.pad_left = params->pad_left;
    g.c_in = c_in;
    g.c_in_g = shape.c_in_g;
    g.ring_pixels = state->win.ring_pixels;
    g.ring = state->win.ring;
    /* a kernel row's input pixels are consecutive in the ring and their channels in the weights
     * (a 1-channel "depthwise" conv, groups = 1, keeps its one-tap runs) */
    g.rows_contiguous = groups == 1u && g.dw == 1 && !is_depthwise(shape.c_in_g, shape.c_out_g);
    shape.w_stride = (uint32_t)g.kh_n * (uint32_t)g.kw_n * shape.c_in_g; /* weights per output channel */
    to_acc.shape = &shape;
    to_acc.acc = s.acc;
    to_acc.column = NULL;
    to_acc.values = values;
    to_columns = to_acc;
    to_columns.acc = NULL;
    if (!dqa__rows_pending(&end, out->height, state->row)) {
        return; /* nothing new: a segment round in which this layer waits */
    }
    if (pairs && values != shape.w_stride) { /* an odd K's pad, which gathering never writes (the work is not
                                                * kept between calls) */
        memset(s.columns, 0, (size_t)groups * 2u * values * sizeof *s.columns);
    }

    for (oh = state->row; oh < (int32_t)end; oh++) {
        int32_t top = window_top(&g, oh);
        for (ow = 0; ow < w_out; ow++) {
            if (pairs && ow + 1 < w_out) { /* this pixel and the next: both windows into columns */
                uint32_t j;
                if (!window_inside(&g, top, window_left(&g, ow)) || !window_inside(&g, top, window_left(&g, ow + 1))) {
                    memset(s.columns, 0, (size_t)groups * 2u * values * sizeof *s.columns); /* padding taps */
                }
                for (j = 0; j < 2u; j++) { /* the ring may not hold both windows: one, then the next */
                    to_columns.column = dqa__column_base(s.columns, j, values);
                    window_runs(&state->win, &g, oh, ow + (int32_t)j, &to_columns);
                }
                accumulate_pair(s.acc, s.acc_pair, &shape, s.columns, values);
                finish_pixel(state, params, oh, ow, s.acc, s.res);
                ow++;
                finish_pixel(state, params, oh, ow, s.acc_pair, s.res);
                continue;
            }
            memset(s.acc, 0, c_out * sizeof *s.acc);
            window_runs(&state->win, &g, oh, ow, &to_acc);
            finish_pixel(state, params, oh, ow, s.acc, s.res);
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
    size_t work = dqa_conv2d_get_work_size(params, input->info, residual ? residual->info : NULL, output->info);
    dqa_conv2d_start(&state, params, input, residual, output, (uint8_t *)scratch + work, scratch);
    dqa_conv2d_rows(&state, params, output->info->height, status);
}
