/*
 * What avgpool and maxpool share (docs/spec.md 5.5): the scratch size and the
 * traversal of the windows. They differ only in how a window is reduced
 * (sum or max) and how the result is stored (requantized, or the input's
 * quantization kept).
 *
 * Scratch (4-byte aligned): int32 acc[C], int16 ring[R * C] with
 * R = 1 for a single output position (global pooling: pixels are streamed),
 * else dqa__window_ring_pixels(H, W, KH, KW, 1, 1).
 */
#include "dqa_internal.h"

uint32_t dqa__pool_ring_pixels(const dqa_pool_params_t *params, const dqa_tensor_info_t *input,
                               const dqa_tensor_info_t *output)
{
    if (output->height == 1u && output->width == 1u) {
        return 1u;
    }
    return dqa__window_ring_pixels(input->height, input->width, params->kernel_h, params->kernel_w, 1u, 1u);
}

size_t dqa_pool_get_buffer_size(const dqa_pool_params_t *params, const dqa_tensor_info_t *input,
                                const dqa_tensor_info_t *output)
{
    return DQA_ALIGN4((size_t)output->channels * sizeof(int32_t) +
                      (size_t)dqa__pool_ring_pixels(params, input, output) * input->channels * sizeof(int16_t));
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

void dqa__pool(const dqa_pool_params_t *params, const dqa_tensor_t *input, dqa_tensor_t *output, void *scratch,
               dqa_status_t *status, int is_max)
{
    const dqa_tensor_info_t *in = input->info;
    const dqa_tensor_info_t *out = output->info;
    uint32_t c_n = in->channels;
    int32_t kh_n = params->kernel_h, kw_n = params->kernel_w;
    int32_t sh = params->stride_h ? params->stride_h : 1, sw = params->stride_w ? params->stride_w : 1;
    int32_t h = in->height, w = in->width;
    uint32_t ring_pixels = dqa__pool_ring_pixels(params, in, out);
    int32_t *acc = (int32_t *)scratch;
    int16_t *ring = (int16_t *)(void *)(acc + c_n);
    dqa_writer_t writer;
    int32_t oh, ow;

    dqa_writer_init(&writer, output);
    if (ring_pixels == 1u && out->height == 1u && out->width == 1u) {
        /* one window: stream the input, taking the pixels inside it */
        int32_t top = -(int32_t)params->pad_top, left = -(int32_t)params->pad_left;
        int32_t ih, iw;
        uint32_t skipped = 0;
        dqa_reader_t reader;
        dqa_reader_init(&reader, input);
        pool_start(acc, c_n, is_max);
        for (ih = 0; ih < h && ih < top + kh_n; ih++) {
            for (iw = 0; iw < w; iw++) {
                if (ih < top || iw < left || iw >= left + kw_n) {
                    skipped++;
                    continue;
                }
                if (skipped) {
                    dqa_skip_pixels(&reader, skipped);
                    skipped = 0;
                }
                dqa_read_pixel(&reader, ring);
                pool_take(acc, ring, c_n, is_max);
            }
        }
        pool_write(params, &writer, acc, is_max);
    } else {
        dqa_window_t win;
        dqa__window_init(&win, input, ring, ring_pixels);
        for (oh = 0; oh < (int32_t)out->height; oh++) {
            int32_t top = oh * sh - (int32_t)params->pad_top;
            for (ow = 0; ow < (int32_t)out->width; ow++) {
                int32_t left = ow * sw - (int32_t)params->pad_left;
                int32_t ih, iw;
                dqa__window_advance(&win, top, left, top + kh_n - 1, left + kw_n - 1);
                pool_start(acc, c_n, is_max);
                for (ih = top < 0 ? 0 : top; ih < top + kh_n && ih < h; ih++) {
                    for (iw = left < 0 ? 0 : left; iw < left + kw_n && iw < w; iw++) {
                        pool_take(acc, dqa__window_pixel(&win, (uint32_t)(ih * w + iw)), c_n, is_max);
                    }
                }
                pool_write(params, &writer, acc, is_max);
            }
        }
    }
    dqa_writer_finish(&writer, status);
}
