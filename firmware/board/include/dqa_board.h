/*
 * dqa_board.h - minimal board API for dqa-mcu firmware (C99).
 *
 * Implementations:
 *   - QEMU Cortex-M machines (mps2-an385/an386/an500/an505, mps3-an547):
 *     firmware/board/src/dqa_board_qemu.c + startup_cortexm.c
 *   - STM32 Nucleo boards (nucleo-f446re/-f767zi/-l4r5zi/-h743zi):
 *     firmware/board/src/dqa_board_stm32.c + nucleo_<board>.c + startup_cortexm.c;
 *     there the counter counts core clock cycles (DWT, or SysTick where DWT
 *     does not count, as under QEMU's netduinoplus2), not instructions
 *   - host (plain gcc, for tests / sanitizers): firmware/board/src/dqa_board_host.c
 *
 * Instruction counting (QEMU only)
 * --------------------------------
 * QEMU is not cycle-accurate.  Run it with `-icount shift=0`: every guest
 * instruction then advances the virtual clock by exactly 1 ns, so the SysTick
 * timer (clocked from the CPU clock, CLKSOURCE=1) measures executed
 * instructions, deterministically:
 *
 *     instructions = ticks * 1e9 / DQA_BOARD_CPU_HZ
 *
 *     target      machine      CPU clock  instructions per tick (= resolution)
 *     cortex-m3   mps2-an385   25 MHz     40
 *     cortex-m4   mps2-an386   25 MHz     40
 *     cortex-m7   mps2-an500   25 MHz     40
 *     cortex-m33  mps2-an505   20 MHz     50
 *     cortex-m55  mps3-an547   32 MHz     31.25 (results are rounded down)
 * (verified with QEMU 7.2 by host_tests/test_board.py: a loop of exactly 2N
 * extra instructions reads as 2N +- one tick, also across SysTick wraps.)
 *
 * The 24-bit SysTick wraps every 2^24 ticks; wrap-arounds are counted in the
 * SysTick interrupt, so the 64-bit count does not overflow in practice.  A
 * reading combines the wrap count and the current SysTick value, so its
 * resolution is one tick (see table), not one wrap.  Reading the counter
 * itself costs a few tens of instructions.  Compare counts as ratios; they
 * are not cycles of a real core.  Without -icount the value is host time.
 *
 * On the host build dqa_board_instructions() always returns 0:
 * instructions are only counted on QEMU.
 */
#ifndef DQA_BOARD_H
#define DQA_BOARD_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Initialise the board and (re)start the instruction counter at 0.
 * Enables the SysTick interrupt on QEMU targets; on a board also sets up its
 * clocks and console UART; a no-op on the host. */
void dqa_board_init(void);

/* Instructions executed since the last dqa_board_init() (monotonic, see the
 * resolution table above).  0 before dqa_board_init() and always 0 on host. */
uint64_t dqa_board_instructions(void);

/* Human-readable board name, e.g. "mps2-an500 (cortex-m7)", "host", or
 * "NUCLEO-F446RE (STM32F446RE) at 180 MHz, counting DWT cycles". */
const char *dqa_board_name(void);

#ifdef __cplusplus
}
#endif

#endif /* DQA_BOARD_H */
