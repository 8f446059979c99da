/*
 * nucleo_f446re.c - NUCLEO-F446RE: STM32F446RE (Cortex-M4F), 180 MHz from
 * HSI through the PLL (16 / 16 x 360 / 2; APB1 45 MHz, APB2 90 MHz, 5 flash
 * wait states), console on USART2 (PA2 TX, PA3 RX, AF7): the ST-LINK virtual
 * COM port.  The same image runs under QEMU's netduinoplus2 (an STM32F405:
 * same USART2, RCC and FLASH not modelled, so it stays on HSI there).
 */
#include "dqa_stm32.h"

#define RCC_AHB1ENR 0x40023830u
#define RCC_APB1ENR 0x40023840u
#define GPIOA_BASE  0x40020000u
#define USART2_BASE 0x40004400u
#define USART_SR    (USART2_BASE + 0x00u) /* the F4's SR/DR USART */
#define USART_DR    (USART2_BASE + 0x04u)
#define USART_BRR   (USART2_BASE + 0x08u)
#define USART_CR1   (USART2_BASE + 0x0Cu)
#define USART_SR_TXE (1u << 7)
#define USART_CR1_UE (1u << 13)
#define USART_CR1_TE (1u << 3)
#define USART_CR1_RE (1u << 2)

const char dqa_stm32_board[] = "NUCLEO-F446RE (STM32F446RE)";

dqa_stm32_clocks_t dqa_stm32_clock_init(void)
{
    static const dqa_stm32_f4f7_pll_t pll = {
        .pll_m = 16u, .pll_n = 360u, .pll_q = 7u, .pll_r = 2u,
        .ppre1 = 5u, .ppre2 = 4u,                             /* /4, /2 */
        .flash_acr = 5u | (1u << 8) | (1u << 9) | (1u << 10), /* 5 WS, prefetch, I and D cache */
        .core_hz = 180000000u, .apb1_hz = 45000000u,
    };
    return dqa_stm32_f4f7_clock_init(&pll);
}

void dqa_stm32_console_init(uint32_t console_hz)
{
    DQA_REG(RCC_AHB1ENR) |= 1u << 0;  /* GPIOA */
    DQA_REG(RCC_APB1ENR) |= 1u << 17; /* USART2 */
    (void)DQA_REG(RCC_APB1ENR);
    dqa_stm32_gpio_alternate(GPIOA_BASE, 2u, 7u);
    dqa_stm32_gpio_alternate(GPIOA_BASE, 3u, 7u);
    DQA_REG(USART_CR1) = 0u;
    DQA_REG(USART_BRR) = (console_hz + DQA_STM32_BAUD / 2u) / DQA_STM32_BAUD; /* 16x oversampling */
    DQA_REG(USART_CR1) = USART_CR1_UE | USART_CR1_TE | USART_CR1_RE;
}

void dqa_stm32_console_putc(char c)
{
    (void)dqa_stm32_wait(USART_SR, USART_SR_TXE, USART_SR_TXE);
    DQA_REG(USART_DR) = (uint8_t)c;
}
