/*
 * dqa_systick.h - a 64-bit tick counter from SysTick (processor clock,
 * 24-bit, wrap-arounds counted in its interrupt).  Used by the QEMU machines
 * (where, with -icount shift=0, ticks measure instructions) and by the real
 * boards when the DWT cycle counter does not count.
 */
#ifndef DQA_SYSTICK_H
#define DQA_SYSTICK_H

#include <stdint.h>

/* (Re)starts the counter at 0 and enables the SysTick interrupt. */
void dqa_systick_start(void);

/* Processor clock ticks since dqa_systick_start() (resolution one tick). */
uint64_t dqa_systick_ticks(void);

#endif /* DQA_SYSTICK_H */
