/*
 * dqa-mcu runtime: helpers shared by the kernels (not part of the public API).
 */
#ifndef DQA_INTERNAL_H
#define DQA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "dqa_runtime.h"

#define DQA_ALIGN4(n) (((size_t)(n) + 3u) & ~(size_t)3u)

/* A *_rows call's end: `end` clamped to the layer's `units`; 0 when the segment round brings the layer
 * nothing new beyond the `done` units (it waits this round). */
static inline int dqa__rows_pending(uint16_t *end, uint32_t units, uint16_t done)
{
    if (*end > units) {
        *end = (uint16_t)units;
    }
    return *end > done;
}

/* One band of a stored tensor, as its reader and writer walk it (spec 2.4): the whole tensor, or the
 * ring row that holds element `start`, at byte `slot` of the plane (and of the stream), whose last
 * DQA_SLOT_N_CODED_BYTES hold the row's n_coded when it has an error stream. */
#define DQA_SLOT_N_CODED_BYTES 4u

typedef struct {
    uint32_t start, end; /* its elements: [start, end) */
    size_t slot;
    uint32_t capacity_bits; /* of its error stream */
} dqa__band_t;

static inline dqa__band_t dqa__band(const dqa_tensor_t *t, uint32_t start)
{
    const uint32_t row = (uint32_t)t->info->width * t->info->channels;
    dqa__band_t band;
    if (t->ring_rows == 0u) {
        band.start = 0;
        band.end = (uint32_t)t->info->height * row;
        band.slot = 0;
        band.capacity_bits = t->info->stream_capacity_bits;
    } else {
        band.start = start;
        band.end = start + row;
        band.slot = (size_t)(start / row % t->ring_rows) * t->slot_bytes;
        band.capacity_bits = t->row_capacity_bits;
    }
    return band;
}

/* Where a ring row's n_coded lies: the last bytes of its slot (whose band starts at `slot`). */
static inline uint8_t *dqa__slot_n_coded(const dqa_tensor_t *t, size_t slot)
{
    return t->plane + slot + t->slot_bytes - DQA_SLOT_N_CODED_BYTES;
}

/* Codes packed or unpacked eight at a time (dqa_reader.c, dqa_writer.c): where a pixel's n-bit codes
 * (n = 2 to 6) start on a byte at plane bit `pos` and its channels are a multiple of eight, each group of
 * eight codes is n whole bytes. */
#define DQA_CODE_GROUP 8u

static inline int dqa__code_groups_fit(uint32_t pos, uint32_t channels, uint32_t n)
{
    return (pos & 7u) == 0u && channels % DQA_CODE_GROUP == 0u && n >= 2u && n <= 6u;
}

/* BODY(N, FLAG) for the given n (2..6) and flag, with N and FLAG constants: one unrolled loop each. */
#define DQA__FOR_CODE_GROUPS(n, flag, BODY)                                                                   \
    switch ((n) * 2u + ((flag) ? 1u : 0u)) {                                                                  \
    case 2u * 2u: BODY(2u, 0) break;                                                                          \
    case 2u * 2u + 1u: BODY(2u, 1) break;                                                                     \
    case 3u * 2u: BODY(3u, 0) break;                                                                          \
    case 3u * 2u + 1u: BODY(3u, 1) break;                                                                     \
    case 4u * 2u: BODY(4u, 0) break;                                                                          \
    case 4u * 2u + 1u: BODY(4u, 1) break;                                                                     \
    case 5u * 2u: BODY(5u, 0) break;                                                                          \
    case 5u * 2u + 1u: BODY(5u, 1) break;                                                                     \
    case 6u * 2u: BODY(6u, 0) break;                                                                          \
    default: BODY(6u, 1) break;                                                                               \
    }

/* Arithmetic (flooring) right shift, defined for negative x in C99 terms. */
static inline int32_t dqa__asr(int32_t x, unsigned s)
{
    return x >= 0 ? (int32_t)((uint32_t)x >> s) : (int32_t) ~(~(uint32_t)x >> s);
}

