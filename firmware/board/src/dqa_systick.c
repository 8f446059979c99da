/*
 * dqa_systick.c - SysTick clocked from the CPU clock (CLKSOURCE=1), reload
 * 0xFFFFFF, interrupt on every wrap-around (see dqa_systick.h).
 */
#include "dqa_systick.h"

#include "dqa_board_internal.h"

#define SYST_CSR (*(volatile uint32_t *)0xE000E010u)
#define SYST_RVR (*(volatile uint32_t *)0xE000E014u)
#define SYST_CVR (*(volatile uint32_t *)0xE000E018u)
#define SCB_ICSR (*(volatile uint32_t *)0xE000ED04u)
#define SCB_SHPR3 (*(volatile uint32_t *)0xE000ED20u)

#define SYST_CSR_ENABLE    (1u << 0)
#define SYST_CSR_TICKINT   (1u << 1)
#define SYST_CSR_CLKSOURCE (1u << 2)
#define SCB_ICSR_PENDSTSET (1u << 26)
#define SCB_ICSR_PENDSTCLR (1u << 25)

#define SYST_RELOAD 0x00FFFFFFu

static volatile uint32_t dqa_systick_wraps;
static uint64_t dqa_tick_base;

void SysTick_Handler(void)
{
    dqa_systick_wraps = dqa_systick_wraps + 1u;
}

/* Ticks since SysTick was started: wraps * 2^24 + elapsed part of the current
 * period.  Interrupts are masked so the wrap count and the counter value are
 * read consistently; a wrap that happened but whose interrupt has not been
 * taken yet shows up as PENDSTSET and is accounted for here. */
static uint64_t dqa_raw_ticks(void)
{
    uint32_t primask;
    uint32_t wraps;
    uint32_t value;

    __asm__ volatile("mrs %0, primask\n\tcpsid i" : "=r"(primask) : : "memory");
    wraps = dqa_systick_wraps;
    value = SYST_CVR;
    if (SCB_ICSR & SCB_ICSR_PENDSTSET) {
        /* Wrapped (maybe after `value` was read): re-read after the wrap. */
        value = SYST_CVR;
        wraps += 1u;
    }
    __asm__ volatile("msr primask, %0" : : "r"(primask) : "memory");
    return ((uint64_t)wraps << 24) + (uint64_t)(SYST_RELOAD - (value & SYST_RELOAD));
}

void dqa_systick_start(void)
{
    SYST_CSR = 0u;
    SCB_ICSR = SCB_ICSR_PENDSTCLR;
    /* SysTick exception at the highest configurable priority (0). */
    SCB_SHPR3 &= 0x00FFFFFFu;
    dqa_systick_wraps = 0u;
    SYST_RVR = SYST_RELOAD;
    SYST_CVR = 0u; /* any write clears the counter; it reloads on the next tick */
    SYST_CSR = SYST_CSR_CLKSOURCE | SYST_CSR_TICKINT | SYST_CSR_ENABLE;
    __asm__ volatile("dsb\n\tisb\n\tcpsie i" : : : "memory");
    /* The cleared counter reads 0 until the first tick reloads it from RVR
     * (that reload is not a wrap): wait for it (at most one tick), so the
     * base reading below is inside the first full period. */
    while (SYST_CVR == 0u) {
    }
    dqa_tick_base = dqa_raw_ticks();
}

uint64_t dqa_systick_ticks(void)
{
    return dqa_raw_ticks() - dqa_tick_base;
}
