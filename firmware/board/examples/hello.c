/*
 * hello.c - smoke test for the dqa-mcu board support.
 *
 * Prints "hello <board name>", runs a loop of known work N times and then
 * 2N times, prints the instructions counted for each and in total, and
 * returns 3 (which QEMU turns into its exit code through semihosting).
 *
 * N defaults to DQA_HELLO_LOOP; a first argument overrides it (QEMU:
 * -append "<N>", host: ./hello <N>).  On Cortex-M one loop iteration is
 * exactly two instructions (subs + bne), so the difference between the two
 * measurements is 2*N instructions, which checks the ticks->instructions
 * scale of the board (instructions are only counted on QEMU; host prints 0).
 */
#include <stdio.h>
#include <stdlib.h>

#include "dqa_board.h"

#ifndef DQA_HELLO_LOOP
#define DQA_HELLO_LOOP 100000u
#endif

static uint32_t burn(uint32_t n)
{
    if (n == 0u) {
        return 0u;
    }
#if defined(__arm__) && defined(__thumb2__)
    __asm__ volatile(
        "1:\n\t"
        "subs %0, %0, #1\n\t"
        "bne 1b\n\t"
        : "+r"(n)
        :
        : "cc");
    return n;
#else
    {
        volatile uint32_t i = n;
        while (i != 0u) {
            i = i - 1u;
        }
        return i;
    }
#endif
}

int main(int argc, char **argv)
{
    uint32_t n = DQA_HELLO_LOOP;
    uint64_t t0, t1, t2;

    if (argc > 1 && argv[1] != NULL) {
        long v = strtol(argv[1], NULL, 0);
        if (v > 0) {
            n = (uint32_t)v;
        }
    }

    dqa_board_init();
    printf("hello %s\n", dqa_board_name());

    t0 = dqa_board_instructions();
    (void)burn(n);
    t1 = dqa_board_instructions();
    (void)burn(2u * n);
    t2 = dqa_board_instructions();

    /* %llu, not PRIu64: Debian's arm-none-eabi-gcc uses GCC's own
     * <stdint.h>, with which newlib's <inttypes.h> omits the 64-bit PRI
     * macros.  newlib's printf does support %llu. */
    printf("loop %lu: %llu instructions\n", (unsigned long)n,
           (unsigned long long)(t1 - t0));
    printf("loop %lu: %llu instructions\n", (unsigned long)(2u * n),
           (unsigned long long)(t2 - t1));
    printf("total: %llu instructions\n",
           (unsigned long long)dqa_board_instructions());
    return 3;
}
