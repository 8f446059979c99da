/*
 * Sliding input window shared by conv2d and pooling: a ring of the most
 * recent input pixels, filled by reading the input in index order.
 *
 * Why the ring is large enough: output positions are visited in index
 * order. The window of output (oh, ow) covers input rows [top, bottom] and
 * columns [left, right]; `advance` reads up to its last valid pixel
 * L = min(bottom, H-1) * W + min(right, W-1). Any pixel q the window needs
 * has q >= top * W + max(left, 0), and every pixel read so far is <= L or,
 * if read for an earlier output row, <= bottom * W - 1. So the distance from
 * q to the newest pixel is at most (KH-1)*dh*W + min((KW-1)*dw, W-1), and a
 * ring of that many pixels plus one still holds q.
 * Pixels before top * W + max(left, 0) are not needed by this or any later
 * window (later windows start further right or lower) and are skipped.
 */
#include "dqa_internal.h"

uint32_t dqa__window_ring_pixels(uint16_t h, uint16_t w, uint16_t kh, uint16_t kw, uint16_t dh, uint16_t dw)
{
    uint32_t across = (uint32_t)(kw ? kw - 1u : 0u) * dw;
    uint32_t ring;
    if (w == 0u || h == 0u) {
        return 1u;
    }
    if (across > w - 1u) {
        across = w - 1u;
    }
    ring = (uint32_t)(kh ? kh - 1u : 0u) * dh * w + across + 1u;
    return ring < (uint32_t)h * w ? ring : (uint32_t)h * w;
}

void dqa__window_init(dqa_window_t *win, const dqa_tensor_t *input, int16_t *ring, uint32_t ring_pixels)
{
    const dqa_tensor_info_t *info = input->info;
    dqa_reader_init(&win->reader, input);
    win->ring = ring;
    win->ring_pixels = ring_pixels ? ring_pixels : 1u;
    win->next = 0;
    win->channels = info->channels;
}

void dqa__window_advance(dqa_window_t *win, int32_t top, int32_t left, int32_t bottom, int32_t right)
{
    int32_t h = (int32_t)win->reader.tensor->info->height;
    int32_t w = (int32_t)win->reader.tensor->info->width;
    int32_t last_row = bottom < h - 1 ? bottom : h - 1;
    int32_t last_col = right < w - 1 ? right : w - 1;
    int32_t keep_col = left < 0 ? 0 : (left > w ? w : left);
    int32_t last, keep;
    if (last_row < 0 || top >= h) {
        return; /* the window lies entirely in the padding */
    }
    last = last_row * w + last_col; /* may be < 0: nothing needed yet */
    keep = top * w + keep_col;
    if (last < 0) {
        return;
    }
    /* skip what no window from here on needs */
    if ((int32_t)win->next < keep && (int32_t)win->next <= last) {
        uint32_t to = (uint32_t)(keep < last + 1 ? keep : last + 1);
        dqa_skip_pixels(&win->reader, to - win->next);
        win->next = to;
    }
    while ((int32_t)win->next <= last) {
        dqa_read_pixel(&win->reader, win->ring + (size_t)(win->next % win->ring_pixels) * win->channels);
        win->next++;
    }
}
