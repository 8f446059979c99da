/*
 * nucleo_f767zi.c - NUCLEO-F767ZI: STM32F767ZI (Cortex-M7, FPv5-D16),
 * 216 MHz from HSI through the PLL (16 / 8 x 216 / 2; APB1 54 MHz, APB2
 * 108 MHz, 7 flash wait states, ART and prefetch on), L1 caches on, console
 * on USART3 (PD8 TX, PD9 RX, AF7): the ST-LINK virtual COM port.
 */
#include "dqa_stm32.h"

#define RCC_AHB1ENR 0x40023830u
#define RCC_APB1ENR 0x40023840u
#define GPIOD_BASE  0x40020C00u
#define USART3_BASE 0x40004800u /* clocked from APB1 (RCC_DCKCFGR2 USART3SEL reset value) */

const char dqa_stm32_board[] = "NUCLEO-F767ZI (STM32F767ZI)";

dqa_stm32_clocks_t dqa_stm32_clock_init(void)
{
    static const dqa_stm32_f4f7_pll_t pll = {
        .pll_m = 8u, .pll_n = 216u, .pll_q = 9u, .pll_r = 2u,
        .ppre1 = 5u, .ppre2 = 4u,                 /* /4, /2 */
        .flash_acr = 7u | (1u << 8) | (1u << 9),  /* 7 WS, prefetch, ART accelerator */
        .core_hz = 216000000u, .apb1_hz = 54000000u,
    };
    dqa_stm32_m7_caches_enable();
    return dqa_stm32_f4f7_clock_init(&pll);
}

void dqa_stm32_console_init(uint32_t console_hz)
{
    DQA_REG(RCC_AHB1ENR) |= 1u << 3;  /* GPIOD */
    DQA_REG(RCC_APB1ENR) |= 1u << 18; /* USART3 */
    (void)DQA_REG(RCC_APB1ENR);
    dqa_stm32_gpio_alternate(GPIOD_BASE, 8u, 7u);
    dqa_stm32_gpio_alternate(GPIOD_BASE, 9u, 7u);
    dqa_stm32_usart_v2_init(USART3_BASE, (console_hz + DQA_STM32_BAUD / 2u) / DQA_STM32_BAUD);
}

void dqa_stm32_console_putc(char c)
{
    dqa_stm32_usart_v2_putc(USART3_BASE, c);
}
