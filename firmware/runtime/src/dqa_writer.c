/*
 * Sequential tensor writer (docs/spec.md sections 2.1-2.3): takes
 * storage-domain values u pixel by pixel, packs the codes hi into the code
 * plane and Huffman codes the errors e of important channels into the
 * bounded error stream.
 *
 * Buffers need not be cleared beforehand: bits are written in order, so the
 * first write into a byte always starts at its bit 0 and assigns the byte
 * (which also leaves the unused high bits of the last byte 0).
 */
#include "dqa_internal.h"

/* Puts the low `count` (1..16) bits of `bits` at stream bit `pos`, LSB-first. */
static void put_bits(uint8_t *buf, uint32_t pos, uint32_t bits, uint32_t count)
{
    uint8_t *p = buf + (pos >> 3);
    uint32_t off = pos & 7u;
    uint32_t end = off + count; /* <= 23 */
    uint32_t x = (bits & ((1u << count) - 1u)) << off;
    if (off) {
        p[0] = (uint8_t)(p[0] | (uint8_t)x);
    } else {
        p[0] = (uint8_t)x;
    }
    if (end > 8u) {
        p[1] = (uint8_t)(x >> 8);
        if (end > 16u) {
            p[2] = (uint8_t)(x >> 16);
        }
    }
}

/* The code of error symbol e in stream order (first bit in bit 0) and its length. */
static uint32_t code_of(const dqa_tensor_info_t *info, uint32_t e, uint32_t *length)
{
    if (info->huffman_codes != NULL && info->huffman_lengths != NULL) {
        uint32_t len = info->huffman_lengths[e];
        uint32_t code = info->huffman_codes[e];
        uint32_t rev = 0, k;
        for (k = 0; k < len; k++) { /* most significant bit first */
            rev |= ((code >> k) & 1u) << k;
        }
        *length = len;
        return rev;
    }
    /* Derive from the decode table: the entries of e are rev | fill << len, so
     * the first one is at index rev itself. */
    {
        const uint8_t *table = info->huffman_table;
        uint32_t p;
        for (p = 0; p < (1u << DQA_HUFFMAN_TABLE_BITS); p++) {
            uint32_t entry = table[p];
            if ((entry & 0xFu) == e && (entry >> 4) != 0u) {
                *length = entry >> 4;
                return p;
            }
        }
    }
    *length = 0xFFFFu; /* no code: never fits */
    return 0;
}

static void put_error(dqa_writer_t *w, const dqa_tensor_info_t *info, uint32_t e)
{
    dqa_tensor_t *t = w->tensor;
    uint32_t length;
    uint32_t rev;
    if (w->closed) {
        return;
    }
    if (t->stream == NULL || info->huffman_table == NULL) {
        w->closed = 1; /* nowhere to code errors: as with capacity 0 */
        return;
    }
    rev = code_of(info, e, &length);
    if (length == 0u || length > info->stream_capacity_bits - w->bit ||
        w->bit > info->stream_capacity_bits) {
        w->closed = 1; /* spec 2.3: this and all later symbols are not coded */
        return;
    }
    put_bits(t->stream, w->bit, rev, length);
    w->bit += length;
    w->symbol++;
}

void dqa_writer_init(dqa_writer_t *writer, dqa_tensor_t *tensor)
{
    writer->tensor = tensor;
    writer->element = 0;
    writer->symbol = 0;
    writer->bit = 0;
    writer->closed = 0;
}

void dqa_write_pixel(dqa_writer_t *writer, const int32_t *u)
{
    dqa_tensor_t *t = writer->tensor;
    const dqa_tensor_info_t *info = t->info;
    uint32_t channels = info->channels;
    uint32_t n = info->bits;
    uint32_t m = info->extra_bits;
    const uint8_t *imp = m ? info->important : NULL;
    uint32_t i = writer->element;
    uint32_t c;
    writer->element = i + channels;
    if (n == 8 && imp == NULL) {
        uint8_t *p = t->plane + i;
        for (c = 0; c < channels; c++) {
            p[c] = (uint8_t)u[c];
        }
        return;
    }
    for (c = 0; c < channels; c++) {
        int32_t x = u[c];
        if (imp != NULL && imp[c]) {
            put_error(writer, info, (uint32_t)x & ((1u << m) - 1u));
            x = dqa__asr(x, m);
        }
        if (n == 8) {
            t->plane[i + c] = (uint8_t)x;
        } else if (n == 16) {
            t->plane[2u * (i + c)] = (uint8_t)x;
            t->plane[2u * (i + c) + 1u] = (uint8_t)((uint32_t)x >> 8);
        } else {
            put_bits(t->plane, (i + c) * n, (uint32_t)x, n);
        }
    }
}

void dqa_writer_finish(dqa_writer_t *writer, dqa_status_t *status)
{
    writer->tensor->n_coded = writer->symbol;
    if (writer->closed && status != NULL) {
        status->overflowed_tensors++;
    }
}
