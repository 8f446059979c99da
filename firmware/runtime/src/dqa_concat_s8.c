/* dqa-mcu runtime: CONCATENATION, TFLite-exact int8 (docs/spec_tflite.md 3.9): a copy. */
#include <stddef.h>
#include <string.h>

#include "dqa_s8_internal.h"

void dqa_concat_s8(const int8_t *const *inputs, const uint32_t *inner, uint16_t count, uint32_t outer,
                   int8_t *output)
{
    for (uint32_t o = 0; o < outer; ++o) {
        for (uint16_t i = 0; i < count; ++i) {
            memcpy(output, inputs[i] + (size_t)o * inner[i], inner[i]);
            output += inner[i];
        }
    }
}
