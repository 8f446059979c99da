/*
 * maxpool (docs/spec.md 5.5): v_out = max of v over the window, padded
 * positions ignored; the output keeps the input's quantization and stores
 * u = v_out (important channel) or v_out >> m. Scratch: see dqa_pool.c.
 */
#include "dqa_internal.h"

void dqa_maxpool(const dqa_pool_params_t *params, const dqa_tensor_t *input, dqa_tensor_t *output,
                 void *scratch, dqa_status_t *status)
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
    uint32_t c;
    int32_t oh, ow;

    dqa_writer_init(&writer, output);
    if (ring_pixels == 1u && out->height == 1u && out->width == 1u) {
        /* one window: stream the input */
        int32_t top = -(int32_t)params->pad_top, left = -(int32_t)params->pad_left;
        int32_t ih, iw;
        uint32_t skipped = 0;
        dqa_reader_t reader;
        dqa_reader_init(&reader, input);
        for (c = 0; c < c_n; c++) {
            acc[c] = INT32_MIN;
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
                    if (ring[c] > acc[c]) {
                        acc[c] = ring[c];
                    }
                }
            }
        }
        for (c = 0; c < c_n; c++) {
            acc[c] = dqa__fine_to_storage(out, (uint16_t)c, acc[c]);
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
                    acc[c] = INT32_MIN;
                }
                for (ih = top < 0 ? 0 : top; ih < top + kh_n && ih < h; ih++) {
                    for (iw = left < 0 ? 0 : left; iw < left + kw_n && iw < w; iw++) {
                        const int16_t *x = dqa__window_pixel(&win, (uint32_t)(ih * w + iw));
                        for (c = 0; c < c_n; c++) {
                            if (x[c] > acc[c]) {
                                acc[c] = x[c];
                            }
                        }
                    }
                }
                for (c = 0; c < c_n; c++) {
                    acc[c] = dqa__fine_to_storage(out, (uint16_t)c, acc[c]);
                }
                dqa_write_pixel(&writer, acc);
            }
        }
    }
    dqa_writer_finish(&writer, status);
}
