/*
 * dqa_board_qemu.c - dqa_board.h for the QEMU Cortex-M machines.
 *
 * Instruction counter: SysTick (dqa_systick.c).  Under QEMU with
 * `-icount shift=0` one instruction = 1 ns of virtual time, hence
 *     instructions = ticks * 1e9 / DQA_BOARD_CPU_HZ.
 * DQA_BOARD_CPU_HZ and DQA_BOARD_NAME are set per target by
 * firmware/cmake/dqa_targets.cmake.
 *
 * Console and exit: semihosting (stdio through newlib's rdimon, and the
 * direct calls below for the fault handler).
 */
#include "dqa_board.h"

#include "dqa_board_internal.h"
#include "dqa_systick.h"

#ifndef DQA_BOARD_CPU_HZ
#error "DQA_BOARD_CPU_HZ must be defined (SysTick/CPU clock of the QEMU machine)"
#endif
#ifndef DQA_BOARD_NAME
#define DQA_BOARD_NAME "qemu-cortex-m"
#endif

static int dqa_started;

void dqa_board_init(void)
{
    dqa_systick_start();
    dqa_started = 1;
}

uint64_t dqa_board_instructions(void)
{
    uint64_t ticks;
    const uint64_t hz = (uint64_t)(DQA_BOARD_CPU_HZ);
    const uint64_t ns = 1000000000ull;

    if (!dqa_started) {
        return 0u;
    }
    ticks = dqa_systick_ticks();
    /* ticks * 1e9 / hz without overflowing for long runs. */
    return (ticks / hz) * ns + ((ticks % hz) * ns) / hz;
}

const char *dqa_board_name(void)
{
    return DQA_BOARD_NAME;
}

/* ---------------------------------------------------------------------- */
/* Minimal direct semihosting (usable from handler mode, before newlib).   */

static uint32_t dqa_semihost(uint32_t op, const void *arg)
{
    register uint32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

void dqa_board_puts_raw(const char *s)
{
    dqa_semihost(0x04u /* SYS_WRITE0 */, s);
}

void dqa_board_halt(uint32_t code)
{
    /* SYS_EXIT_EXTENDED(ADP_Stopped_ApplicationExit, code) */
    uint32_t block[2];
    block[0] = 0x20026u;
    block[1] = code;
    dqa_semihost(0x20u, block);
    /* Fallback: plain SYS_EXIT with a run-time-error reason (exit code 1). */
    dqa_semihost(0x18u, (const void *)0x20023u);
    for (;;) {
    }
}

/*
 * rdimon-crt0 asks QEMU for the heap/stack layout (SYS_HEAPINFO), stores the
 * answered heap limit in newlib's __heap_limit and moves the stack pointer to
 * the answered stack base: QEMU derives both from the largest RAM block of
 * the machine, which is not the RAM region of our linker script (e.g. PSRAM,
 * or a DDR block behind a TrustZone MPC that Secure code cannot use).  crt0
 * then calls the weak hook _stack_init (a leaf called with BL, after sp was
 * set and before anything is pushed).  We override it to put sp back at the
 * top of our RAM region and to let the heap grow from `end` up to the stack,
 * so the layout is the one the linker script documents on every machine.
 * (Seen with QEMU 7.2 without this override: sp in PSRAM at 0x22000000 on
 * mps2-an385 and 0x81000000 on mps2-an505; on mps3-an547 sp at the top of
 * the ITCM (0x00080000) and a heap limit below `end`, so malloc() - and
 * with it printf's buffers - failed.)
 */
void _stack_init(void) __attribute__((naked));
void _stack_init(void)
{
    __asm__ volatile(
        "ldr r3, =_estack\n\t"
        "mov sp, r3\n\t"
        "ldr r2, =__heap_limit\n\t"
        "str r3, [r2]\n\t"
        "bx lr\n\t"
        ".ltorg\n\t");
}
