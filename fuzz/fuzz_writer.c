/*
 * libFuzzer target: the code-plane writer and the Huffman encoder (dqa_writer.c), both encoder paths
 * (codes given, FLAG_CODES, or derived from the decode table), any stream capacity, a whole tensor or
 * a ring of rows (spec 2.4: any ring_rows, slot slack and row capacity). Storage values come from the
 * payload (two bytes each, within the tensor's range). AddressSanitizer checks the writes; reading
 * the values back (a ring: each row right after it is written, before its slot is reused) must give
 * every value as spec 2 and 2.3 say: v = u for a coded important channel, (u >> m) * 2^m + 2^(m-1)
 * once the band's stream has closed, u * 2^m otherwise.
 */
#include "fuzz_tensor.h"

/* Reads the next `pixels` pixels (one band, whose producer coded `n_coded` error symbols) and traps
 * on any value not as written. */
static void check_band(const fuzz_tensor_t *f, dqa_reader_t *reader, const int32_t *u, uint32_t pixels,
                       uint32_t n_coded)
{
    uint32_t m = f->info.extra_bits, p, c, symbol = 0;
    int16_t v[64];
    for (p = 0; p < pixels; p++) {
        dqa_read_pixel(reader, v);
        for (c = 0; c < f->info.channels; c++) {
            int32_t want = u[p * f->info.channels + c];
            if (m && f->important[c]) {
                if (symbol++ >= n_coded) {
                    /* not coded (spec 2.3): hi * 2^m, the error lost, plus the middle of its range */
                    want = want - (int32_t)((uint32_t)want & ((1u << m) - 1u)) + (1 << (m - 1u));
                }
            } else {
                want *= 1 << m;
            }
            if (v[c] != want) {
                __builtin_trap();
            }
        }
    }
}

/* The n_coded the writer left for the row it just finished: its slot's last word (0 without a stream). */
static uint32_t ring_n_coded(const dqa_tensor_t *t, uint32_t row)
{
    uint32_t n_coded = 0;
    if (t->stream != NULL) {
        memcpy(&n_coded, t->plane + (size_t)(row % t->ring_rows + 1u) * t->slot_bytes - 4u, sizeof n_coded);
    }
    return n_coded;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_tensor_t f;
    dqa_writer_t writer;
    dqa_reader_t reader;
    dqa_status_t status = {0};
    int32_t u[64], *all;
    const uint8_t *payload = data + FUZZ_HEADER_BYTES, *none = NULL;
    size_t left = size - FUZZ_HEADER_BYTES, zero = 0;
    uint32_t pixels, width, p, c, storage_bits, m;
    int32_t lowest;
    if (!fuzz_tensor_parse(&f, data, size) || (f.flags & FLAG_LUT)) {
        return 0;
    }
    m = f.info.extra_bits;
    width = f.info.width;
    fuzz_tensor_alloc(&f, &none, &zero); /* garbage-filled: the writer must not rely on cleared memory */
    pixels = (uint32_t)f.info.height * width;
    all = malloc(sizeof(int32_t) * pixels * f.info.channels);
    if (all == NULL) {
        abort();
    }
    dqa_writer_init(&writer, &f.tensor);
    dqa_reader_init(&reader, &f.tensor);
    for (p = 0; p < pixels; p++) {
        for (c = 0; c < f.info.channels; c++) {
            uint32_t raw = left >= 2u ? (uint32_t)payload[0] | ((uint32_t)payload[1] << 8) : p * 31u + c;
            storage_bits = f.info.bits == 16u ? 16u : f.info.bits + (f.important[c] ? m : 0u);
            lowest = f.info.is_signed || f.info.bits == 16u ? -((int32_t)1 << (storage_bits - 1u)) : 0;
            u[c] = lowest + (int32_t)(raw & ((1u << storage_bits) - 1u));
            all[p * f.info.channels + c] = u[c];
            if (left >= 2u) {
                payload += 2;
                left -= 2u;
            }
        }
        dqa_write_pixel(&writer, u);
        if (f.tensor.ring_rows && (p + 1u) % width == 0u) { /* a row is full: its slot holds it until reused */
            uint32_t n_coded = ring_n_coded(&f.tensor, p / width);
            if (n_coded > writer.symbol) {
                __builtin_trap();
            }
            check_band(&f, &reader, all + (size_t)(p + 1u - width) * f.info.channels, width, n_coded);
        }
    }
    dqa_writer_finish(&writer, &status);
    if (status.overflowed_tensors > 1u || (!f.tensor.ring_rows && f.tensor.n_coded > writer.symbol)) {
        __builtin_trap();
    }
    if (!f.tensor.ring_rows) {
        check_band(&f, &reader, all, pixels, f.tensor.n_coded);
    }
    free(all);
    fuzz_tensor_free(&f);
    return 0;
}