/* Spec 3 + 4: rshift_round, then saturate to [lo, hi], as rshift_round(x, T) = floor((f + 1) / 2) =
 * f - floor(f / 2) with f = floor(x / 2^(T-1)), in 32 bits. A shift T above 32 (multipliers below about
 * 2^-2, the common case) needs only x's high word h: f = h >> (T - 33). A shift of 2 to 32 (residual
 * sums) takes f from both words; where it does not fit in 32 bits, the result lies beyond +-2^30 and
 * [lo, hi] (storage codes, spec 1) inside, so it is lo or hi by the sign of x. */
static inline int32_t dqa__requant(int64_t x, uint8_t shift, int32_t lo, int32_t hi)
{
    int32_t f, r;
    if (shift > 32u) {
        f = (int32_t)(x >> 32) >> (shift - 33u); /* >> as for x below */
    } else if (shift >= 2u) {
        uint32_t s = shift - 1u, high = (uint32_t)(x >> 32); /* s: 1..31 */
        f = (int32_t)(((uint32_t)x >> s) | (high << (32u - s)));
        if ((high ^ (f < 0 ? UINT32_MAX : 0u)) >> s) { /* high's bits s.. are not all f's sign: x >> s leaves int32 */
            return x < 0 ? lo : hi;
        }
    } else {
        if (shift) {
            x = (x + 1) >> 1;
        }
        return x < lo ? lo : (x > hi ? hi : (int32_t)x);
    }
    r = f - (f >> 1);
    return r < lo ? lo : (r > hi ? hi : r);
}

/* Spec 4-5: t = x * M[o] + second * R[o] in 64 bits (second = 0 without a second input);
 * with leaky_relu, a negative t is the same sum with the negative-side multipliers. */
static inline int64_t dqa__sum(const dqa_requant_t *rq, uint32_t o, int64_t x, int32_t second)
{
    int64_t t = x * rq->multiplier[o];
    if (second != 0) {
        t += (int64_t)second * rq->residual_multiplier[o];
    }
    if (t < 0 && rq->negative_multiplier != NULL) {
        t = x * rq->negative_multiplier[o];
        if (second != 0) {
            t += (int64_t)second * rq->negative_residual_multiplier[o];
        }
    }
    return t;
}

/* Copy ops (maxpool, concat, upsample): storage value of fine value v for
 * output channel c (spec 5.5, 5.6). */
static inline int32_t dqa__fine_to_storage(const dqa_tensor_info_t *out, uint16_t c, int32_t v)
{
    if (out->extra_bits == 0 || (out->important != NULL && out->important[c])) {
        return v;
    }
    return dqa__asr(v, out->extra_bits);
}

/* Pixels a window of kernel (kh, kw) with dilation (dh, dw) needs over an
 * input of (h, w): (kh-1)*dh*w + min((kw-1)*dw, w-1) + 1, at most h*w. */
uint32_t dqa__window_ring_pixels(uint16_t h, uint16_t w, uint16_t kh, uint16_t kw, uint16_t dh, uint16_t dw);

void dqa__window_init(dqa_window_t *win, const dqa_tensor_t *input, int16_t *ring, uint32_t ring_pixels);

/* Window of the output position whose top-left tap is input (top, left):
 * skips pixels no later window needs and reads every pixel up to the
 * window's last valid one into the ring. */
void dqa__window_advance(dqa_window_t *win, int32_t top, int32_t left, int32_t bottom, int32_t right);

/* Values of pixel q (must be one of the last ring_pixels pixels read). */
static inline const int16_t *dqa__window_pixel(const dqa_window_t *win, uint32_t q)
{
    return win->ring + (size_t)(q % win->ring_pixels) * win->channels;
}

/* Ring pixels of avgpool/maxpool: 1 for a single output position (streamed). */
uint32_t dqa__pool_ring_pixels(const dqa_pool_params_t *params, const dqa_tensor_info_t *input,
                               const dqa_tensor_info_t *output);
/* The window traversal of avgpool (is_max = 0) and maxpool (is_max = 1). */
void dqa__pool(const dqa_pool_params_t *params, const dqa_tensor_t *input, dqa_tensor_t *output, void *scratch,
               dqa_status_t *status, int is_max);

#endif /* DQA_INTERNAL_H */
