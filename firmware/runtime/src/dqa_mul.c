/*
 * mul, element-wise multiply (docs/spec.md 5.4.1; squeeze-excite):
 *   u[h, w, o] = clamp(rshift_round(v_x[h, w, o] * v_s[o] * M[o], T[o]), out_min[o], out_max[o])
 * with s of x's shape (read at (h, w): streamed along with x, as dqa_add.c streams its inputs)
 * or a (1, 1, C) vector broadcast over x's pixels (read once, kept in scratch). The spec
 * bounds |v_x * v_s| < 2^24, so the product is an int32 and times M (< 2^31) an int64.
 *
 * Scratch (4-byte aligned): int32 u[C_out], int16 x[C_x], int16 s[C_s].
 */
#include "dqa_internal.h"

size_t dqa_mul_get_buffer_size(const dqa_tensor_info_t *x, const dqa_tensor_info_t *s,
                               const dqa_tensor_info_t *output)
{
    return DQA_ALIGN4((size_t)output->channels * sizeof(int32_t) +
                      ((size_t)x->channels + s->channels) * sizeof(int16_t));
}

void dqa_mul(const dqa_mul_params_t *params, const dqa_tensor_t *x, const dqa_tensor_t *s, dqa_tensor_t *output,
             void *scratch, dqa_status_t *status)
{
    const dqa_tensor_info_t *out = output->info;
    const dqa_requant_t *rq = &params->requant;
    uint32_t c_out = out->channels;
    uint32_t pixels = (uint32_t)out->height * out->width;
    /* a single pixel of s is the broadcast vector (also when x is a single pixel: the same thing) */
    int vector = s->info->height == 1u && s->info->width == 1u;
    int32_t *u = (int32_t *)scratch;
    int16_t *vx = (int16_t *)(void *)(u + c_out);
    int16_t *vs = vx + x->info->channels;
    dqa_reader_t rx, rs;
    dqa_writer_t writer;
    uint32_t i, o;

    dqa_reader_init(&rx, x);
    dqa_reader_init(&rs, s);
    dqa_writer_init(&writer, output);
    if (vector) {
        dqa_read_pixel(&rs, vs);
    }
    for (i = 0; i < pixels; i++) {
        dqa_read_pixel(&rx, vx);
        if (!vector) {
            dqa_read_pixel(&rs, vs);
        }
        for (o = 0; o < c_out; o++) {
            int32_t p = (int32_t)vx[o] * vs[o];
            u[o] = dqa__requant((int64_t)p * rq->multiplier[o], rq->shift[o], rq->out_min[o], rq->out_max[o]);
        }
        dqa_write_pixel(&writer, u);
    }
    dqa_writer_finish(&writer, status);
}
