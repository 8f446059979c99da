/*
 * Bilinear upsampling by integer factors (docs/spec.md 5.6.1): PyTorch's
 * interpolate(mode="bilinear", align_corners=False) in integers. Along an
 * axis of input size L and factor s, output index o reads
 *   N = max(2o + 1 - s, 0), i0 = N / 2s, f = N % 2s, i1 = min(i0 + 1, L - 1)
 * with weights 2s - f on i0 and f on i1. Per output element and channel:
 *   S = sum of wy * wx * v over the four taps (int32; |S| <= 4 sh sw max|v|)
 *   u = clamp(rshift_round(S * M, T), out_min, out_max)
 *
 * The input is read in index order, a whole row at a time, into a ring of
 * two rows (row q in slot q % 2). An output row needs input rows y0 and
 * y1 <= y0 + 1, and both are nondecreasing in the output row, so once the
 * rows up to y1 are read, y0 is still in the ring. Along each axis, (i0, f)
 * advance by N += 2 per output index, without division.
 *
 * Scratch (4-byte aligned): int32 u[C], int16 ring[min(H, 2) * W * C].
 */
#include "dqa_internal.h"

static uint32_t ring_rows(const dqa_tensor_info_t *input)
{
    return input->height < 2u ? input->height : 2u;
}

size_t dqa_upsample_bilinear_get_buffer_size(const dqa_upsample_params_t *params, const dqa_tensor_info_t *input,
                                             const dqa_tensor_info_t *output)
{
    (void)params;
    return DQA_ALIGN4((size_t)output->channels * sizeof(int32_t) +
                      (size_t)ring_rows(input) * input->width * input->channels * sizeof(int16_t));
}

/* Taps of output index 0 along an axis: N = max(1 - s, 0) is 0 for every s >= 1. */
typedef struct {
    uint32_t i0, f; /* N = i0 * 2s + f */
} axis_pos_t;

/* Steps (i0, f) to the next output index: N grows by 2 once 2o + 1 - s > 0. */
static inline void axis_next(axis_pos_t *p, uint32_t *raw, uint32_t two_s)
{
    /* raw = 2o + 1 (the unclamped N is raw - s); N = max(raw - s, 0) */
    uint32_t s = two_s >> 1;
    uint32_t n_old = *raw > s ? *raw - s : 0u;
    uint32_t n_new;
    *raw += 2u;
    n_new = *raw > s ? *raw - s : 0u;
    p->f += n_new - n_old;
    while (p->f >= two_s) {
        p->f -= two_s;
        p->i0++;
    }
}

void dqa_upsample_bilinear(const dqa_upsample_params_t *params, const dqa_tensor_t *input, dqa_tensor_t *output,
                           void *scratch, dqa_status_t *status)
{
    const dqa_tensor_info_t *in = input->info;
    const dqa_tensor_info_t *out = output->info;
    const dqa_requant_t *rq = &params->requant;
    uint32_t c_n = out->channels, w_in = in->width, h_in = in->height;
    uint32_t two_sh = 2u * (params->scale_h ? params->scale_h : 1u);
    uint32_t two_sw = 2u * (params->scale_w ? params->scale_w : 1u);
    uint32_t rows = ring_rows(in);
    size_t row_values = (size_t)w_in * c_n;
    int32_t *u = (int32_t *)scratch;
    int16_t *ring = (int16_t *)(void *)(u + c_n);
    dqa_reader_t reader;
    dqa_writer_t writer;
    axis_pos_t py = {0u, 0u};
    uint32_t raw_y = 1u, next_row = 0u;
    uint32_t oy, ox, c;

    dqa_reader_init(&reader, input);
    dqa_writer_init(&writer, output);
    for (oy = 0; oy < out->height; oy++) {
        uint32_t y1 = py.i0 + 1u < h_in ? py.i0 + 1u : h_in - 1u;
        int32_t wy0 = (int32_t)(two_sh - py.f), wy1 = (int32_t)py.f;
        const int16_t *r0, *r1;
        axis_pos_t px = {0u, 0u};
        uint32_t raw_x = 1u;
        while (next_row <= y1) { /* the rows up to y1, in index order */
            int16_t *dst = ring + (rows == 2u ? (next_row & 1u) : 0u) * row_values;
            uint32_t x;
            for (x = 0; x < w_in; x++) {
                dqa_read_pixel(&reader, dst + (size_t)x * c_n);
            }
            next_row++;
        }
        r0 = ring + (rows == 2u ? (py.i0 & 1u) : 0u) * row_values;
        r1 = ring + (rows == 2u ? (y1 & 1u) : 0u) * row_values;
        for (ox = 0; ox < out->width; ox++) {
            uint32_t x1 = px.i0 + 1u < w_in ? px.i0 + 1u : w_in - 1u;
            int32_t wx0 = (int32_t)(two_sw - px.f), wx1 = (int32_t)px.f;
            const int16_t *a0 = r0 + (size_t)px.i0 * c_n, *a1 = r0 + (size_t)x1 * c_n;
            const int16_t *b0 = r1 + (size_t)px.i0 * c_n, *b1 = r1 + (size_t)x1 * c_n;
            for (c = 0; c < c_n; c++) {
                int32_t s = wy0 * (wx0 * a0[c] + wx1 * a1[c]) + wy1 * (wx0 * b0[c] + wx1 * b1[c]);
                u[c] = dqa__requant((int64_t)s * rq->multiplier[c], rq->shift[c], rq->out_min[c], rq->out_max[c]);
            }
            dqa_write_pixel(&writer, u);
            axis_next(&px, &raw_x, two_sw);
        }
        axis_next(&py, &raw_y, two_sh);
    }
    dqa_writer_finish(&writer, status);
}
