/*
 * Sequential tensor writer (docs/spec.md sections 2.1-2.3): takes
 * storage-domain values u pixel by pixel, packs the codes hi into the code
 * plane and Huffman codes the errors e of important channels into the
 * bounded error stream.
 *
 * Buffers need not be cleared beforehand: bits are written in order, so the
 * first write into a byte always starts at its bit 0 and assigns the byte
 * (which also leaves the unused high bits of the last byte 0). A row-streamed
 * tensor (spec 2.4) is written band by band: each row into its ring slot,
 * with a stream of its own whose n_coded is stored as soon as the row is full.
 */
#include <string.h>

#include "dqa_internal.h"

/* Puts `bits` (count <= 8 bits, higher bits 0) at stream bit `pos`, LSB-first. */
static inline void put_bits(uint8_t *buf, uint32_t pos, uint32_t bits, uint32_t count)
{
    uint32_t byte = pos >> 3, off = pos & 7u;
    uint32_t x = bits << off;
    if (off) {
        buf[byte] = (uint8_t)(buf[byte] | (uint8_t)x);
    } else {
        buf[byte] = (uint8_t)x;
    }
    if (off + count > 8u) {
        buf[byte + 1u] = (uint8_t)(x >> 8);
    }
}

/* LSB-first bit sink over a buffer from stream bit `pos` on, one byte stored as it fills. The
 * partial byte at pos holds only earlier bits (its high bits are 0, see above), so it is read back. */
typedef struct {
    uint8_t *byte;
    uint32_t bits;  /* pending bits, low `count` bits valid, higher bits 0 */
    uint32_t count; /* < 8 between calls */
} bit_sink_t;

static inline void sink_open(bit_sink_t *s, uint8_t *buf, uint32_t pos)
{
    s->byte = buf + (pos >> 3);
    s->count = pos & 7u;
    s->bits = s->count ? *s->byte : 0u;
}

/* Appends `count` <= 8 bits (higher bits of `bits` 0). */
static inline void sink_put(bit_sink_t *s, uint32_t bits, uint32_t count)
{
    s->bits |= bits << s->count;
    s->count += count;
    if (s->count >= 8u) {
        *s->byte++ = (uint8_t)s->bits;
        s->bits >>= 8;
        s->count -= 8u;
    }
}

/* Stores the partial last byte (read back by the next sink_open). */
static inline void sink_close(bit_sink_t *s)
{
    if (s->count) {
        *s->byte = (uint8_t)s->bits;
    }
}

/* Bit reversal of a nibble. */
static const uint8_t rev4[16] = {0x0, 0x8, 0x4, 0xC, 0x2, 0xA, 0x6, 0xE, 0x1, 0x9, 0x5, 0xD, 0x3, 0xB, 0x7, 0xF};

/* Without huffman_codes: the code of error symbol e in stream order (its
 * first bit in bit 0) and its length, from the decode table. The entries of e
 * are rev | fill << length, so the first one is at index rev itself. */
static uint32_t code_from_table(const uint8_t *table, uint32_t e, uint32_t *length)
{
    uint32_t p;
    for (p = 0; p < (1u << DQA_HUFFMAN_TABLE_BITS); p++) {
        uint32_t entry = table[p];
        if ((entry & 0xFu) == e && (entry >> 4) != 0u) {
            *length = entry >> 4;
            return p;
        }
    }
    *length = 0; /* no code: cannot be written */
    return 0;
}

/* Slow path (codes from the decode table): codes error symbol e, or closes the
 * stream when its code does not fit (spec 2.3). */
static void put_error(dqa_writer_t *w, const dqa_tensor_info_t *info, uint32_t e)
{
    uint32_t length;
    uint32_t rev;
    if (w->closed) {
        return;
    }
    if (w->stream == NULL || info->huffman_table == NULL) {
        w->closed = 1; /* nowhere to code errors: as with capacity 0 */
        return;
    }
    rev = code_from_table(info->huffman_table, e, &length);
    if (length == 0u || length > w->capacity_bits - w->bit) {
        w->closed = 1; /* this and all later symbols of the band are not coded */
        return;
    }
    put_bits(w->stream, w->bit, rev, length);
    w->bit += length;
    w->symbol++;
}

