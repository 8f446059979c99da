/*
 * startup_cortexm.c - vector table and reset handler for dqa-mcu firmware on
 * the QEMU Cortex-M machines (ARMv7-M and ARMv8-M mainline, Secure state)
 * and the real boards (STM32 Nucleo).
 *
 * Reset_Handler:
 *   1. enables the FPU (and MVE on Cortex-M55) through CPACR when the code is
 *      compiled for one, before any floating-point instruction can run;
 *   2. copies .data from its load address in flash to RAM;
 *   3. zeroes .bss and .fast_bss (the arena's section, see dqa_sections.ld);
 *   4. calls newlib's _mainCRTStartup, which sets up constructors, calls
 *      main() and exit()s with main's return value.  QEMU links rdimon-crt0
 *      (--specs=rdimon.specs: semihosting stdio, argc/argv through
 *      SYS_GET_CMDLINE, QEMU's -append; the exit code becomes QEMU's); a
 *      board links the plain crt0 and retargets stdio to its UART
 *      (dqa_board_stm32.c).
 *
 * The main stack pointer comes from the vector table (top of the RAM region
 * of the linker script).
 *
 * Any unexpected exception prints a message (semihosting, or the board's
 * UART) and ends the program with DQA_FAULT_EXIT_CODE (QEMU's exit code;
 * "dqa: exit 125" on a board), so crashes never hang a test.
 */
#include <stdint.h>

#include "dqa_board_internal.h"

#define DQA_FAULT_EXIT_CODE 125

/* Symbols from the linker script (ld/dqa_sections.ld). */
extern uint32_t __data_start__[];
extern uint32_t __data_end__[];
extern uint32_t __data_load__[];
extern uint32_t __bss_start__[];
extern uint32_t __bss_end__[];
extern uint32_t __fast_bss_start__[];
extern uint32_t __fast_bss_end__[];
extern uint32_t _estack[];

extern void _mainCRTStartup(void) __attribute__((noreturn));

void Reset_Handler(void) __attribute__((noreturn, section(".text.dqa_reset")));
void dqa_default_handler(void);
void dqa_fault_handler(void);

/* Core exception handlers: weak aliases that firmware may override. */
void NMI_Handler(void) __attribute__((weak, alias("dqa_fault_handler")));
void HardFault_Handler(void) __attribute__((weak, alias("dqa_fault_handler")));
void MemManage_Handler(void) __attribute__((weak, alias("dqa_fault_handler")));
void BusFault_Handler(void) __attribute__((weak, alias("dqa_fault_handler")));
void UsageFault_Handler(void) __attribute__((weak, alias("dqa_fault_handler")));
void SecureFault_Handler(void) __attribute__((weak, alias("dqa_fault_handler")));
void SVC_Handler(void) __attribute__((weak, alias("dqa_default_handler")));
void DebugMon_Handler(void) __attribute__((weak, alias("dqa_default_handler")));
void PendSV_Handler(void) __attribute__((weak, alias("dqa_default_handler")));

static void dqa_puts_hex(uint32_t v)
{
    char buf[11];
    int i;
    buf[0] = '0';
    buf[1] = 'x';
    for (i = 0; i < 8; ++i) {
        uint32_t nib = (v >> (28 - 4 * i)) & 0xFu;
        buf[2 + i] = (char)(nib < 10u ? '0' + nib : 'a' + nib - 10u);
    }
    buf[10] = '\0';
    dqa_board_puts_raw(buf);
}

/* ---------------------------------------------------------------------- */

#define SCB_CPACR (*(volatile uint32_t *)0xE000ED88u)
#define SCB_ICSR  (*(volatile uint32_t *)0xE000ED04u)
#define SCB_CFSR  (*(volatile uint32_t *)0xE000ED28u)
#define SCB_HFSR  (*(volatile uint32_t *)0xE000ED2Cu)
#define SCB_MMFAR (*(volatile uint32_t *)0xE000ED34u)
#define SCB_BFAR  (*(volatile uint32_t *)0xE000ED38u)
#define SAU_SFSR  (*(volatile uint32_t *)0xE000EDE4u)

void Reset_Handler(void)
{
    uint32_t *src;
    uint32_t *dst;

#if defined(__ARM_FP) || defined(__ARM_FEATURE_MVE)
    /* CP10 + CP11 full access: FPU (and MVE, which shares the enable). */
    SCB_CPACR |= (0xFu << 20);
    __asm__ volatile("dsb\n\tisb" ::: "memory");
#endif

    src = __data_load__;
    for (dst = __data_start__; dst < __data_end__; ++dst, ++src) {
        *dst = *src;
    }
    for (dst = __bss_start__; dst < __bss_end__; ++dst) {
        *dst = 0u;
    }
    for (dst = __fast_bss_start__; dst < __fast_bss_end__; ++dst) {
        *dst = 0u;
    }

    _mainCRTStartup();
}

void dqa_default_handler(void)
{
    dqa_fault_handler();
}

void dqa_fault_handler(void)
{
    uint32_t ipsr;
    __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr));
    dqa_board_puts_raw("\ndqa: unexpected exception ");
    dqa_puts_hex(ipsr & 0x1FFu);
    dqa_board_puts_raw(" CFSR=");
    dqa_puts_hex(SCB_CFSR);
    dqa_board_puts_raw(" HFSR=");
    dqa_puts_hex(SCB_HFSR);
    dqa_board_puts_raw(" MMFAR=");
    dqa_puts_hex(SCB_MMFAR);
    dqa_board_puts_raw(" BFAR=");
    dqa_puts_hex(SCB_BFAR);
#if defined(__ARM_FEATURE_CMSE)
    dqa_board_puts_raw(" SFSR=");
    dqa_puts_hex(SAU_SFSR);
#endif
    dqa_board_puts_raw("\n");
    dqa_board_halt(DQA_FAULT_EXIT_CODE);
}

/* ---------------------------------------------------------------------- */
/* Vector table: 16 core exceptions + DQA_BOARD_IRQ_COUNT external
 * interrupts (the device's count on a board, set by dqa_targets.cmake; 96,
 * the largest of the QEMU machines (AN547), otherwise).  No external
 * interrupt is ever enabled; they all go to dqa_default_handler. */
#ifndef DQA_BOARD_IRQ_COUNT
#define DQA_BOARD_IRQ_COUNT 96
#endif

typedef void (*dqa_vector_t)(void);

typedef union {
    dqa_vector_t handler;
    uint32_t *stack_top;
} dqa_vector_entry_t;

__attribute__((section(".isr_vector"), used))
const dqa_vector_entry_t dqa_vector_table[16 + DQA_BOARD_IRQ_COUNT] = {
    {.stack_top = _estack},
    {Reset_Handler},
    {NMI_Handler},
    {HardFault_Handler},
    {MemManage_Handler},
    {BusFault_Handler},
    {UsageFault_Handler},
    {SecureFault_Handler}, /* ARMv8-M only; reserved on ARMv7-M */
    {0},
    {0},
    {0},
    {SVC_Handler},
    {DebugMon_Handler},
    {0},
    {PendSV_Handler},
    {SysTick_Handler},
    [16 ... 16 + DQA_BOARD_IRQ_COUNT - 1] = {dqa_default_handler}, /* GNU range initializer */
};
