/*
 * dqa_board_internal.h - what startup_cortexm.c needs from a board file.
 *
 * The QEMU machines (dqa_board_qemu.c) talk through semihosting; the real
 * boards (dqa_board_stm32.c) through their virtual COM port UART and have no
 * host to exit to.  Both provide these.
 */
#ifndef DQA_BOARD_INTERNAL_H
#define DQA_BOARD_INTERNAL_H

#include <stdint.h>

/* Writes a string without stdio or interrupts (usable in a fault handler). */
void dqa_board_puts_raw(const char *s);

/* Ends the program with `code`: QEMU's exit code, or "dqa: exit <code>" on
 * the console and a halt on a board. */
void dqa_board_halt(uint32_t code) __attribute__((noreturn));

/* SysTick interrupt (dqa_systick.c). */
void SysTick_Handler(void);

#endif /* DQA_BOARD_INTERNAL_H */
