/*
 * Host test driver for the dqa-mcu runtime (host_tests/test_runtime.py).
 *
 * Reads a little-endian int32 program: tensors (info, buffers, optional
 * initial contents) and a list of kernel calls; runs them; writes back, as
 * int32 words, each call's scratch size, every tensor's buffers, n_coded and
 * fine values (read through dqa_reader), the overflow counter and the values
 * of read/skip probes. Every buffer is malloc'ed at its exact size and
 * pre-filled with garbage, so AddressSanitizer catches any read or write
 * outside it and nothing relies on cleared memory.
 *
 * usage: runtime_driver <program.bin> <result.bin>
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dqa_runtime.h"

#define MAGIC 0x44514131
#define GARBAGE 0xA5

enum { OP_WRITE = 1, OP_CONV = 2, OP_ADD = 3, OP_AVGPOOL = 4, OP_MAXPOOL = 5, OP_CONCAT = 6, OP_UPSAMPLE = 7,
       OP_READSKIP = 8 };

static const int32_t *cur, *end_of_input;

static void die(const char *msg)
{
    fprintf(stderr, "runtime_driver: %s\n", msg);
    exit(2);
}

static int32_t next_word(void)
{
    if (cur >= end_of_input) {
        die("program truncated");
    }
    return *cur++;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p) {
        die("out of memory");
    }
    memset(p, GARBAGE, n ? n : 1);
    return p;
}

/* n words into a fresh array of `size`-byte elements */
static void *read_array(size_t n, size_t size, int is_signed)
{
    uint8_t *p = xmalloc(n * size);
    size_t i;
    for (i = 0; i < n; i++) {
        int32_t x = next_word();
        if (size == 1) {
            if (is_signed) {
                ((int8_t *)p)[i] = (int8_t)x;
            } else {
                p[i] = (uint8_t)x;
            }
        } else {
            ((int32_t *)(void *)p)[i] = x;
        }
    }
    return p;
}

typedef struct {
    dqa_tensor_info_t info;
    dqa_tensor_t t;
    int alias;
    size_t plane_len, stream_len;
} tensor_rec_t;

static FILE *out;

static void put_word(int32_t x)
{
    if (fwrite(&x, sizeof x, 1, out) != 1) {
        die("write failed");
    }
}

static dqa_requant_t read_requant(uint32_t c, int with_residual)
{
    dqa_requant_t rq;
    rq.multiplier = read_array(c, 4, 1);
    rq.residual_multiplier = with_residual ? read_array(c, 4, 1) : NULL;
    rq.shift = read_array(c, 1, 0);
    rq.out_min = read_array(c, 4, 1);
    rq.out_max = read_array(c, 4, 1);
    rq.negative_multiplier = NULL; /* leaky_relu is covered by the generated-model tests */
    rq.negative_residual_multiplier = NULL;
    return rq;
}

