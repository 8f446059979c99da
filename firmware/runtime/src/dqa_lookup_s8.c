/* dqa-mcu runtime: LOGISTIC and TANH, TFLite-exact int8 (docs/spec_tflite.md 3.17): a 256-entry table. */
#include "dqa_s8_internal.h"

void dqa_lookup_s8(const int8_t *table, uint32_t size, const int8_t *input, int8_t *output)
{
    for (uint32_t i = 0; i < size; ++i) {
        output[i] = table[input[i] + 128];
    }
}
