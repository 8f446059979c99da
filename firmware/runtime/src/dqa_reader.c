/*
 * Sequential tensor reader (docs/spec.md sections 1, 2, 5.1): yields
 * fine-domain values v pixel by pixel, decoding the code plane and, for
 * important channels, the Huffman coded error stream.
 *
 * Bounds: plane bytes are read only where a code has bits; stream bytes only
 * below ceil(capacity / 8) (bytes the producer can have written; the buffer
 * is at least capacity/8 + 1 bytes long), later peeked bits read as 0; and
 * symbol j is decoded only when j < n_coded. A row-streamed tensor (spec 2.4)
 * is read the same way, row by row: each row is a band with its own plane
 * bits, error stream and n_coded, found in its ring slot when reached.
 */
#include <string.h>

#include "dqa_internal.h"

/* Error stream state for decoding (a band without a usable stream codes nothing). */
typedef struct {
    const uint8_t *stream;
    const uint8_t *table;
    uint32_t nbytes;
    uint32_t n_coded;
} stream_t;

static void stream_of(const dqa_reader_t *r, stream_t *s)
{
    s->stream = r->stream;
    s->table = r->tensor->info->huffman_table;
    s->nbytes = r->stream_bytes;
    s->n_coded = (r->stream != NULL && s->table != NULL) ? r->n_coded : 0u;
}

/* Table entry (length << 4 | symbol) of the code starting at stream bit `bit`. */
static inline uint32_t peek_entry(const stream_t *s, uint32_t bit)
{
    uint32_t byte = bit >> 3;
    uint32_t window;
    if (byte + 1u < s->nbytes) {
        window = (uint32_t)s->stream[byte] | ((uint32_t)s->stream[byte + 1u] << 8);
    } else {
        window = byte < s->nbytes ? s->stream[byte] : 0u;
    }
    return s->table[(window >> (bit & 7u)) & 0xFFu];
}

/* LSB-first source of codes from the plane: a byte is read once, when its first bit is taken (so only
 * bytes where a code has bits). */
typedef struct {
    const uint8_t *byte; /* the next byte to take bits from */
    uint32_t bits;       /* pending bits, the low `count` valid, higher ones 0 */
    uint32_t count;
} code_source_t;

static inline void codes_open(code_source_t *s, const uint8_t *plane, uint32_t pos)
{
    uint32_t off = pos & 7u;
    s->byte = plane + (pos >> 3);
    s->bits = 0;
    s->count = 0;
    if (off) { /* the code at pos has bits in this byte */
        s->bits = (uint32_t)*s->byte++ >> off;
        s->count = 8u - off;
    }
}

/* The next n <= 8 bits (mask = 2^n - 1). */
static inline uint32_t codes_take(code_source_t *s, uint32_t n, uint32_t mask)
{
    uint32_t raw;
    if (s->count < n) {
        s->bits |= (uint32_t)*s->byte++ << s->count;
        s->count += 8u;
    }
    raw = s->bits & mask;
    s->bits >>= n;
    s->count -= n;
    return raw;
}

/* Starts the band whose first element is `start`: the whole tensor, or a ring row (spec 2.4). */
static void enter_band(dqa_reader_t *r, uint32_t start)
{
    const dqa_tensor_t *t = r->tensor;
    const dqa__band_t band = dqa__band(t, start);
    r->element = start;
    r->symbol = 0;
    r->bit = 0;
    r->band_start = band.start;
    r->band_end = band.end;
    r->plane = t->plane + band.slot;
    r->stream = t->stream != NULL ? t->stream + band.slot : NULL;
    r->stream_bytes = (band.capacity_bits + 7u) >> 3;
    r->n_coded = t->ring_rows == 0u ? t->n_coded : 0u;
    if (t->ring_rows != 0u && t->stream != NULL) { /* a slot without an error stream has no n_coded */
        memcpy(&r->n_coded, dqa__slot_n_coded(t, band.slot), sizeof r->n_coded); /* no aliasing */
    }
}

/* Eight N-bit codes from the N bytes at p (LSB-first) as fine values code * unit: bytes 0..3 in `low`,
 * 4.. in `high`. N and SIGNED are constants at every call: each code is then one bit-field extract, or
 * two words' bits joined where it straddles them (the loops unrolled). */
static inline __attribute__((always_inline)) void unpack_group(const uint8_t *p, int16_t *v, const uint32_t N,
                                                               const int SIGNED, int32_t unit)
{
    uint32_t low = 0, high = 0, j;
    _Pragma("GCC unroll 8")
    for (j = 0; j < N; j++) {
        if (j < 4u) {
            low |= (uint32_t)p[j] << (8u * j);
        } else {
            high |= (uint32_t)p[j] << (8u * (j - 4u));
        }
    }
    _Pragma("GCC unroll 8")
    for (j = 0; j < DQA_CODE_GROUP; j++) {
        const uint32_t at = j * N, sign = SIGNED ? 1u << (N - 1u) : 0u;
        uint32_t raw = at >= 32u ? high >> (at - 32u) : low >> at;
        if (at < 32u && at + N > 32u) {
            raw |= high << (32u - at);
        }
        raw &= (1u << N) - 1u;
        v[j] = (int16_t)((int32_t)((raw ^ sign) - sign) * unit);
    }
}

/* The codes of a pixel's `channels` values from plane bit `pos` as code * unit, eight at a time where they
 * are groups of whole bytes (dqa__code_groups_fit()); 0 (nothing read) elsewhere. */
