/*
 * dqa-mcu test harness: runs the model on the images in harness_inputs.c and
 * prints, for `dqa-mcu run` to parse:
 *   board <name>
 *   output <image> <v0> <v1> ...        the int16 outputs
 *   status <image> <overflowed tensors>
 *   instructions <image> <count>        per inference (QEMU: -icount shift=0)
 *   layer <index> <name> <count>        per layer, on a last extra run of image 0
 *   done
 * Returns 0 on success, 2 if the memory plan does not fit the kernels.
 */
#include <stdio.h>
#include <string.h>

#include "dqa_board.h"
#include "harness_inputs.h"
#include "model.h"

static uint64_t layer_start;

#ifdef DQA_MODEL_INPUT_ROW_BYTES /* the model asks for its input row by row (dqa_model_set_input()) */
static int harness_image;

static void harness_input_row(uint32_t row, uint8_t *dst)
{
    memcpy(dst, dqa_harness_pixels[harness_image] + (size_t)row * DQA_MODEL_INPUT_ROW_BYTES, DQA_MODEL_INPUT_ROW_BYTES);
}

static void set_input(int image)
{
    harness_image = image;
    dqa_model_set_input(harness_input_row);
}
#else
static void set_input(int image)
{
    memcpy(dqa_model_input(), dqa_harness_pixels[image], DQA_MODEL_INPUT_BYTES);
}
#endif

static void print_layer(int layer, const char *name)
{
    uint64_t now = dqa_board_instructions();
    printf("layer %d %s %llu\n", layer, name, (unsigned long long)(now - layer_start));
    layer_start = dqa_board_instructions(); /* the printf above is not counted */
}

int main(void)
{
    dqa_board_init();
    printf("board %s\n", dqa_board_name());
    if (dqa_model_init() != 0) {
        printf("error: a kernel needs more scratch memory than the plan gives it\n");
        return 2;
    }
    for (int image = 0; image < DQA_HARNESS_IMAGES; ++image) {
        dqa_status_t status;
        set_input(image);
        uint64_t start = dqa_board_instructions();
        dqa_model_run(&status, NULL);
        uint64_t used = dqa_board_instructions() - start;
        const int16_t *out = dqa_model_output();
        printf("output %d", image);
        for (int i = 0; i < DQA_MODEL_OUTPUT_COUNT; ++i) {
            printf(" %d", out[i]);
        }
        printf("\nstatus %d %lu\n", image, (unsigned long)status.overflowed_tensors);
        printf("instructions %d %llu\n", image, (unsigned long long)used);
    }
    dqa_status_t status;
    set_input(0);
    layer_start = dqa_board_instructions();
    dqa_model_run(&status, print_layer);
    printf("done\n");
    return 0;
}