int main(int argc, char **argv)
{
    FILE *f;
    long size;
    int32_t *program;
    int32_t n_tensors, n_ops, i;
    tensor_rec_t *tensors;
    dqa_status_t status;
    int32_t *probe_values = NULL;
    size_t n_probe = 0;

    if (argc != 3) {
        die("usage: runtime_driver <program.bin> <result.bin>");
    }
    f = fopen(argv[1], "rb");
    if (!f || fseek(f, 0, SEEK_END) || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
        die("cannot read program");
    }
    program = xmalloc((size_t)size);
    if (fread(program, 1, (size_t)size, f) != (size_t)size) {
        die("cannot read program");
    }
    fclose(f);
    cur = program;
    end_of_input = program + size / 4;
    if (next_word() != MAGIC) {
        die("bad magic");
    }

    n_tensors = next_word();
    tensors = xmalloc(sizeof *tensors * (size_t)n_tensors);
    for (i = 0; i < n_tensors; i++) {
        tensor_rec_t *r = &tensors[i];
        dqa_tensor_info_t *info = &r->info;
        uint32_t elements, symbols;
        int32_t init;
        memset(r, 0, sizeof *r);
        info->height = (uint16_t)next_word();
        info->width = (uint16_t)next_word();
        info->channels = (uint16_t)next_word();
        info->bits = (uint8_t)next_word();
        info->extra_bits = (uint8_t)next_word();
        info->is_signed = (uint8_t)next_word();
        r->alias = next_word();
        elements = (uint32_t)info->height * info->width * info->channels;
        symbols = 1u << info->extra_bits;
        if (next_word()) {
            info->important = read_array(info->channels, 1, 0);
        }
        if (next_word()) {
            info->huffman_table = read_array(256, 1, 0);
        }
        if (next_word()) {
            info->huffman_codes = read_array(symbols, 1, 0);
            info->huffman_lengths = read_array(symbols, 1, 0);
        }
        info->stream_capacity_bits = (uint32_t)next_word();
        if (next_word()) {
            info->lut = read_array((size_t)info->channels * 256, 1, 1);
        }
        r->stream_len = (size_t)next_word();
        r->plane_len = ((size_t)elements * info->bits + 7) / 8;
        r->t.info = info;
        if (r->alias >= 0) {
            if (r->alias >= i) {
                die("alias must follow its source");
            }
            r->t.plane = tensors[r->alias].t.plane;
            r->t.stream = tensors[r->alias].t.stream;
            r->plane_len = tensors[r->alias].plane_len;
            r->stream_len = tensors[r->alias].stream_len;
        } else {
            r->t.plane = xmalloc(r->plane_len);
            r->t.stream = r->stream_len ? xmalloc(r->stream_len) : NULL;
        }
        r->t.n_coded = 0xDEADBEEFu; /* must be set by the producer */
        init = next_word();
        if (init >= 1) { /* plane contents */
            size_t k;
            for (k = 0; k < r->plane_len; k++) {
                r->t.plane[k] = (uint8_t)next_word();
            }
        }
        if (init >= 2) { /* n_coded and stream contents */
            int32_t k, n;
            r->t.n_coded = (uint32_t)next_word();
            n = next_word();
            if ((size_t)n > r->stream_len) {
                die("stream contents longer than the buffer");
            }
            for (k = 0; k < n; k++) {
                r->t.stream[k] = (uint8_t)next_word();
            }
        }
    }

    out = fopen(argv[2], "wb");
    if (!out) {
        die("cannot write result");
    }
    status.overflowed_tensors = 0;
    n_ops = next_word();
    for (i = 0; i < n_ops; i++) {
        int32_t op = next_word();
        size_t scratch_size = 0;
        void *scratch = NULL;
        int32_t k;
        for (k = 0; k < n_tensors; k++) { /* flatten aliases share n_coded (codegen copies it) */
            if (tensors[k].alias >= 0) {
                tensors[k].t.n_coded = tensors[tensors[k].alias].t.n_coded;
            }
        }
        if (op == OP_WRITE) {
            dqa_tensor_t *t = &tensors[next_word()].t;
            uint32_t pixels = (uint32_t)t->info->height * t->info->width, p, c;
            int32_t *u = xmalloc(sizeof(int32_t) * t->info->channels);
            dqa_writer_t w;
            dqa_writer_init(&w, t);
            for (p = 0; p < pixels; p++) {
                for (c = 0; c < t->info->channels; c++) {
                    u[c] = next_word();
                }
                dqa_write_pixel(&w, u);
            }
            dqa_writer_finish(&w, &status);
            free(u);
        } else if (op == OP_CONV) {
            dqa_conv_params_t p;
            tensor_rec_t *in = &tensors[next_word()];
            int32_t res_index = next_word();
            tensor_rec_t *res = res_index >= 0 ? &tensors[res_index] : NULL;
            tensor_rec_t *o = &tensors[next_word()];
            uint32_t c_out = o->info.channels;
            memset(&p, 0, sizeof p);
            p.kernel_h = (uint16_t)next_word();
            p.kernel_w = (uint16_t)next_word();
            p.stride_h = (uint16_t)next_word();
            p.stride_w = (uint16_t)next_word();
            p.pad_top = (uint16_t)next_word();
            p.pad_left = (uint16_t)next_word();
            p.dilation_h = (uint16_t)next_word();
            p.dilation_w = (uint16_t)next_word();
            p.groups = (uint16_t)next_word();
            p.residual_stride = (uint16_t)next_word();
            p.residual_channel_offset = (uint16_t)next_word();
            p.weights = read_array(dqa_conv2d_weights_size(&p, in->info.channels, o->info.channels), 1, 1);
            p.bias = read_array(c_out, 4, 1);
            p.requant = read_requant(c_out, next_word());
            scratch_size = dqa_conv2d_get_buffer_size(&p, &in->info, res ? &res->info : NULL, &o->info);
            scratch = xmalloc(scratch_size);
            dqa_conv2d(&p, &in->t, res ? &res->t : NULL, &o->t, scratch, &status);
        } else if (op == OP_ADD) {
            dqa_add_params_t p;
            tensor_rec_t *a = &tensors[next_word()];
            tensor_rec_t *b = &tensors[next_word()];
            tensor_rec_t *o = &tensors[next_word()];
            p.b_stride = (uint16_t)next_word();
            p.b_channel_offset = (uint16_t)next_word();
            p.requant = read_requant(o->info.channels, 1);
            scratch_size = dqa_add_get_buffer_size(&a->info, &b->info, &o->info);
            scratch = xmalloc(scratch_size);
            dqa_add(&p, &a->t, &b->t, &o->t, scratch, &status);
        } else if (op == OP_AVGPOOL || op == OP_MAXPOOL) {
            dqa_pool_params_t p;
            tensor_rec_t *in = &tensors[next_word()];
            tensor_rec_t *o = &tensors[next_word()];
            memset(&p, 0, sizeof p);
            p.kernel_h = (uint16_t)next_word();
            p.kernel_w = (uint16_t)next_word();
            p.stride_h = (uint16_t)next_word();
            p.stride_w = (uint16_t)next_word();
            p.pad_top = (uint16_t)next_word();
            p.pad_left = (uint16_t)next_word();
            if (op == OP_AVGPOOL) {
                p.requant = read_requant(o->info.channels, 0);
            }
            scratch_size = dqa_pool_get_buffer_size(&p, &in->info, &o->info);
            scratch = xmalloc(scratch_size);
            if (op == OP_AVGPOOL) {
                dqa_avgpool(&p, &in->t, &o->t, scratch, &status);
            } else {
                dqa_maxpool(&p, &in->t, &o->t, scratch, &status);
            }
        } else if (op == OP_CONCAT) {
            tensor_rec_t *a = &tensors[next_word()];
            tensor_rec_t *b = &tensors[next_word()];
            tensor_rec_t *o = &tensors[next_word()];
            scratch_size = dqa_concat_get_buffer_size(&a->info, &b->info, &o->info);
            scratch = xmalloc(scratch_size);
            dqa_concat(&a->t, &b->t, &o->t, scratch, &status);
        } else if (op == OP_UPSAMPLE) {
            tensor_rec_t *in = &tensors[next_word()];
            tensor_rec_t *o = &tensors[next_word()];
            uint16_t sh = (uint16_t)next_word(), sw = (uint16_t)next_word();
            scratch_size = dqa_upsample_nearest_get_buffer_size(&in->info, &o->info);
            scratch = xmalloc(scratch_size);
            dqa_upsample_nearest(sh, sw, &in->t, &o->t, scratch, &status);
        } else if (op == OP_READSKIP) {
            /* pairs (skip, read): skip `skip` pixels, then read `read` pixels one by one */
            tensor_rec_t *t = &tensors[next_word()];
            int32_t pairs = next_word(), q;
            uint32_t c_n = t->info.channels, c;
            int16_t *v = xmalloc(sizeof(int16_t) * c_n);
            dqa_reader_t r;
            dqa_reader_init(&r, &t->t);
            for (q = 0; q < pairs; q++) {
                int32_t skip = next_word(), reads = next_word(), j;
                dqa_skip_pixels(&r, (uint32_t)skip);
                for (j = 0; j < reads; j++) {
                    dqa_read_pixel(&r, v);
                    probe_values = realloc(probe_values, sizeof(int32_t) * (n_probe + c_n));
                    if (!probe_values) {
                        die("out of memory");
                    }
                    for (c = 0; c < c_n; c++) {
                        probe_values[n_probe++] = v[c];
                    }
                }
            }
            free(v);
        } else {
            die("unknown op");
        }
        put_word((int32_t)scratch_size);
        free(scratch);
    }
    if (cur != end_of_input) {
        die("trailing program words");
    }

    for (i = 0; i < n_tensors; i++) {
        tensor_rec_t *r = &tensors[i];
        uint32_t pixels = (uint32_t)r->info.height * r->info.width, p, c;
        int16_t *v = xmalloc(sizeof(int16_t) * r->info.channels);
        size_t k;
        dqa_reader_t reader;
        if (r->alias >= 0) {
            r->t.n_coded = tensors[r->alias].t.n_coded;
        }
        put_word((int32_t)r->t.n_coded);
        put_word((int32_t)r->plane_len);
        for (k = 0; k < r->plane_len; k++) {
            put_word(r->t.plane[k]);
        }
        put_word((int32_t)r->stream_len);
        for (k = 0; k < r->stream_len; k++) {
            put_word(r->t.stream[k]);
        }
        dqa_reader_init(&reader, &r->t);
        for (p = 0; p < pixels; p++) {
            dqa_read_pixel(&reader, v);
            for (c = 0; c < r->info.channels; c++) {
                put_word(v[c]);
            }
        }
        free(v);
    }
    put_word((int32_t)status.overflowed_tensors);
    put_word((int32_t)n_probe);
    for (size_t k = 0; k < n_probe; k++) {
        put_word(probe_values[k]);
    }
    fclose(out);
    return 0;
}