static int unpack_groups(const uint8_t *plane, uint32_t pos, int16_t *v, uint32_t channels, uint32_t n,
                         uint8_t is_signed, int32_t unit)
{
    const uint8_t *p = plane + (pos >> 3);
    const int16_t *end = v + channels;
    if (!dqa__code_groups_fit(pos, channels, n)) {
        return 0;
    }
#define UNPACK_GROUPS(N, SIGNED)                                                                              \
    for (; v != end; v += DQA_CODE_GROUP, p += (N)) {                                                        \
        unpack_group(p, v, (N), (SIGNED), unit);                                                              \
    }
    DQA__FOR_CODE_GROUPS(n, is_signed, UNPACK_GROUPS)
#undef UNPACK_GROUPS
    return 1;
}

/* The important channels' errors (Huffman decoded) added to the pixel's v = code * 2^m: a pass of its own
 * over the pixel, apart from the codes (in one loop the codes' and the stream's state spill on Cortex-M). */
static void add_errors(dqa_reader_t *reader, const uint8_t *imp, int16_t *v, uint32_t channels, int32_t unit)
{
    stream_t s;
    uint32_t bit = reader->bit, symbol = reader->symbol, c;
    int32_t half = unit >> 1, e_mask = unit - 1;
    stream_of(reader, &s);
    for (c = 0; c < channels; c++) {
        if (imp[c]) {
            int32_t e = half; /* not coded: middle of the lost range (spec 2.3) */
            if (symbol < s.n_coded) {
                uint32_t entry = peek_entry(&s, bit);
                bit += entry >> 4;
                e = (int32_t)(entry & 0xFu) & e_mask;
            }
            v[c] = (int16_t)(v[c] + e);
            symbol++;
        }
    }
    reader->bit = bit;
    reader->symbol = symbol;
}

void dqa_reader_init(dqa_reader_t *reader, const dqa_tensor_t *tensor)
{
    reader->tensor = tensor;
    reader->element = 0;
    reader->band_end = 0; /* the first read enters the first band */
}

void dqa_read_pixel(dqa_reader_t *reader, int16_t *v)
{
    const dqa_tensor_info_t *info = reader->tensor->info;
    uint32_t channels = info->channels;
    uint32_t i, n = info->bits, m = info->extra_bits, c;
    const uint8_t *imp = m ? info->important : NULL; /* channels with Huffman-coded errors */
    const uint8_t *plane;
    if (reader->element == reader->band_end) {
        enter_band(reader, reader->element);
    }
    plane = reader->plane;
    i = reader->element - reader->band_start;
    reader->element += channels;

    if (info->lut != NULL) { /* input stage: uint8 pixels through the table */
        const uint8_t *p = plane + i;
        for (c = 0; c < channels; c++) {
            v[c] = info->lut[(c << 8) + p[c]];
        }
        return;
    }
    if (n == 16) { /* graph output: little-endian int16 */
        const uint8_t *p = plane + 2u * i;
        for (c = 0; c < channels; c++) {
            v[c] = (int16_t)(uint16_t)((uint32_t)p[2u * c] | ((uint32_t)p[2u * c + 1u] << 8));
        }
        return;
    }
    if (n == 8u && imp == NULL) { /* one whole byte per code, no errors */
        const uint8_t *p = plane + i;
        if (info->is_signed) {
            for (c = 0; c < channels; c++) {
                v[c] = (int16_t)((int32_t)(int8_t)p[c] * ((int32_t)1 << m));
            }
        } else {
            for (c = 0; c < channels; c++) {
                v[c] = (int16_t)((int32_t)p[c] << m);
            }
        }
        return;
    }
    {
        int32_t unit = (int32_t)1 << m;
        if (!unpack_groups(plane, i * n, v, channels, n, info->is_signed, unit)) {
            uint32_t mask = (1u << n) - 1u;
            uint32_t sign = info->is_signed ? 1u << (n - 1u) : 0u; /* (raw ^ sign) - sign sign-extends */
            code_source_t codes;
            codes_open(&codes, plane, i * n);
            for (c = 0; c < channels; c++) {
                uint32_t raw = codes_take(&codes, n, mask);
                v[c] = (int16_t)((int32_t)((raw ^ sign) - sign) * unit);
            }
        }
        if (imp != NULL) {
            add_errors(reader, imp, v, channels, unit);
        }
    }
}

void dqa_skip_pixels(dqa_reader_t *reader, uint32_t pixels)
{
    const dqa_tensor_t *t = reader->tensor;
    const dqa_tensor_info_t *info = t->info;
    uint32_t channels = info->channels;
    uint32_t target = reader->element + pixels * channels;
    uint32_t per_pixel = 0, c, end, coded_end, bit, j;
    stream_t s;
    if (pixels == 0u) {
        return;
    }
    if (reader->element == reader->band_end || target > reader->band_end) { /* a later band */
        uint32_t start = t->ring_rows ? target - target % ((uint32_t)info->width * channels) : 0u;
        if (start == target) { /* a ring row's start: entered when read */
            reader->element = target;
            reader->band_end = target;
            return;
        }
        enter_band(reader, start);
    }
    pixels = (target - reader->element) / channels;
    reader->element = target;
    if (info->extra_bits == 0 || info->important == NULL || info->lut != NULL) {
        return;
    }
    for (c = 0; c < channels; c++) {
        per_pixel += info->important[c] != 0;
    }
    stream_of(reader, &s);
    end = reader->symbol + per_pixel * pixels;
    coded_end = s.n_coded < end ? s.n_coded : end;
    bit = reader->bit;
    for (j = reader->symbol; j < coded_end; j++) {
        bit += peek_entry(&s, bit) >> 4;
    }
    reader->bit = bit;
    reader->symbol = end;
}
