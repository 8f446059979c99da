/*
 * nucleo_l4r5zi.c - NUCLEO-L4R5ZI: STM32L4R5ZI (Cortex-M4F), 120 MHz from
 * HSI16 through the PLL (16 / 2 x 30 / 2) in range 1 boost mode, 5 flash wait
 * states, APB1/APB2 120 MHz; console on LPUART1 (PG7 TX, PG8 RX, AF8): the
 * ST-LINK virtual COM port.  Port G is powered from VDDIO2, which must be
 * declared valid (PWR_CR2.IOSV) first (RM0432 sections 5, 6, 53).
 */
#include "dqa_stm32.h"

#define RCC_BASE     0x40021000u
#define RCC_CR       (RCC_BASE + 0x00u)
#define RCC_CFGR     (RCC_BASE + 0x08u)
#define RCC_PLLCFGR  (RCC_BASE + 0x0Cu)
#define RCC_AHB2ENR  (RCC_BASE + 0x4Cu)
#define RCC_APB1ENR1 (RCC_BASE + 0x58u)
#define RCC_APB1ENR2 (RCC_BASE + 0x5Cu)
#define PWR_CR1      0x40007000u
#define PWR_CR2      0x40007004u
#define PWR_SR2      0x40007014u
#define PWR_CR5      0x40007080u
#define FLASH_ACR    0x40022000u
#define GPIOG_BASE   0x48001800u
#define LPUART1_BASE 0x40008000u /* clocked from PCLK1 (RCC_CCIPR LPUART1SEL reset value) */

#define RCC_CR_HSION   (1u << 8)
#define RCC_CR_HSIRDY  (1u << 10)
#define RCC_CR_PLLON   (1u << 24)
#define RCC_CR_PLLRDY  (1u << 25)
#define RCC_CFGR_SW    3u
#define RCC_CFGR_SWS   (3u << 2)
#define RCC_CFGR_HPRE  (0xFu << 4)
#define RCC_CFGR_HPRE_DIV2 (8u << 4)
#define PWR_CR1_VOS    (3u << 9)
#define PWR_CR1_VOS_RANGE1 (1u << 9)
#define PWR_CR2_IOSV   (1u << 9)
#define PWR_SR2_VOSF   (1u << 10)
#define PWR_CR5_R1MODE (1u << 8) /* 0: range 1 boost (needed above 80 MHz) */
#define FLASH_ACR_LATENCY 0xFu
#define MSI_HZ 4000000u          /* the clock out of reset */

const char dqa_stm32_board[] = "NUCLEO-L4R5ZI (STM32L4R5ZI)";

dqa_stm32_clocks_t dqa_stm32_clock_init(void)
{
    const dqa_stm32_clocks_t reset = {MSI_HZ, MSI_HZ, 0};
    const dqa_stm32_clocks_t full = {120000000u, 120000000u, 1};
    const uint32_t flash_acr = 5u | (1u << 8) | (1u << 9) | (1u << 10); /* 5 WS, prefetch, I and D cache */

    DQA_REG(RCC_APB1ENR1) |= 1u << 28; /* PWR */
    (void)DQA_REG(RCC_APB1ENR1);
    DQA_REG(PWR_CR2) |= PWR_CR2_IOSV; /* port G (the console) */
    dqa_stm32_modify(PWR_CR1, PWR_CR1_VOS, PWR_CR1_VOS_RANGE1);
    dqa_stm32_modify(PWR_CR5, PWR_CR5_R1MODE, 0u);
    if (!dqa_stm32_wait(PWR_SR2, PWR_SR2_VOSF, 0u)) {
        return reset;
    }
    DQA_REG(RCC_CR) |= RCC_CR_HSION;
    if (!dqa_stm32_wait(RCC_CR, RCC_CR_HSIRDY, RCC_CR_HSIRDY)) {
        return reset;
    }
    /* PLLSRC = HSI16 (2), PLLM = 2 (code 1, bits 7:4), PLLN = 30, PLLR = 2 (code 0), PLLREN */
    DQA_REG(RCC_PLLCFGR) = 2u | (1u << 4) | (30u << 8) | (1u << 24);
    DQA_REG(RCC_CR) |= RCC_CR_PLLON;
    if (!dqa_stm32_wait(RCC_CR, RCC_CR_PLLRDY, RCC_CR_PLLRDY)) {
        return reset;
    }
    DQA_REG(FLASH_ACR) = flash_acr;
    if ((DQA_REG(FLASH_ACR) & FLASH_ACR_LATENCY) != (flash_acr & FLASH_ACR_LATENCY)) {
        return reset;
    }
    /* Above 80 MHz the switch goes through AHB / 2 for at least 1 us (RM0432 6.2.9). */
    dqa_stm32_modify(RCC_CFGR, RCC_CFGR_HPRE, RCC_CFGR_HPRE_DIV2);
    dqa_stm32_modify(RCC_CFGR, RCC_CFGR_SW, 3u);
    if (!dqa_stm32_wait(RCC_CFGR, RCC_CFGR_SWS, 3u << 2)) {
        dqa_stm32_modify(RCC_CFGR, RCC_CFGR_SW | RCC_CFGR_HPRE, 0u); /* back to MSI, /1 */
        return reset;
    }
    for (volatile uint32_t i = 0u; i < 200u; ++i) { /* > 1 us at 60 MHz */
    }
    dqa_stm32_modify(RCC_CFGR, RCC_CFGR_HPRE, 0u);
    return full;
}

void dqa_stm32_console_init(uint32_t console_hz)
{
    DQA_REG(RCC_AHB2ENR) |= 1u << 6;  /* GPIOG */
    DQA_REG(RCC_APB1ENR2) |= 1u << 0; /* LPUART1 */
    (void)DQA_REG(RCC_APB1ENR2);
    dqa_stm32_gpio_alternate(GPIOG_BASE, 7u, 8u);
    dqa_stm32_gpio_alternate(GPIOG_BASE, 8u, 8u);
    /* LPUART: BRR = 256 x clock / baud */
    dqa_stm32_usart_v2_init(LPUART1_BASE,
                            (uint32_t)(((uint64_t)console_hz * 256u + DQA_STM32_BAUD / 2u) / DQA_STM32_BAUD));
}

void dqa_stm32_console_putc(char c)
{
    dqa_stm32_usart_v2_putc(LPUART1_BASE, c);
}
