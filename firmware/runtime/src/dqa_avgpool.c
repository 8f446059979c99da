/*
 * avgpool and global_avgpool (docs/spec.md 5.5): S = int32 sum of v over the
 * window, padding counted as 0 (count_include_pad; the divisor is folded
 * into M); u = clamp(rshift_round(S * M, T)). Global pooling is avgpool with
 * the kernel covering the input. Scratch: see dqa_pool.c.
 */
#include "dqa_internal.h"

void dqa_avgpool(const dqa_pool_params_t *params, const dqa_tensor_t *input, dqa_tensor_t *output,
                 void *scratch, dqa_status_t *status)
{
    const dqa_tensor_info_t *in = input->info;
    const dqa_tensor_info_t *out = output->info;
    const dqa_requant_t *rq = &params->requant;
    uint32_t c_n = in->channels;
    int32_t kh_n = params->kernel_h, kw_n = params->kernel_w;
    int32_t sh = params->stride_h ? params->stride_h : 1, sw = params->stride_w ? params->stride_w : 1;
    int32_t h = in->height, w = in->width;
    uint32_t ring_pixels = dqa__pool_ring_pixels(params, in, out);
    int32_t *acc = (int32_t *)scratch;
    int16_t *ring = (int16_t *)(void *)(acc + c_n);
    dqa_writer_t writer;
    uint32_t c;
    int32_t oh, ow;

    dqa_writer_init(&writer, output);
    if (ring_pixels == 1u && out->height == 1u && out->width == 1u) {
        /* one window: stream the input, summing the pixels inside it */
        int32_t top = -(int32_t)params->pad_top, left = -(int32_t)params->pad_left;
        int32_t ih, iw;
        uint32_t skipped = 0;
        dqa_reader_t reader;
        dqa_reader_init(&reader, input);
        for (c = 0; c < c_n; c++) {
            acc[c] = 0;
        }
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
                for (c = 0; c < c_n; c++) {
                    acc[c] += ring[c];
                }
            }
        }
        for (c = 0; c < c_n; c++) {
            acc[c] = dqa__requant((int64_t)acc[c] * rq->multiplier[c], rq->shift[c], rq->out_min[c], rq->out_max[c]);
        }
        dqa_write_pixel(&writer, acc);
        dqa_writer_finish(&writer, status);
        return;
    }

    {
        dqa_window_t win;
        dqa__window_init(&win, input, ring, ring_pixels);
        for (oh = 0; oh < (int32_t)out->height; oh++) {
            int32_t top = oh * sh - (int32_t)params->pad_top;
            for (ow = 0; ow < (int32_t)out->width; ow++) {
                int32_t left = ow * sw - (int32_t)params->pad_left;
                int32_t ih, iw;
                dqa__window_advance(&win, top, left, top + kh_n - 1, left + kw_n - 1);
                for (c = 0; c < c_n; c++) {
                    acc[c] = 0;
                }
                for (ih = top < 0 ? 0 : top; ih < top + kh_n && ih < h; ih++) {
                    for (iw = left < 0 ? 0 : left; iw < left + kw_n && iw < w; iw++) {
                        const int16_t *x = dqa__window_pixel(&win, (uint32_t)(ih * w + iw));
                        for (c = 0; c < c_n; c++) {
                            acc[c] += x[c];
                        }
                    }
                }
                for (c = 0; c < c_n; c++) {
                    acc[c] = dqa__requant((int64_t)acc[c] * rq->multiplier[c], rq->shift[c], rq->out_min[c],
                                          rq->out_max[c]);
                }
                dqa_write_pixel(&writer, acc);
            }
        }
    }
    dqa_writer_finish(&writer, status);
}
