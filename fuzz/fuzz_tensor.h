/*
 * Shared by the code-plane / Huffman fuzz targets: a stored DQA tensor built from fuzz input, every
 * buffer malloc'ed at exactly the size the generated code gives it (docs/spec.md 2), so
 * AddressSanitizer reports any access outside one.
 *
 * Input layout (fuzz/seeds.py writes seeds in it from a real export's tensors):
 *   0  height - 1 (mod 64)      1  width - 1 (mod 64)      2  channels - 1 (mod 64)
 *   3  n: {2, 3, 4, 5, 6, 7, 8, 16}[byte % 8]              4  m: byte % 5 (0 for n = 16 or a LUT)
 *   5  flags (FLAG_*)
 *   6..13   important channels, bit c of these 8 bytes
 *   14..17  stream capacity in bits, little-endian (mod 2^20)
 *   18..21  n_coded, little-endian: any value, as a corrupted RAM word would be
 *   22..37  code lengths of the 2^m error symbols; when they are not a complete prefix code of
 *           lengths 1..8, they choose the leaves to split in growing one
 *   38      ring rows (byte % 16): 0 a whole tensor, else a row-streamed one (spec 2.4) of that many
 *           slots, fewer or more than the rows (a ring never needs more; wider ones only slow the run)
 *   39      ring slot slack: byte % 8 words of 4 bytes past what the row needs
 *   40..43  a ring row's stream capacity in bits, little-endian (mod 2^14)
 *   44..    the payload (the target's own)
 *
 * A ring is one buffer of ring_rows slots of slot_bytes, each as planner.ring_slot lays it out: the
 * row's codes, from the next 4-byte boundary its error stream (capacity + 1 look-ahead byte, rounded
 * to 4), then the slot's last 4 bytes, its n_coded word, whatever bytes the payload puts there.
 */
#ifndef DQA_FUZZ_TENSOR_H
#define DQA_FUZZ_TENSOR_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dqa_runtime.h"

#define FUZZ_HEADER_BYTES 44u

enum {
    FLAG_SIGNED = 1,
    FLAG_LUT = 2,         /* the input stage: uint8 pixels through a per-channel table */
    FLAG_CODES = 4,       /* the writer gets huffman_codes / huffman_lengths (else the table only) */
    FLAG_RAW_TABLE = 8,   /* the decode table is 256 payload bytes, not built from the code */
    FLAG_NO_STREAM = 16   /* no stream buffer although channels are important */
};

typedef struct {
    dqa_tensor_info_t info;
    dqa_tensor_t tensor;
    uint8_t important[64];
    uint8_t table[1u << DQA_HUFFMAN_TABLE_BITS];
    uint8_t codes[1u << DQA_MAX_EXTRA_BITS];
    uint8_t lengths[1u << DQA_MAX_EXTRA_BITS];
    int8_t *lut;
    size_t plane_bytes, stream_bytes; /* a ring: plane_bytes the whole ring, stream_bytes 0 */
    size_t ring_stream_offset;        /* a ring with error streams: from a slot's start */
    uint8_t flags;
} fuzz_tensor_t;

static uint32_t fuzz_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}

/* A fresh buffer of exactly n bytes (at least one, so a pointer exists), filled from src. */
static uint8_t *fuzz_buffer(size_t n, const uint8_t **src, size_t *left)
{
    uint8_t *p = malloc(n ? n : 1u);
    size_t i;
    if (p == NULL) {
        abort();
    }
    for (i = 0; i < n; i++) {
        p[i] = *left ? (--*left, *(*src)++) : (uint8_t)0xA5u;
    }
    return p;
}

/* Lengths of a complete prefix code over `symbols` symbols, at most 8 bits: the given ones when they
 * are one, else a code tree grown by splitting, at each step, the leaf the next byte chooses. */
static void fuzz_code_lengths(const uint8_t *given, uint32_t symbols, uint8_t *lengths)
{
    uint32_t kraft = 0, s, leaves = 1;
    for (s = 0; s < symbols; s++) {
        kraft += (given[s] >= 1u && given[s] <= 8u) ? 256u >> given[s] : 512u;
    }
    if (kraft == 256u) {
        memcpy(lengths, given, symbols);
        return;
    }
    lengths[0] = 0;
    for (s = 0; leaves < symbols; s++) {
        uint32_t pick = given[s % 16u] % leaves, tries;
        for (tries = 0; lengths[pick] >= 8u && tries < leaves; tries++) {
            pick = (pick + 1u) % leaves;
        }
        lengths[pick]++;
        lengths[leaves++] = lengths[pick];
    }
    if (symbols == 1u) {
        lengths[0] = 1;
    }
}