/* Starts the band whose first element is `start` (the whole tensor, or a ring row). */
static void begin_band(dqa_writer_t *w, uint32_t start)
{
    dqa_tensor_t *t = w->tensor;
    const dqa__band_t band = dqa__band(t, start);
    w->symbol = 0;
    w->bit = 0;
    w->closed = 0;
    w->band_start = band.start;
    w->band_end = band.end;
    w->plane = t->plane + band.slot;
    w->stream = t->stream != NULL ? t->stream + band.slot : NULL;
    w->capacity_bits = band.capacity_bits;
}

/* Records the full band's n_coded where its readers find it. */
static void end_band(dqa_writer_t *w)
{
    dqa_tensor_t *t = w->tensor;
    if (t->ring_rows == 0u) {
        t->n_coded = w->symbol;
    } else if (t->stream != NULL) { /* a slot without an error stream has no n_coded either */
        memcpy(dqa__slot_n_coded(t, (size_t)(w->plane - t->plane)), &w->symbol, sizeof w->symbol); /* no aliasing */
    }
    w->overflowed = (uint8_t)(w->overflowed | w->closed);
}

void dqa_writer_init(dqa_writer_t *writer, dqa_tensor_t *tensor)
{
    const dqa_tensor_info_t *info = tensor->info;
    writer->tensor = tensor;
    writer->element = 0;
    writer->band_end = 0; /* the first write begins the first band */
    writer->overflowed = 0;
    if (info->huffman_codes != NULL && info->huffman_lengths != NULL && info->extra_bits <= DQA_MAX_EXTRA_BITS) {
        uint32_t e;
        for (e = 0; e < (1u << info->extra_bits); e++) { /* most significant bit first, in stream order */
            uint32_t code = info->huffman_codes[e], len = info->huffman_lengths[e];
            writer->stream_codes[e] =
                (uint8_t)((((uint32_t)rev4[code & 0xFu] << 4) | rev4[(code >> 4) & 0xFu]) >> (8u - len));
        }
    }
}

/* The important channels' errors e = u mod 2^m of one pixel, Huffman coded into the band's stream until a
 * code does not fit (spec 2.3: that and all later symbols of the band are not coded). A pass of its own,
 * apart from the codes (in one loop the codes' and the stream's state spill on Cortex-M), and out of line
 * (inlined into put_pixel, GCC 12 spills three of its loop's values there). */
__attribute__((noinline)) static void put_errors(dqa_writer_t *writer, const uint8_t *imp, const int32_t *u,
                                                 uint32_t channels)
{
    const dqa_tensor_info_t *info = writer->tensor->info;
    const uint8_t *lengths = info->huffman_lengths;
    uint32_t cap = writer->capacity_bits, bit = writer->bit, symbol = writer->symbol, c;
    uint32_t e_mask = (1u << info->extra_bits) - 1u;
    bit_sink_t errors;
    if (writer->closed || writer->stream == NULL || info->huffman_table == NULL) {
        writer->closed = 1;
        return;
    }
    sink_open(&errors, writer->stream, bit);
    for (c = 0; c < channels; c++) {
        if (imp[c]) {
            uint32_t e = (uint32_t)u[c] & e_mask;
            uint32_t len = lengths[e];
            if (len == 0u || len > cap - bit) {
                writer->closed = 1;
                break;
            }
            sink_put(&errors, writer->stream_codes[e], len);
            bit += len;
            symbol++;
        }
    }
    if (bit != writer->bit) {
        sink_close(&errors);
    }
    writer->bit = bit;
    writer->symbol = symbol;
}

/* Eight N-bit codes into the N bytes at p (LSB-first): u, or u >> m for an important channel (its low N
 * bits are those of the arithmetic shift's); bytes 0..3 from `low`, 4.. from `high`. N and IMPORTANT
 * (whether any channel is) are constants at every call: each code is then a shift and a bit-field insert,
 * or two where it straddles the words (the loops unrolled). */
