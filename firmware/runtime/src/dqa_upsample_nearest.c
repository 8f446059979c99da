/*
 * Nearest-neighbour upsampling by integer factors (docs/spec.md 5.6): copies
 * u per element. Each input row is read scale_h times: the reader's state
 * at the start of the row is saved and restored, so no row buffer is needed
 * (a ring row stays in its slot until its last output row is written).
 *
 * Scratch (4-byte aligned): int32 u[C], int16 v[C].
 */
#include "dqa_internal.h"

size_t dqa_upsample_nearest_get_buffer_size(const dqa_tensor_info_t *input, const dqa_tensor_info_t *output)
{
    return DQA_ALIGN4((size_t)output->channels * sizeof(int32_t) + (size_t)input->channels * sizeof(int16_t));
}

void dqa_upsample_nearest_start(dqa_upsample_nearest_state_t *state, uint16_t scale_h, uint16_t scale_w,
                                const dqa_tensor_t *input, dqa_tensor_t *output, void *scratch)
{
    dqa_reader_init(&state->reader, input);
    dqa_writer_init(&state->writer, output);
    state->scratch = scratch;
    state->scale_h = scale_h;
    state->scale_w = scale_w;
    state->row = 0;
}

void dqa_upsample_nearest_rows(dqa_upsample_nearest_state_t *state, uint16_t end, dqa_status_t *status)
{
    const dqa_tensor_info_t *in = state->reader.tensor->info;
    const dqa_tensor_info_t *out = state->writer.tensor->info;
    uint32_t c_n = out->channels;
    int32_t *u = (int32_t *)state->scratch;
    int16_t *v = (int16_t *)(void *)(u + c_n);
    uint32_t oh, iw, c, rep_w;

    if (!dqa__rows_pending(&end, out->height, state->row)) {
        return; /* nothing new: a segment round in which this layer waits */
    }
    for (oh = state->row; oh < end; oh++) {
        if (oh % state->scale_h == 0u) { /* a new input row: remember where it starts */
            state->row_start = state->reader;
        } else {
            state->reader = state->row_start;
        }
        for (iw = 0; iw < in->width; iw++) {
            dqa_read_pixel(&state->reader, v);
            for (c = 0; c < c_n; c++) {
                u[c] = dqa__fine_to_storage(out, (uint16_t)c, v[c]);
            }
            for (rep_w = 0; rep_w < state->scale_w; rep_w++) {
                dqa_write_pixel(&state->writer, u);
            }
        }
    }
    state->row = end;
    if (end == out->height) {
        dqa_writer_finish(&state->writer, status);
    }
}

void dqa_upsample_nearest(uint16_t scale_h, uint16_t scale_w, const dqa_tensor_t *input, dqa_tensor_t *output,
                          void *scratch, dqa_status_t *status)
{
    dqa_upsample_nearest_state_t state;
    dqa_upsample_nearest_start(&state, scale_h, scale_w, input, output, scratch);
    dqa_upsample_nearest_rows(&state, output->info->height, status);
}
