/*
 * stm32_f4f7_clock.c - HSI -> PLL -> SYSCLK on the STM32F4 and F7, whose
 * RCC, PWR (voltage scale, over-drive) and FLASH_ACR share one layout
 * (RM0390 section 6, RM0410 section 5).  Every ready flag is waited for a
 * bounded time; if one never comes (QEMU), the core stays on HSI (16 MHz).
 */
#include "dqa_stm32.h"

#define RCC_BASE    0x40023800u
#define RCC_CR      (RCC_BASE + 0x00u)
#define RCC_PLLCFGR (RCC_BASE + 0x04u)
#define RCC_CFGR    (RCC_BASE + 0x08u)
#define RCC_APB1ENR (RCC_BASE + 0x40u)
#define PWR_CR      0x40007000u /* PWR_CR1 on F7 */
#define PWR_CSR     0x40007004u /* PWR_CSR1 on F7 */
#define FLASH_ACR   0x40023C00u

#define RCC_CR_HSIRDY     (1u << 1)
#define RCC_CR_PLLON      (1u << 24)
#define RCC_CR_PLLRDY     (1u << 25)
#define RCC_APB1ENR_PWREN (1u << 28)
#define PWR_CR_VOS_SCALE1 (3u << 14)
#define PWR_CR_ODEN       (1u << 16)
#define PWR_CR_ODSWEN     (1u << 17)
#define PWR_CSR_ODRDY     (1u << 16)
#define PWR_CSR_ODSWRDY   (1u << 17)
#define RCC_CFGR_SW_MASK  3u
#define RCC_CFGR_SW_PLL   2u
#define RCC_CFGR_SWS_MASK (3u << 2)
#define RCC_CFGR_SWS_PLL  (2u << 2)
#define RCC_CFGR_PRE_MASK ((0xFu << 4) | (7u << 10) | (7u << 13)) /* HPRE, PPRE1, PPRE2 */
#define FLASH_ACR_LATENCY 0xFu
#define HSI_HZ 16000000u

dqa_stm32_clocks_t dqa_stm32_f4f7_clock_init(const dqa_stm32_f4f7_pll_t *pll)
{
    const dqa_stm32_clocks_t reset = {HSI_HZ, HSI_HZ, 0};
    dqa_stm32_clocks_t full = {pll->core_hz, pll->apb1_hz, 1};

    DQA_REG(RCC_APB1ENR) |= RCC_APB1ENR_PWREN;
    (void)DQA_REG(RCC_APB1ENR); /* the enable takes effect before PWR is written */
    dqa_stm32_modify(PWR_CR, 3u << 14, PWR_CR_VOS_SCALE1);
    if (!dqa_stm32_wait(RCC_CR, RCC_CR_HSIRDY, RCC_CR_HSIRDY)) {
        return reset;
    }
    /* PLLSRC = HSI (bit 22 clear), PLLP = /2 (code 0) */
    DQA_REG(RCC_PLLCFGR) = pll->pll_m | (pll->pll_n << 6) | (pll->pll_q << 24) | (pll->pll_r << 28);
    DQA_REG(RCC_CR) |= RCC_CR_PLLON;
    if (!dqa_stm32_wait(RCC_CR, RCC_CR_PLLRDY, RCC_CR_PLLRDY)) {
        return reset;
    }
    /* Over-drive: needed above 168 MHz (F446) / 180 MHz (F767). */
    DQA_REG(PWR_CR) |= PWR_CR_ODEN;
    if (!dqa_stm32_wait(PWR_CSR, PWR_CSR_ODRDY, PWR_CSR_ODRDY)) {
        return reset;
    }
    DQA_REG(PWR_CR) |= PWR_CR_ODSWEN;
    if (!dqa_stm32_wait(PWR_CSR, PWR_CSR_ODSWRDY, PWR_CSR_ODSWRDY)) {
        return reset;
    }
    /* Wait states before the frequency goes up; read back, as the manual asks. */
    DQA_REG(FLASH_ACR) = pll->flash_acr;
    if ((DQA_REG(FLASH_ACR) & FLASH_ACR_LATENCY) != (pll->flash_acr & FLASH_ACR_LATENCY)) {
        return reset;
    }
    dqa_stm32_modify(RCC_CFGR, RCC_CFGR_PRE_MASK, (pll->ppre1 << 10) | (pll->ppre2 << 13));
    dqa_stm32_modify(RCC_CFGR, RCC_CFGR_SW_MASK, RCC_CFGR_SW_PLL);
    if (!dqa_stm32_wait(RCC_CFGR, RCC_CFGR_SWS_MASK, RCC_CFGR_SWS_PLL)) {
        dqa_stm32_modify(RCC_CFGR, RCC_CFGR_SW_MASK | RCC_CFGR_PRE_MASK, 0u); /* back to HSI, /1 */
        return reset;
    }
    return full;
}