static inline __attribute__((always_inline)) void pack_group(uint8_t *p, const int32_t *u, const uint8_t *imp,
                                                             const uint32_t N, const int IMPORTANT, uint32_t m)
{
    uint32_t low = 0, high = 0, j;
    _Pragma("GCC unroll 8")
    for (j = 0; j < DQA_CODE_GROUP; j++) {
        const uint32_t at = j * N, shift = IMPORTANT && imp[j] ? m : 0u;
        const uint32_t code = ((uint32_t)u[j] >> shift) & ((1u << N) - 1u);
        if (at >= 32u) {
            high |= code << (at - 32u);
        } else {
            low |= code << at;
            if (at + N > 32u) {
                high |= code >> (32u - at);
            }
        }
    }
    _Pragma("GCC unroll 8")
    for (j = 0; j < N; j++) {
        p[j] = (uint8_t)(j < 4u ? low >> (8u * j) : high >> (8u * (j - 4u)));
    }
}

/* A pixel's codes from plane bit `pos`, eight at a time where they are groups of whole bytes
 * (dqa__code_groups_fit()); 0 (nothing written) elsewhere. */
static int pack_groups(uint8_t *plane, uint32_t pos, const int32_t *u, uint32_t channels, uint32_t n,
                       const uint8_t *imp, uint32_t m)
{
    uint8_t *p = plane + (pos >> 3);
    uint32_t c;
    if (!dqa__code_groups_fit(pos, channels, n)) {
        return 0;
    }
#define PACK_GROUPS(N, IMPORTANT)                                                                             \
    for (c = 0; c < channels; c += DQA_CODE_GROUP, p += (N)) {                                                \
        pack_group(p, u + c, (IMPORTANT) ? imp + c : NULL, (N), (IMPORTANT), m); /* no offset on NULL */      \
    }
    DQA__FOR_CODE_GROUPS(n, imp != NULL, PACK_GROUPS)
#undef PACK_GROUPS
    return 1;
}

/* One pixel into the current band. */
static inline void put_pixel(dqa_writer_t *writer, const int32_t *u)
{
    const dqa_tensor_info_t *info = writer->tensor->info;
    uint32_t channels = info->channels;
    uint32_t n = info->bits;
    uint32_t m = info->extra_bits;
    const uint8_t *imp = m ? info->important : NULL;
    uint32_t mask = (1u << n) - 1u;
    uint8_t *plane = writer->plane;
    uint32_t i = writer->element - writer->band_start;
    uint32_t pos = i * n;
    uint32_t c;
    writer->element += channels;

    if (n == 16) { /* graph output: little-endian int16 */
        uint8_t *p = plane + 2u * i;
        for (c = 0; c < channels; c++) {
            p[2u * c] = (uint8_t)u[c];
            p[2u * c + 1u] = (uint8_t)((uint32_t)u[c] >> 8);
        }
        return;
    }
    if (imp == NULL && n == 8u) { /* one whole byte per code */
        uint8_t *p = plane + i;
        for (c = 0; c < channels; c++) {
            p[c] = (uint8_t)u[c];
        }
        return;
    }
    if (imp != NULL && (info->huffman_codes == NULL || info->huffman_lengths == NULL)) {
        for (c = 0; c < channels; c++, pos += n) { /* codes derived from the decode table */
            int32_t x = u[c];
            if (imp[c]) {
                put_error(writer, info, (uint32_t)x & ((1u << m) - 1u));
                x = dqa__asr(x, m);
            }
            put_bits(plane, pos, (uint32_t)x & mask, n);
        }
        return;
    }
    if (imp != NULL) {
        put_errors(writer, imp, u, channels);
    }
    if (!pack_groups(plane, pos, u, channels, n, imp, m)) {
        bit_sink_t codes;
        sink_open(&codes, plane, pos);
        for (c = 0; c < channels; c++) {
            uint32_t shift = imp != NULL && imp[c] ? m : 0u; /* an important channel's code: u >> m */
            sink_put(&codes, ((uint32_t)u[c] >> shift) & mask, n);
        }
        sink_close(&codes);
    }
}

void dqa_write_pixel(dqa_writer_t *writer, const int32_t *u)
{
    if (writer->element == writer->band_end) {
        begin_band(writer, writer->element);
    }
    put_pixel(writer, u);
    if (writer->element == writer->band_end) {
        end_band(writer);
    }
}

void dqa_writer_finish(dqa_writer_t *writer, dqa_status_t *status)
{
    if (writer->overflowed && status != NULL) {
        status->overflowed_tensors++;
    }
}
