/*
 * libFuzzer target: the code-plane reader and the Huffman decoder (dqa_reader.c) on any bytes in the
 * plane and the stream, any n_coded, any decode table (FLAG_RAW_TABLE), a whole tensor or a ring of
 * rows (spec 2.4: any ring_rows, slot slack, row capacity and bytes in each slot's n_coded word),
 * reading and skipping pixels in an input-chosen pattern. Memory safety is AddressSanitizer's to check; the values read must stay
 * in the range their n + m bits give, whatever the bytes (kernels index tables with them).
 */
#include "fuzz_tensor.h"

/* The fine values a tensor of n bits, m extra bits can hold (spec 1-2): codes * 2^m + e. */
static void value_range(const dqa_tensor_info_t *info, int32_t *lo, int32_t *hi)
{
    int32_t unit = (int32_t)1 << info->extra_bits;
    if (info->lut != NULL) {
        *lo = INT8_MIN;
        *hi = INT8_MAX;
    } else if (info->bits == 16u) {
        *lo = INT16_MIN;
        *hi = INT16_MAX;
    } else if (info->is_signed) {
        *lo = -((int32_t)1 << (info->bits - 1u)) * unit;
        *hi = (((int32_t)1 << (info->bits - 1u)) - 1) * unit + unit - 1;
    } else {
        *lo = 0;
        *hi = (((int32_t)1 << info->bits) - 1) * unit + unit - 1;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_tensor_t f;
    dqa_reader_t reader;
    int16_t values[64];
    const uint8_t *payload = data + FUZZ_HEADER_BYTES;
    size_t left = size - FUZZ_HEADER_BYTES;
    uint32_t pixels, pixel = 0, step = 0;
    uint8_t pattern;
    int32_t lo, hi;
    if (!fuzz_tensor_parse(&f, data, size) || left == 0) {
        return 0;
    }
    pattern = *payload++;
    left--;
    if ((f.flags & FLAG_RAW_TABLE) && left >= sizeof f.table) {
        memcpy(f.table, payload, sizeof f.table);
        payload += sizeof f.table;
        left -= sizeof f.table;
    }
    fuzz_tensor_alloc(&f, &payload, &left);
    value_range(&f.info, &lo, &hi);
    pixels = (uint32_t)f.info.height * f.info.width;
    dqa_reader_init(&reader, &f.tensor);
    while (pixel < pixels) { /* bit k of `pattern` says whether the k-th step skips 1..3 pixels */
        if ((pattern >> (step++ % 8u)) & 1u) {
            uint32_t run = 1u + step % 3u;
            run = run < pixels - pixel ? run : pixels - pixel;
            dqa_skip_pixels(&reader, run);
            pixel += run;
        } else {
            uint32_t c;
            dqa_read_pixel(&reader, values);
            for (c = 0; c < f.info.channels; c++) {
                if (values[c] < lo || values[c] > hi) {
                    __builtin_trap();
                }
            }
            pixel++;
        }
    }
    fuzz_tensor_free(&f);
    return 0;
}
