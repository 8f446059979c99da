/*
 * nucleo_h743zi.c - NUCLEO-H743ZI: STM32H743ZI (Cortex-M7, FPv5-D16),
 * 480 MHz from HSI (64 MHz) through PLL1 (64 / 4 x 60 / 2) at VOS0 (LDO
 * supply, scale 1 + SYSCFG over-drive), AXI/AHB 240 MHz, APB 120 MHz, 4
 * flash wait states; L1 caches on; console on USART3 (PD8 TX, PD9 RX, AF7):
 * the ST-LINK virtual COM port (RM0433 sections 6, 7, 8, 48).
 */
#include "dqa_stm32.h"

#define PWR_BASE      0x58024800u
#define PWR_CSR1      (PWR_BASE + 0x04u)
#define PWR_CR3       (PWR_BASE + 0x0Cu)
#define PWR_D3CR      (PWR_BASE + 0x18u)
#define SYSCFG_PWRCR  0x5800042Cu
#define RCC_BASE      0x58024400u
#define RCC_CR        (RCC_BASE + 0x00u)
#define RCC_CFGR      (RCC_BASE + 0x10u)
#define RCC_D1CFGR    (RCC_BASE + 0x18u)
#define RCC_D2CFGR    (RCC_BASE + 0x1Cu)
#define RCC_D3CFGR    (RCC_BASE + 0x20u)
#define RCC_PLLCKSELR (RCC_BASE + 0x28u)
#define RCC_PLLCFGR   (RCC_BASE + 0x2Cu)
#define RCC_PLL1DIVR  (RCC_BASE + 0x30u)
#define RCC_AHB4ENR   (RCC_BASE + 0xE0u)
#define RCC_APB1LENR  (RCC_BASE + 0xE8u)
#define RCC_APB4ENR   (RCC_BASE + 0xF4u)
#define FLASH_ACR     0x52002000u
#define GPIOD_BASE    0x58020C00u
#define USART3_BASE   0x40004800u /* clocked from PCLK1 (RCC_D2CCIP2R USART234578SEL reset value) */

#define PWR_CR3_SUPPLY     7u        /* BYPASS, LDOEN, SCUEN */
#define PWR_CR3_LDOEN      (1u << 1)
#define PWR_CSR1_ACTVOSRDY (1u << 13)
#define PWR_D3CR_VOS       (3u << 14)
#define PWR_D3CR_VOSRDY    (1u << 13)
#define RCC_CR_HSIRDY      (1u << 2)
#define RCC_CR_PLL1ON      (1u << 24)
#define RCC_CR_PLL1RDY     (1u << 25)
#define RCC_CFGR_SW        7u
#define RCC_CFGR_SWS       (7u << 3)
#define FLASH_ACR_LATENCY  0xFu
#define HSI_HZ 64000000u

const char dqa_stm32_board[] = "NUCLEO-H743ZI (STM32H743ZI)";

dqa_stm32_clocks_t dqa_stm32_clock_init(void)
{
    const dqa_stm32_clocks_t reset = {HSI_HZ, HSI_HZ, 0};
    const dqa_stm32_clocks_t full = {480000000u, 120000000u, 1};
    const uint32_t flash_acr = 4u | (2u << 4); /* 4 WS, WRHIGHFREQ 2 (AXI 240 MHz at VOS0) */

    dqa_stm32_m7_caches_enable();
    /* Supply from the LDO (the Nucleo's wiring); written once after reset. */
    dqa_stm32_modify(PWR_CR3, PWR_CR3_SUPPLY, PWR_CR3_LDOEN);
    if (!dqa_stm32_wait(PWR_CSR1, PWR_CSR1_ACTVOSRDY, PWR_CSR1_ACTVOSRDY)) {
        return reset;
    }
    dqa_stm32_modify(PWR_D3CR, PWR_D3CR_VOS, PWR_D3CR_VOS); /* scale 1 */
    if (!dqa_stm32_wait(PWR_D3CR, PWR_D3CR_VOSRDY, PWR_D3CR_VOSRDY)) {
        return reset;
    }
    DQA_REG(RCC_APB4ENR) |= 1u << 1; /* SYSCFG */
    (void)DQA_REG(RCC_APB4ENR);
    DQA_REG(SYSCFG_PWRCR) |= 1u; /* ODEN: VOS0, needed for 480 MHz */
    if (!dqa_stm32_wait(PWR_D3CR, PWR_D3CR_VOSRDY, PWR_D3CR_VOSRDY)) {
        return reset;
    }
    if (!dqa_stm32_wait(RCC_CR, RCC_CR_HSIRDY, RCC_CR_HSIRDY)) {
        return reset;
    }
    DQA_REG(RCC_PLLCKSELR) = 0u | (4u << 4); /* PLLSRC = HSI, DIVM1 = 4: 16 MHz reference */
    /* PLL1RGE = 3 (8..16 MHz), wide VCO, DIVP1/Q1/R1 outputs on */
    DQA_REG(RCC_PLLCFGR) = (3u << 2) | (1u << 16) | (1u << 17) | (1u << 18);
    /* VCO 16 x 60 = 960 MHz; P = 2 (480), Q = 4 (240), R = 2 (480); fields hold value - 1 */
    DQA_REG(RCC_PLL1DIVR) = (60u - 1u) | ((2u - 1u) << 9) | ((4u - 1u) << 16) | ((2u - 1u) << 24);
    DQA_REG(RCC_CR) |= RCC_CR_PLL1ON;
    if (!dqa_stm32_wait(RCC_CR, RCC_CR_PLL1RDY, RCC_CR_PLL1RDY)) {
        return reset;
    }
    DQA_REG(FLASH_ACR) = flash_acr;
    if ((DQA_REG(FLASH_ACR) & FLASH_ACR_LATENCY) != (flash_acr & FLASH_ACR_LATENCY)) {
        return reset;
    }
    DQA_REG(RCC_D1CFGR) = (8u << 0) | (4u << 4); /* HPRE /2 (AXI, AHB 240 MHz), D1PPRE /2 */
    DQA_REG(RCC_D2CFGR) = (4u << 4) | (4u << 8); /* D2PPRE1, D2PPRE2 /2: 120 MHz */
    DQA_REG(RCC_D3CFGR) = 4u << 4;               /* D3PPRE /2 */
    dqa_stm32_modify(RCC_CFGR, RCC_CFGR_SW, 3u); /* PLL1 */
    if (!dqa_stm32_wait(RCC_CFGR, RCC_CFGR_SWS, 3u << 3)) {
        dqa_stm32_modify(RCC_CFGR, RCC_CFGR_SW, 0u);
        DQA_REG(RCC_D1CFGR) = 0u;
        DQA_REG(RCC_D2CFGR) = 0u;
        DQA_REG(RCC_D3CFGR) = 0u;
        return reset;
    }
    return full;
}

void dqa_stm32_console_init(uint32_t console_hz)
{
    DQA_REG(RCC_AHB4ENR) |= 1u << 3;   /* GPIOD */
    DQA_REG(RCC_APB1LENR) |= 1u << 18; /* USART3 */
    (void)DQA_REG(RCC_APB1LENR);
    dqa_stm32_gpio_alternate(GPIOD_BASE, 8u, 7u);
    dqa_stm32_gpio_alternate(GPIOD_BASE, 9u, 7u);
    dqa_stm32_usart_v2_init(USART3_BASE, (console_hz + DQA_STM32_BAUD / 2u) / DQA_STM32_BAUD);
}

void dqa_stm32_console_putc(char c)
{
    dqa_stm32_usart_v2_putc(USART3_BASE, c);
}
