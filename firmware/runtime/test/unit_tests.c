/*
 * Self-checking unit tests of the dqa-mcu runtime's public API (CTest: the
 * top-level CMakeLists.txt). They need no Python: the values they check
 * follow from docs/spec.md by hand. The bit-exact comparison of every kernel
 * with the NumPy reference is host_tests/test_runtime.py.
 *
 * Prints one line per failed check; returns the number of failures.
 */
#include <stdio.h>
#include <string.h>

#include "dqa_runtime.h"
#include "dqa_runtime_s8.h"

static int failures;

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            printf("%s:%d: %s: check failed: %s\n", __FILE__, __LINE__,      \
                   __func__, #cond);                                         \
            ++failures;                                                      \
        }                                                                    \
    } while (0)

enum { H = 3, W = 2, C = 4, PIXELS = H * W, ELEMENTS = PIXELS * C };

/* Storage range of a k-bit code (spec 1). */
static int32_t code_min(int bits, int is_signed)
{
    return is_signed ? -(1 << (bits - 1)) : 0;
}

static int32_t code_max(int bits, int is_signed)
{
    return is_signed ? (1 << (bits - 1)) - 1 : (1 << bits) - 1;
}

/* Decode table (spec 2.2) of the code where every one of the 2^m symbols has
 * length m: the canonical code of symbol s is s itself, its most significant
 * bit first, so the peeked bits hold s bit-reversed. */
static void uniform_decode_table(uint8_t table[256], int m)
{
    for (int p = 0; p < 256; ++p) {
        int symbol = 0;
        for (int j = 0; j < m; ++j) {
            symbol = (symbol << 1) | ((p >> j) & 1);
        }
        table[p] = (uint8_t)(m << 4 | symbol);
    }
}

/* Writes u (ELEMENTS values, storage domain) into t and reads the fine values back. */
static void write_then_read(dqa_tensor_t *t, const int32_t *u, int16_t *v, dqa_status_t *status)
{
    dqa_writer_t writer;
    dqa_reader_t reader;
    status->overflowed_tensors = 0;
    dqa_writer_init(&writer, t);
    for (int p = 0; p < PIXELS; ++p) {
        dqa_write_pixel(&writer, u + p * C);
    }
    dqa_writer_finish(&writer, status);
    dqa_reader_init(&reader, t);
    for (int p = 0; p < PIXELS; ++p) {
        dqa_read_pixel(&reader, v + p * C);
    }
}

static void test_direct_codes_round_trip(void)
{
    for (int bits = 2; bits <= 8; ++bits) {
        for (int is_signed = 0; is_signed <= 1; ++is_signed) {
            dqa_tensor_info_t info = { .height = H, .width = W, .channels = C, .bits = (uint8_t)bits,
                                       .is_signed = (uint8_t)is_signed };
            uint8_t plane[ELEMENTS + 1];
            dqa_tensor_t t = { &info, plane, NULL, 0, 0, 0, 0 };
            int32_t u[ELEMENTS];
            int16_t v[ELEMENTS];
            dqa_status_t status;
            int32_t lo = code_min(bits, is_signed), span = code_max(bits, is_signed) - lo + 1;
            for (int i = 0; i < ELEMENTS; ++i) {
                u[i] = lo + (i * 7) % span; /* every code width's whole range, both ends */
            }
            u[0] = code_max(bits, is_signed);
            memset(plane, 0xA5, sizeof plane);
            write_then_read(&t, u, v, &status);
            for (int i = 0; i < ELEMENTS; ++i) {
                CHECK(v[i] == u[i]);
            }
            CHECK(status.overflowed_tensors == 0);
            /* spec 2.1: ceil(N * n / 8) bytes, unused high bits of the last byte 0 */
            int used_bits = ELEMENTS * bits % 8;
            if (used_bits) {
                CHECK((plane[ELEMENTS * bits / 8] >> used_bits) == 0);
            }
        }
    }
}

/* A 3-bit unsigned tensor with m = 2 and channels 0 and 2 important. */
static const uint8_t important[C] = { 1, 0, 1, 0 };
enum { BITS = 3, EXTRA = 2, IMPORTANT_SYMBOLS = PIXELS * 2 };

static void dqa_values(int32_t *u)
{
    for (int i = 0; i < ELEMENTS; ++i) {
        int bits = important[i % C] ? BITS + EXTRA : BITS;
        u[i] = (i * 5 + 3) % (1 << bits);
    }
}

