/*
 * startup_cortexm.c - vector table and reset handler for dqa-mcu firmware on
 * the QEMU Cortex-M machines (ARMv7-M and ARMv8-M mainline, Secure state).
 *
 * Reset_Handler:
 *   1. enables the FPU (and MVE on Cortex-M55) through CPACR when the code is
 *      compiled for one, before any floating-point instruction can run;
 *   2. copies .data from its load address in flash to RAM;
 *   3. zeroes .bss;
 *   4. calls newlib's _mainCRTStartup (rdimon-crt0 from --specs=rdimon.specs),
 *      which sets up semihosting stdio, argc/argv (SYS_GET_CMDLINE; pass
 *      arguments with QEMU's -append), constructors, calls main() and
 *      exit()s with main's return value (QEMU's exit code via semihosting).
 *
 * The main stack pointer comes from the vector table (top of the RAM region
 * of the linker script); see _stack_init below for why it stays there.
 *
 * Any unexpected exception prints a message over semihosting and terminates
 * QEMU with exit code DQA_FAULT_EXIT_CODE, so crashes never hang a test.
 */
#include <stdint.h>

#define DQA_FAULT_EXIT_CODE 125

/* Symbols from the linker script (ld/dqa_sections.ld). */
extern uint32_t __data_start__[];
extern uint32_t __data_end__[];
extern uint32_t __data_load__[];
extern uint32_t __bss_start__[];
extern uint32_t __bss_end__[];
extern uint32_t _estack[];

extern void _mainCRTStartup(void) __attribute__((noreturn));

void Reset_Handler(void) __attribute__((noreturn, section(".text.dqa_reset")));
void dqa_default_handler(void);
void dqa_fault_handler(void);
void SysTick_Handler(void); /* defined in dqa_board_qemu.c */

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

/* ---------------------------------------------------------------------- */
/* Minimal direct semihosting (usable from handler mode, before newlib).   */

static uint32_t dqa_semihost(uint32_t op, const void *arg)
{
    register uint32_t r0 __asm__("r0") = op;
    register const void *r1 __asm__("r1") = arg;
    __asm__ volatile("bkpt 0xab" : "+r"(r0) : "r"(r1) : "memory");
    return r0;
}

static void dqa_semihost_puts(const char *s)
{
    dqa_semihost(0x04u /* SYS_WRITE0 */, s);
}

static void dqa_semihost_hex(uint32_t v)
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
    dqa_semihost_puts(buf);
}

static void __attribute__((noreturn)) dqa_semihost_exit(uint32_t code)
{
    /* SYS_EXIT_EXTENDED(ADP_Stopped_ApplicationExit, code) */
    uint32_t block[2];
    block[0] = 0x20026u;
    block[1] = code;
    dqa_semihost(0x20u, block);
    /* Fallback: plain SYS_EXIT with a run-time-error reason (exit code 1). */
    dqa_semihost(0x18u, (const void *)0x20023u);
    for (;;) {
    }
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

    _mainCRTStartup();
}

/*
 * rdimon-crt0 asks QEMU for the heap/stack layout (SYS_HEAPINFO), stores the
 * answered heap limit in newlib's __heap_limit and moves the stack pointer to
 * the answered stack base: QEMU derives both from the largest RAM block of
 * the machine, which is not the RAM region of our linker script (e.g. PSRAM,
 * or a DDR block behind a TrustZone MPC that Secure code cannot use).  crt0
 * then calls the weak hook _stack_init (a leaf called with BL, after sp was
 * set and before anything is pushed).  We override it to put sp back at the
 * top of our RAM region and to let the heap grow from `end` up to the stack,
 * so the layout is the one the linker script documents on every machine.
 * (Seen with QEMU 7.2 without this override: sp in PSRAM at 0x22000000 on
 * mps2-an385 and 0x81000000 on mps2-an505; on mps3-an547 sp at the top of
 * the ITCM (0x00080000) and a heap limit below `end`, so malloc() - and
 * with it printf's buffers - failed.)
 */
void _stack_init(void) __attribute__((naked));
void _stack_init(void)
{
    __asm__ volatile(
        "ldr r3, =_estack\n\t"
        "mov sp, r3\n\t"
        "ldr r2, =__heap_limit\n\t"
        "str r3, [r2]\n\t"
        "bx lr\n\t"
        ".ltorg\n\t");
}

void dqa_default_handler(void)
{
    dqa_fault_handler();
}

void dqa_fault_handler(void)
{
    uint32_t ipsr;
    __asm__ volatile("mrs %0, ipsr" : "=r"(ipsr));
    dqa_semihost_puts("\ndqa: unexpected exception ");
    dqa_semihost_hex(ipsr & 0x1FFu);
    dqa_semihost_puts(" CFSR=");
    dqa_semihost_hex(SCB_CFSR);
    dqa_semihost_puts(" HFSR=");
    dqa_semihost_hex(SCB_HFSR);
    dqa_semihost_puts(" MMFAR=");
    dqa_semihost_hex(SCB_MMFAR);
    dqa_semihost_puts(" BFAR=");
    dqa_semihost_hex(SCB_BFAR);
#if defined(__ARM_FEATURE_CMSE)
    dqa_semihost_puts(" SFSR=");
    dqa_semihost_hex(SAU_SFSR);
#endif
    dqa_semihost_puts("\n");
    dqa_semihost_exit(DQA_FAULT_EXIT_CODE);
}

/* ---------------------------------------------------------------------- */
/* Vector table: 16 core exceptions + 96 external interrupts (the largest
 * count of the supported machines: AN547).  No external interrupt is ever
 * enabled; they all go to dqa_default_handler. */

typedef void (*dqa_vector_t)(void);

#define DQA_IRQ1 {dqa_default_handler}
#define DQA_IRQ8 DQA_IRQ1, DQA_IRQ1, DQA_IRQ1, DQA_IRQ1, \
                 DQA_IRQ1, DQA_IRQ1, DQA_IRQ1, DQA_IRQ1
#define DQA_IRQ32 DQA_IRQ8, DQA_IRQ8, DQA_IRQ8, DQA_IRQ8

typedef union {
    dqa_vector_t handler;
    uint32_t *stack_top;
} dqa_vector_entry_t;

__attribute__((section(".isr_vector"), used))
const dqa_vector_entry_t dqa_vector_table[16 + 96] = {
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
    DQA_IRQ32, DQA_IRQ32, DQA_IRQ32,
};
