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

/* acc[o] += sum over ci of w[ci] * x[ci] for the output channels of each group. */
static void accumulate_tap(int32_t *acc, const int8_t *w_tap, const int16_t *x, uint32_t c_out, uint32_t c_out_g,
                           uint32_t c_in_g, uint32_t w_stride)
{
    uint32_t o = 0;
    if (c_in_g == 1u && c_out_g == 1u) { /* depthwise */
        for (o = 0; o < c_out; o++) {
            acc[o] += (int32_t)w_tap[(size_t)o * w_stride] * x[o];
        }
        return;
    }
    while (o < c_out) {
        uint32_t end = o + c_out_g;
        for (; o < end; o++) {
            const int8_t *w = w_tap + (size_t)o * w_stride;
            int32_t sum = 0;
            uint32_t ci = 0;
            for (; ci + 4u <= c_in_g; ci += 4u) {
                sum += (int32_t)w[ci] * x[ci] + (int32_t)w[ci + 1u] * x[ci + 1u] + (int32_t)w[ci + 2u] * x[ci + 2u] +
                       (int32_t)w[ci + 3u] * x[ci + 3u];
            }
            for (; ci < c_in_g; ci++) {
                sum += (int32_t)w[ci] * x[ci];
            }
            acc[o] += sum;
        }
        x += c_in_g;
    }
}

void dqa_conv2d(const dqa_conv_params_t *params, const dqa_tensor_t *input, const dqa_tensor_t *residual,
                dqa_tensor_t *output, void *scratch, dqa_status_t *status)
{
    const dqa_tensor_info_t *in = input->info;
    const dqa_tensor_info_t *out = output->info;
    const dqa_requant_t *rq = &params->requant;
    uint32_t c_in = in->channels, c_out = out->channels;
    uint32_t groups = params->groups ? params->groups : 1u;
    uint32_t c_in_g = c_in / groups, c_out_g = c_out / groups;
    int32_t kh_n = params->kernel_h, kw_n = params->kernel_w;
    int32_t sh = params->stride_h ? params->stride_h : 1, sw = params->stride_w ? params->stride_w : 1;
    int32_t dh = params->dilation_h ? params->dilation_h : 1, dw = params->dilation_w ? params->dilation_w : 1;
    int32_t h = in->height, w = in->width;
    uint32_t w_stride = (uint32_t)kh_n * (uint32_t)kw_n * c_in_g; /* weights per output channel */
    uint32_t ring_pixels = conv_ring_pixels(params, in);
    int32_t *acc = (int32_t *)scratch;
    int16_t *ring = (int16_t *)(void *)(acc + c_out);
    int16_t *res = ring + (size_t)ring_pixels * c_in;
    dqa_window_t win;
    dqa_reader_t res_reader;
    dqa_writer_t writer;
    uint32_t c_res = 0, res_w = 0, res_pos = 0;
    int32_t res_stride = params->residual_stride ? params->residual_stride : 1;
    int32_t res_off = params->residual_channel_offset;
    int32_t oh, ow;

    dqa__window_init(&win, input, ring, ring_pixels);
    if (residual != NULL) {
        dqa_reader_init(&res_reader, residual);
        c_res = residual->info->channels;
        res_w = residual->info->width;
    }
    dqa_writer_init(&writer, output);

    for (oh = 0; oh < (int32_t)out->height; oh++) {
        int32_t top = oh * sh - (int32_t)params->pad_top;
        int32_t bottom = top + (kh_n - 1) * dh;
        for (ow = 0; ow < (int32_t)out->width; ow++) {
            int32_t left = ow * sw - (int32_t)params->pad_left;
            int32_t right = left + (kw_n - 1) * dw;
            int32_t kh, kw;
            uint32_t o;
            dqa__window_advance(&win, top, left, bottom, right);
            for (o = 0; o < c_out; o++) {
                acc[o] = 0;
            }
            for (kh = 0; kh < kh_n; kh++) {
                int32_t ih = top + kh * dh;
                if (ih < 0 || ih >= h) {
                    continue; /* zero padding */
                }
                for (kw = 0; kw < kw_n; kw++) {
                    int32_t iw = left + kw * dw;
                    if (iw < 0 || iw >= w) {
                        continue;
                    }
                    accumulate_tap(acc, params->weights + ((size_t)kh * (uint32_t)kw_n + (uint32_t)kw) * c_in_g,
                                   dqa__window_pixel(&win, (uint32_t)(ih * w + iw)), c_out, c_out_g, c_in_g,
                                   w_stride);
                }
            }
            if (residual != NULL) { /* v_r[oh * s, ow * s, o - k] */
                uint32_t target = ((uint32_t)(oh * res_stride) * res_w + (uint32_t)(ow * res_stride));
                if (target > res_pos) {
                    dqa_skip_pixels(&res_reader, target - res_pos);
                }
                dqa_read_pixel(&res_reader, res);
                res_pos = target + 1u;
            }
            for (o = 0; o < c_out; o++) {
                int64_t x = (int64_t)acc[o] + (params->bias ? params->bias[o] : 0);
                int32_t r = 0;
                if (residual != NULL && rq->residual_multiplier != NULL) {
                    int32_t k = (int32_t)o - res_off;
                    if (k >= 0 && k < (int32_t)c_res) {
                        r = res[k];
                    }
                }
                acc[o] = dqa__requant(dqa__sum(rq, o, x, r), rq->shift[o], rq->out_min[o], rq->out_max[o]);
            }
            dqa_write_pixel(&writer, acc);
        }
    }
    dqa_writer_finish(&writer, status);
}
