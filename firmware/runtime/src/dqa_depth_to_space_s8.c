/* dqa-mcu runtime: DEPTH_TO_SPACE, TFLite-exact int8 (docs/spec_tflite.md 3.16): a copy. */
#include <stddef.h>
#include <string.h>

#include "dqa_s8_internal.h"

void dqa_depth_to_space_s8(const dqa_depth_to_space_s8_params_t *p, const int8_t *input, int8_t *output)
{
    const size_t out_c = (size_t)p->in_c / ((size_t)p->block * p->block);
    for (uint32_t oy = 0; oy < (uint32_t)p->in_h * p->block; ++oy) {
        for (uint32_t ox = 0; ox < (uint32_t)p->in_w * p->block; ++ox) {
            /* output (oy, ox) is channel block (oy % block, ox % block) of input pixel (oy / block, ox / block) */
            const size_t pixel = (size_t)(oy / p->block) * p->in_w + ox / p->block;
            const size_t group = (size_t)(oy % p->block) * p->block + ox % p->block;
            memcpy(output, input + pixel * p->in_c + group * out_c, out_c);
            output += out_c;
        }
    }
}
