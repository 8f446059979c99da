/*
 * What avgpool and maxpool share (docs/spec.md 5.5): the scratch size and the
 * traversal of the windows. They differ only in how a window is reduced
 * (sum or max) and how the result is stored (requantized, or the input's
 * quantization kept).
 *
 * Scratch (each part 4-byte aligned): the state a row-streamed layer keeps between its calls
 * (dqa_pool_get_state_size()) and the work it needs only within one (dqa_pool_get_work_size(); the
 * layers of a segment share one; the whole-tensor call takes the work first):
 *   windowed pooling: state int16 ring[R * C], R = dqa__window_ring_pixels(H, W, KH, KW, 1, 1);
 *                     work int32 acc[C], one output pixel's
 *   a single output position (global pooling, its input pixels streamed):
 *                     state int32 acc[C], the sums so far; work int16 pixel[C]
 */
#include "dqa_internal.h"

static int pool_is_single(const dqa_tensor_info_t *output)
{
    return output->height == 1u && output->width == 1u;
}

uint32_t dqa__pool_ring_pixels(const dqa_pool_params_t *params, const dqa_tensor_info_t *input,
                               const dqa_tensor_info_t *output)
{
    if (pool_is_single(output)) {
        return 1u;
    }
    return dqa__window_ring_pixels(input->height, input->width, params->kernel_h, params->kernel_w, 1u, 1u);
}

size_t dqa_pool_get_state_size(const dqa_pool_params_t *params, const dqa_tensor_info_t *input,
                               const dqa_tensor_info_t *output)
{
    if (pool_is_single(output)) {
        return (size_t)output->channels * sizeof(int32_t);
    }
    return DQA_ALIGN4((size_t)dqa__pool_ring_pixels(params, input, output) * input->channels * sizeof(int16_t));
}

size_t dqa_pool_get_work_size(const dqa_tensor_info_t *input, const dqa_tensor_info_t *output)
{
    if (pool_is_single(output)) {
        return DQA_ALIGN4((size_t)input->channels * sizeof(int16_t));
    }
    return (size_t)output->channels * sizeof(int32_t);
}

size_t dqa_pool_get_buffer_size(const dqa_pool_params_t *params, const dqa_tensor_info_t *input,
                                const dqa_tensor_info_t *output)
{
    return dqa_pool_get_state_size(params, input, output) + dqa_pool_get_work_size(input, output);
}

static void pool_start(int32_t *acc, uint32_t c_n, int is_max)
{
    uint32_t c;
    for (c = 0; c < c_n; c++) {
        acc[c] = is_max ? INT32_MIN : 0;
    }
}

static void pool_take(int32_t *acc, const int16_t *x, uint32_t c_n, int is_max)
{
    uint32_t c;
    if (is_max) {
        for (c = 0; c < c_n; c++) {
            if (x[c] > acc[c]) {
                acc[c] = x[c];
            }
        }
    } else {
        for (c = 0; c < c_n; c++) {
            acc[c] += x[c];
        }
    }
}

static void pool_write(const dqa_pool_params_t *params, dqa_writer_t *writer, int32_t *acc, int is_max)
{
    const dqa_tensor_info_t *out = writer->tensor->info;
    const dqa_requant_t *rq = &params->requant;
    uint32_t c;
    for (c = 0; c < out->channels; c++) {
        acc[c] = is_max ? dqa__fine_to_storage(out, (uint16_t)c, acc[c])
                        : dqa__requant((int64_t)acc[c] * rq->multiplier[c], rq->shift[c], rq->out_min[c],
                                       rq->out_max[c]);
    }
    dqa_write_pixel(writer, acc);
}

/* Units of the row loop: output rows, or input rows for a single output position. */
static uint16_t pool_units(const dqa_tensor_info_t *in, const dqa_tensor_info_t *out)
{
    return out->height == 1u && out->width == 1u ? in->height : out->height;
}

