/*
 * Sequential tensor reader (docs/spec.md sections 1, 2, 5.1): yields
 * fine-domain values v pixel by pixel, decoding the code plane and, for
 * important channels, the Huffman coded error stream.
 */
#include "dqa_internal.h"

/* Stream bytes that can hold written bits; the buffer is at least this long. */
static uint32_t stream_bytes(const dqa_tensor_info_t *info)
{
    return (info->stream_capacity_bits + 7u) >> 3;
}

/* Decodes the next error symbol (spec 2.2, 2.3). */
static int32_t next_error(dqa_reader_t *r, const dqa_tensor_info_t *info)
{
    const dqa_tensor_t *t = r->tensor;
    uint32_t m = info->extra_bits;
    uint32_t j = r->symbol++;
    if (j >= t->n_coded || t->stream == NULL || info->huffman_table == NULL) {
        return (int32_t)1 << (m - 1); /* not coded: middle of the lost range */
    }
    uint32_t nbytes = stream_bytes(info);
    uint32_t byte = r->bit >> 3;
    uint32_t lo = byte < nbytes ? t->stream[byte] : 0u;
    uint32_t hi = byte + 1u < nbytes ? t->stream[byte + 1u] : 0u;
    uint32_t peek = ((lo | (hi << 8)) >> (r->bit & 7u)) & 0xFFu;
    uint32_t entry = info->huffman_table[peek];
    r->bit += entry >> 4;
    return (int32_t)(entry & 0xFu & ((1u << m) - 1u));
}

/* Code of element i: n bits at stream bit i*n, sign-extended when signed. */
static int32_t code_at(const uint8_t *plane, uint32_t i, uint32_t n, int is_signed)
{
    uint32_t raw;
    if (n == 8) {
        raw = plane[i];
    } else if (n == 16) {
        raw = (uint32_t)plane[2u * i] | ((uint32_t)plane[2u * i + 1u] << 8);
    } else {
        uint32_t pos = i * n;
        uint32_t byte = pos >> 3;
        uint32_t off = pos & 7u;
        raw = plane[byte];
        if (off + n > 8u) {
            raw |= (uint32_t)plane[byte + 1u] << 8;
        }
        raw = (raw >> off) & ((1u << n) - 1u);
    }
    if (is_signed && (raw & (1u << (n - 1u)))) {
        return (int32_t)raw - ((int32_t)1 << n);
    }
    return (int32_t)raw;
}

void dqa_reader_init(dqa_reader_t *reader, const dqa_tensor_t *tensor)
{
    reader->tensor = tensor;
    reader->element = 0;
    reader->symbol = 0;
    reader->bit = 0;
}

void dqa_read_pixel(dqa_reader_t *reader, int16_t *v)
{
    const dqa_tensor_t *t = reader->tensor;
    const dqa_tensor_info_t *info = t->info;
    uint32_t channels = info->channels;
    uint32_t i = reader->element;
    uint32_t c;
    reader->element = i + channels;
    if (info->lut != NULL) { /* input stage: uint8 pixels through the table */
        const uint8_t *p = t->plane + i;
        for (c = 0; c < channels; c++) {
            v[c] = info->lut[(c << 8) + p[c]];
        }
        return;
    }
    uint32_t n = info->bits;
    uint32_t m = info->extra_bits;
    int is_signed = info->is_signed != 0;
    if (m == 0) {
        for (c = 0; c < channels; c++) {
            v[c] = (int16_t)code_at(t->plane, i + c, n, is_signed);
        }
        return;
    }
    const uint8_t *imp = info->important;
    int32_t unit = (int32_t)1 << m;
    for (c = 0; c < channels; c++) {
        int32_t x = code_at(t->plane, i + c, n, is_signed) * unit;
        if (imp != NULL && imp[c]) {
            x += next_error(reader, info);
        }
        v[c] = (int16_t)x;
    }
}

void dqa_skip_pixels(dqa_reader_t *reader, uint32_t pixels)
{
    const dqa_tensor_t *t = reader->tensor;
    const dqa_tensor_info_t *info = t->info;
    uint32_t channels = info->channels;
    reader->element += pixels * channels;
    if (info->extra_bits == 0 || info->important == NULL || info->lut != NULL) {
        return;
    }
    uint32_t per_pixel = 0, c;
    for (c = 0; c < channels; c++) {
        per_pixel += info->important[c] != 0;
    }
    uint32_t symbols = per_pixel * pixels;
    uint32_t end = reader->symbol + symbols;
    uint32_t coded_end = t->n_coded < end ? t->n_coded : end;
    if (t->stream != NULL && info->huffman_table != NULL) {
        uint32_t nbytes = stream_bytes(info);
        const uint8_t *s = t->stream;
        const uint8_t *table = info->huffman_table;
        uint32_t bit = reader->bit;
        uint32_t j;
        for (j = reader->symbol; j < coded_end; j++) {
            uint32_t byte = bit >> 3;
            uint32_t lo = byte < nbytes ? s[byte] : 0u;
            uint32_t hi = byte + 1u < nbytes ? s[byte + 1u] : 0u;
            bit += (uint32_t)table[((lo | (hi << 8)) >> (bit & 7u)) & 0xFFu] >> 4;
        }
        reader->bit = bit;
    }
    reader->symbol = end;
}
