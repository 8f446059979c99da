/*
 * Sequential tensor reader (docs/spec.md sections 1, 2, 5.1): yields
 * fine-domain values v pixel by pixel, decoding the code plane and, for
 * important channels, the Huffman coded error stream.
 *
 * Bounds: plane bytes are read only where a code has bits; stream bytes only
 * below ceil(capacity / 8) (bytes the producer can have written; the buffer
 * is at least capacity/8 + 1 bytes long), later peeked bits read as 0; and
 * symbol j is decoded only when j < n_coded.
 */
#include "dqa_internal.h"

/* Error stream state for decoding (a tensor without a usable stream codes nothing). */
typedef struct {
    const uint8_t *stream;
    const uint8_t *table;
    uint32_t nbytes;
    uint32_t n_coded;
} stream_t;

static void stream_of(const dqa_tensor_t *t, stream_t *s)
{
    const dqa_tensor_info_t *info = t->info;
    s->stream = t->stream;
    s->table = info->huffman_table;
    s->nbytes = (info->stream_capacity_bits + 7u) >> 3;
    s->n_coded = (t->stream != NULL && info->huffman_table != NULL) ? t->n_coded : 0u;
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
    const uint8_t *plane = t->plane;
    uint32_t channels = info->channels;
    uint32_t i = reader->element;
    uint32_t n = info->bits;
    uint32_t m = info->extra_bits;
    uint32_t c;
    reader->element = i + channels;

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
    {
        uint32_t mask = (1u << n) - 1u;
        uint32_t sign = info->is_signed ? 1u << (n - 1u) : 0u; /* (raw ^ sign) - sign sign-extends */
        uint32_t pos = i * n;
        const uint8_t *imp = m ? info->important : NULL;
        int32_t unit = (int32_t)1 << m;
        if (imp == NULL) {
            for (c = 0; c < channels; c++, pos += n) {
                uint32_t byte = pos >> 3, off = pos & 7u;
                uint32_t raw = plane[byte];
                if (off + n > 8u) {
                    raw |= (uint32_t)plane[byte + 1u] << 8;
                }
                raw = (raw >> off) & mask;
                v[c] = (int16_t)((int32_t)((raw ^ sign) - sign) * unit);
            }
        } else {
            stream_t s;
            uint32_t bit = reader->bit, symbol = reader->symbol;
            int32_t half = unit >> 1, e_mask = unit - 1;
            stream_of(t, &s);
            for (c = 0; c < channels; c++, pos += n) {
                uint32_t byte = pos >> 3, off = pos & 7u;
                uint32_t raw = plane[byte];
                int32_t x;
                if (off + n > 8u) {
                    raw |= (uint32_t)plane[byte + 1u] << 8;
                }
                raw = (raw >> off) & mask;
                x = (int32_t)((raw ^ sign) - sign) * unit;
                if (imp[c]) {
                    if (symbol < s.n_coded) {
                        uint32_t entry = peek_entry(&s, bit);
                        bit += entry >> 4;
                        x += (int32_t)(entry & 0xFu) & e_mask;
                    } else {
                        x += half; /* not coded: middle of the lost range (spec 2.3) */
                    }
                    symbol++;
                }
                v[c] = (int16_t)x;
            }
            reader->bit = bit;
            reader->symbol = symbol;
        }
    }
}

void dqa_skip_pixels(dqa_reader_t *reader, uint32_t pixels)
{
    const dqa_tensor_t *t = reader->tensor;
    const dqa_tensor_info_t *info = t->info;
    uint32_t channels = info->channels;
    uint32_t per_pixel = 0, c, end, coded_end, bit, j;
    stream_t s;
    reader->element += pixels * channels;
    if (info->extra_bits == 0 || info->important == NULL || info->lut != NULL || pixels == 0u) {
        return;
    }
    for (c = 0; c < channels; c++) {
        per_pixel += info->important[c] != 0;
    }
    stream_of(t, &s);
    end = reader->symbol + per_pixel * pixels;
    coded_end = s.n_coded < end ? s.n_coded : end;
    bit = reader->bit;
    for (j = reader->symbol; j < coded_end; j++) {
        bit += peek_entry(&s, bit) >> 4;
    }
    reader->bit = bit;
    reader->symbol = end;
}