/* Canonical codes and the decode table of spec 2.2, as dqa_mcu/huffman.py builds them. */
static void fuzz_build_code(fuzz_tensor_t *f, uint32_t symbols)
{
    uint32_t order[16], s, i, code = 0, previous = 0;
    for (s = 0; s < symbols; s++) {
        order[s] = s;
    }
    for (s = 1; s < symbols; s++) { /* insertion sort by (length, symbol) */
        for (i = s; i > 0 && f->lengths[order[i - 1u]] > f->lengths[order[i]]; i--) {
            uint32_t t = order[i];
            order[i] = order[i - 1u];
            order[i - 1u] = t;
        }
    }
    for (s = 0; s < symbols; s++) {
        uint32_t sym = order[s], length = f->lengths[sym], reversed = 0, b, fill;
        if (s) {
            code = (code + 1u) << (length - previous);
        }
        previous = length;
        f->codes[sym] = (uint8_t)code;
        for (b = 0; b < length; b++) {
            reversed |= ((code >> (length - 1u - b)) & 1u) << b;
        }
        for (fill = 0; fill < (1u << (8u - length)); fill++) {
            f->table[reversed | (fill << length)] = (uint8_t)((length << 4) | sym);
        }
    }
}

static uint32_t align4(size_t n)
{
    return (uint32_t)((n + 3u) & ~(size_t)3u);
}

/* Code bytes of `rows` rows (spec 2.1; the graph output: int16). */
static size_t plane_bytes(const dqa_tensor_info_t *info, uint32_t rows)
{
    size_t elements = (size_t)rows * info->width * info->channels;
    return info->bits == 16u ? 2u * elements : (elements * info->bits + 7u) / 8u;
}

/* Parses the header into f (buffers not yet allocated); 0 when the input is too short. */
static int fuzz_tensor_parse(fuzz_tensor_t *f, const uint8_t *data, size_t size)
{
    static const uint8_t bit_choices[8] = {2, 3, 4, 5, 6, 7, 8, 16};
    dqa_tensor_info_t *info = &f->info;
    uint32_t c, symbols;
    if (size < FUZZ_HEADER_BYTES) {
        return 0;
    }
    memset(f, 0, sizeof *f);
    f->flags = data[5];
    info->height = (uint16_t)(1u + data[0] % 64u);
    info->width = (uint16_t)(1u + data[1] % 64u);
    info->channels = (uint16_t)(1u + data[2] % 64u);
    info->bits = bit_choices[data[3] % 8u];
    info->extra_bits = (uint8_t)(data[4] % 5u);
    info->is_signed = (uint8_t)(f->flags & FLAG_SIGNED);
    if (f->flags & FLAG_LUT) {
        info->bits = 8;
        info->is_signed = 0;
    }
    if (info->bits == 16u || (f->flags & FLAG_LUT)) {
        info->extra_bits = 0;
    }
    for (c = 0; c < info->channels; c++) {
        f->important[c] = (uint8_t)((data[6u + c / 8u] >> (c % 8u)) & 1u);
    }
    info->stream_capacity_bits = fuzz_le32(data + 14) % (1u << 20);
    f->tensor.n_coded = fuzz_le32(data + 18);
    symbols = 1u << info->extra_bits;
    fuzz_code_lengths(data + 22, symbols, f->lengths);
    fuzz_build_code(f, symbols);
    if (info->extra_bits) {
        info->important = f->important;
        info->huffman_table = f->table;
        if (f->flags & FLAG_CODES) {
            info->huffman_codes = f->codes;
            info->huffman_lengths = f->lengths;
        }
    }
    f->plane_bytes = plane_bytes(info, info->height);
    f->stream_bytes = info->extra_bits && !(f->flags & FLAG_NO_STREAM) ? (info->stream_capacity_bits + 7u) / 8u + 1u
                                                                        : 0u;
    if (data[38] % 16u != 0u) {
        uint32_t slot = align4(plane_bytes(info, 1u)) + 4u * (data[39] % 8u);
        f->tensor.ring_rows = (uint16_t)(data[38] % 16u);
        f->tensor.row_capacity_bits = fuzz_le32(data + 40) % (1u << 14);
        if (f->stream_bytes) {
            f->ring_stream_offset = align4(plane_bytes(info, 1u));
            slot += align4((f->tensor.row_capacity_bits + 7u) / 8u + 1u) + 4u;
        }
        f->tensor.slot_bytes = slot;
        f->plane_bytes = (size_t)slot * f->tensor.ring_rows;
        f->stream_bytes = 0;
    }
    return 1;
}

/* Allocates the plane, the stream (and the LUT) and fills them from the payload. */
static void fuzz_tensor_alloc(fuzz_tensor_t *f, const uint8_t **payload, size_t *left)
{
    if (f->flags & FLAG_LUT) {
        f->lut = (int8_t *)fuzz_buffer((size_t)f->info.channels * 256u, payload, left);
        f->info.lut = f->lut;
    }
    f->tensor.info = &f->info;
    f->tensor.plane = fuzz_buffer(f->plane_bytes, payload, left);
    f->tensor.stream = f->stream_bytes ? fuzz_buffer(f->stream_bytes, payload, left) : NULL;
    if (f->ring_stream_offset) { /* never 0 with a stream: a row's codes take at least a byte */
        f->tensor.stream = f->tensor.plane + f->ring_stream_offset;
    }
}

static void fuzz_tensor_free(fuzz_tensor_t *f)
{
    free(f->tensor.plane);
    if (f->tensor.ring_rows == 0u) {
        free(f->tensor.stream);
    }
    free(f->lut);
}

#endif /* DQA_FUZZ_TENSOR_H */