static void test_dqa_split_round_trip(void)
{
    uint8_t table[256], plane[ELEMENTS], stream[IMPORTANT_SYMBOLS * EXTRA / 8 + 2];
    uniform_decode_table(table, EXTRA);
    dqa_tensor_info_t info = { .height = H, .width = W, .channels = C, .bits = BITS, .extra_bits = EXTRA,
                               .important = important, .huffman_table = table,
                               .stream_capacity_bits = IMPORTANT_SYMBOLS * EXTRA };
    dqa_tensor_t t = { &info, plane, stream, 0, 0, 0, 0 };
    int32_t u[ELEMENTS];
    int16_t v[ELEMENTS];
    dqa_status_t status;
    dqa_values(u);
    write_then_read(&t, u, v, &status);
    for (int i = 0; i < ELEMENTS; ++i) {
        /* spec 1: v = u for an important channel, u << m for the others */
        CHECK(v[i] == (important[i % C] ? u[i] : u[i] << EXTRA));
    }
    CHECK(t.n_coded == IMPORTANT_SYMBOLS);
    CHECK(status.overflowed_tensors == 0);
}

static void test_full_error_stream_falls_back(void)
{
    enum { CODED = 3 }; /* room for three 2-bit codes and one bit more */
    uint8_t table[256], plane[ELEMENTS], stream[CODED * EXTRA / 8 + 2];
    uniform_decode_table(table, EXTRA);
    dqa_tensor_info_t info = { .height = H, .width = W, .channels = C, .bits = BITS, .extra_bits = EXTRA,
                               .important = important, .huffman_table = table,
                               .stream_capacity_bits = CODED * EXTRA + 1 };
    dqa_tensor_t t = { &info, plane, stream, 0, 0, 0, 0 };
    int32_t u[ELEMENTS];
    int16_t v[ELEMENTS];
    dqa_status_t status;
    dqa_values(u);
    write_then_read(&t, u, v, &status);
    CHECK(t.n_coded == CODED);
    CHECK(status.overflowed_tensors == 1);
    int symbol = 0;
    for (int i = 0; i < ELEMENTS; ++i) {
        if (!important[i % C]) {
            continue;
        }
        /* spec 2.3: an uncoded symbol reads as the middle of the lost bits' range */
        int32_t expected = symbol < CODED ? u[i] : ((u[i] >> EXTRA) << EXTRA) + (1 << (EXTRA - 1));
        CHECK(v[i] == expected);
        ++symbol;
    }
}

static void test_maxpool_takes_the_largest_value(void)
{
    /* a 2x2 window with stride 2 over a 2x2x1 direct 4-bit tensor: one output, the max */
    dqa_tensor_info_t in_info = { .height = 2, .width = 2, .channels = 1, .bits = 4 };
    dqa_tensor_info_t out_info = { .height = 1, .width = 1, .channels = 1, .bits = 4 };
    uint8_t in_plane[2], out_plane[1];
    dqa_tensor_t in = { &in_info, in_plane, NULL, 0, 0, 0, 0 }, out = { &out_info, out_plane, NULL, 0, 0, 0, 0 };
    const dqa_pool_params_t params = { .kernel_h = 2, .kernel_w = 2, .stride_h = 2, .stride_w = 2 };
    uint32_t scratch[64];
    dqa_status_t status = { 0 };
    CHECK(dqa_pool_get_buffer_size(&params, &in_info, &out_info) <= sizeof scratch);
    in_plane[0] = 0x93; /* codes 3, 9 (LSB first) */
    in_plane[1] = 0x5C; /* codes 12, 5 */
    dqa_maxpool(&params, &in, &out, scratch, &status);
    CHECK((out_plane[0] & 0x0F) == 12);
    CHECK(status.overflowed_tensors == 0);
}

static void test_maxpool_s8_per_channel(void)
{
    const dqa_pool_s8_params_t params = { .in_h = 2, .in_w = 2, .channels = 2, .out_h = 1, .out_w = 1,
                                          .filter_h = 2, .filter_w = 2, .stride_h = 2, .stride_w = 2,
                                          .act_min = -128, .act_max = 100 };
    const int8_t input[8] = { -5, 7, 3, -128, -9, 127, 2, 0 }; /* HWC */
    int8_t output[2];
    dqa_maxpool_s8(&params, input, output);
    CHECK(output[0] == 3);
    CHECK(output[1] == 100); /* 127 clamped to act_max */
}

int main(void)
{
    test_direct_codes_round_trip();
    test_dqa_split_round_trip();
    test_full_error_stream_falls_back();
    test_maxpool_takes_the_largest_value();
    test_maxpool_s8_per_channel();
    printf("%s: %d failed checks\n", failures ? "FAIL" : "ok", failures);
    return failures;
}