void dqa_pool_start(dqa_pool_state_t *state, const dqa_pool_params_t *params, const dqa_tensor_t *input,
                    dqa_tensor_t *output, void *kept, void *work, int is_max)
{
    int single = pool_is_single(output->info);
    dqa__window_init(&state->win, input, (int16_t *)(single ? work : kept),
                     dqa__pool_ring_pixels(params, input->info, output->info));
    dqa_writer_init(&state->writer, output);
    state->acc = (int32_t *)(single ? kept : work);
    state->row = 0;
    state->is_max = (uint8_t)(is_max != 0);
    if (single) {
        pool_start(state->acc, input->info->channels, is_max);
    }
}

/* One output position over the whole input: take input rows [from, end) of the window as they come. */
static void pool_single_rows(dqa_pool_state_t *state, const dqa_pool_params_t *params, int32_t *acc,
                             int32_t from, int32_t end)
{
    const dqa_tensor_info_t *in = state->win.reader.tensor->info;
    int32_t top = -(int32_t)params->pad_top, left = -(int32_t)params->pad_left;
    int32_t kh_n = params->kernel_h, kw_n = params->kernel_w, w = in->width;
    int32_t ih, iw;
    for (ih = from; ih < end; ih++) {
        for (iw = 0; iw < w; iw++) {
            if (ih >= top && ih < top + kh_n && iw >= left && iw < left + kw_n) {
                dqa__window_advance(&state->win, ih, iw, ih, iw); /* skips what the window leaves out */
                pool_take(acc, state->win.ring, in->channels, state->is_max);
            }
        }
    }
}

void dqa_pool_rows(dqa_pool_state_t *state, const dqa_pool_params_t *params, uint16_t end, dqa_status_t *status)
{
    const dqa_tensor_info_t *in = state->win.reader.tensor->info;
    const dqa_tensor_info_t *out = state->writer.tensor->info;
    uint32_t c_n = in->channels;
    int32_t kh_n = params->kernel_h, kw_n = params->kernel_w;
    int32_t sh = params->stride_h ? params->stride_h : 1, sw = params->stride_w ? params->stride_w : 1;
    int32_t h = in->height, w = in->width;
    int single = pool_is_single(out); /* dqa__pool_ring_pixels(): 1, streamed */
    uint16_t units = pool_units(in, out);
    int32_t *acc = state->acc;
    int32_t oh, ow;

    if (!dqa__rows_pending(&end, units, state->row)) {
        return; /* nothing new: a segment round in which this layer waits */
    }
    if (single) {
        pool_single_rows(state, params, acc, state->row, end);
        if (end == units) {
            pool_write(params, &state->writer, acc, state->is_max);
        }
    } else {
        for (oh = state->row; oh < (int32_t)end; oh++) {
            int32_t top = oh * sh - (int32_t)params->pad_top;
            for (ow = 0; ow < (int32_t)out->width; ow++) {
                int32_t left = ow * sw - (int32_t)params->pad_left;
                int32_t ih, iw;
                dqa__window_advance(&state->win, top, left, top + kh_n - 1, left + kw_n - 1);
                pool_start(acc, c_n, state->is_max);
                for (ih = top < 0 ? 0 : top; ih < top + kh_n && ih < h; ih++) {
                    for (iw = left < 0 ? 0 : left; iw < left + kw_n && iw < w; iw++) {
                        pool_take(acc, dqa__window_pixel(&state->win, (uint32_t)(ih * w + iw)), c_n,
                                  state->is_max);
                    }
                }
                pool_write(params, &state->writer, acc, state->is_max);
            }
        }
    }
    state->row = end;
    if (end == units) {
        dqa_writer_finish(&state->writer, status);
    }
}

void dqa__pool(const dqa_pool_params_t *params, const dqa_tensor_t *input, dqa_tensor_t *output, void *scratch,
               dqa_status_t *status, int is_max)
{
    dqa_pool_state_t state;
    size_t work = dqa_pool_get_work_size(input->info, output->info);
    dqa_pool_start(&state, params, input, output, (uint8_t *)scratch + work, scratch, is_max);
    dqa_pool_rows(&state, params, pool_units(input->info, output->info), status);
}
