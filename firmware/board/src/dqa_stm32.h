/*
 * dqa_stm32.h - register helpers shared by the STM32 Nucleo board files, and
 * what each board file provides to dqa_board_stm32.c.
 *
 * Register-level on purpose: no vendor package, nothing downloaded.  Register
 * offsets and bits are those of the reference manuals (RM0390 F446, RM0410
 * F767, RM0432 L4R5, RM0433 H743).
 */
#ifndef DQA_STM32_H
#define DQA_STM32_H

#include <stdint.h>

#define DQA_REG(address) (*(volatile uint32_t *)(uintptr_t)(address))

/* Polls of a ready flag before giving up.  Silicon sets its flags within a
 * few hundred microseconds (< 10,000 polls at 16 MHz); QEMU's netduinoplus2
 * reads RCC, PWR and FLASH as zero and would never set them. */
#define DQA_STM32_READY_POLLS 100000u

/* Waits until (register & mask) == value; 1 if it got there, 0 if it gave up. */
int dqa_stm32_wait(uint32_t address, uint32_t mask, uint32_t value);

/* Writes `value` into the bits `mask` of a register (read-modify-write). */
void dqa_stm32_modify(uint32_t address, uint32_t mask, uint32_t value);

/* GPIO pin in alternate function `af` (MODER, OSPEEDR, AFR: the same layout
 * on F4, F7, L4+ and H7), high speed, no pull. */
void dqa_stm32_gpio_alternate(uint32_t gpio_base, unsigned pin, unsigned af);

/* The ISR/TDR USART (F7, L4+ LPUART1, H7): 8N1, transmit and receive, with
 * `brr` (the caller computes it: USART clock / baud; LPUART 256 x that). */
void dqa_stm32_usart_v2_init(uint32_t base, uint32_t brr);
void dqa_stm32_usart_v2_putc(uint32_t base, char c);

/* Cortex-M7 L1 instruction and data caches on (invalidated first). */
void dqa_stm32_m7_caches_enable(void);

/* Clocks as set up by the board file. */
typedef struct {
    uint32_t core_hz;    /* CPU (and SysTick, DWT) clock */
    uint32_t console_hz; /* kernel clock of the console UART */
    int full_speed;      /* 0: a ready flag never came, still on the reset oscillator */
} dqa_stm32_clocks_t;

/* Provided by each board file (nucleo_*.c): */
extern const char dqa_stm32_board[];     /* e.g. "NUCLEO-F446RE (STM32F446RE)" */
dqa_stm32_clocks_t dqa_stm32_clock_init(void); /* PLL to the board's usual frequency */
void dqa_stm32_console_init(uint32_t console_hz); /* VCP UART at DQA_STM32_BAUD */
void dqa_stm32_console_putc(char c);

#define DQA_STM32_BAUD 115200u

/* F4 and F7 share the RCC, PWR over-drive and FLASH_ACR layout: HSI (16 MHz)
 * -> PLL (m, n, p = 2, q, r) -> SYSCLK with the given APB prescaler codes
 * and flash wait states (stm32_f4f7_clock.c). */
typedef struct {
    uint32_t pll_m, pll_n, pll_q, pll_r;
    uint32_t ppre1, ppre2;      /* RCC_CFGR prescaler codes (4: /2, 5: /4) */
    uint32_t flash_acr;         /* wait states and accelerator bits */
    uint32_t core_hz, apb1_hz;  /* what that gives */
} dqa_stm32_f4f7_pll_t;

dqa_stm32_clocks_t dqa_stm32_f4f7_clock_init(const dqa_stm32_f4f7_pll_t *pll);

#endif /* DQA_STM32_H */
