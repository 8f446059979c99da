/*
 * dqa_board_stm32.c - dqa_board.h for the STM32 Nucleo boards: clocks (the
 * board file), printf retargeted to the ST-LINK virtual COM port UART, and
 * the cycle counter.
 *
 * Counter: the DWT cycle counter (CYCCNT, extended to 64 bits on every
 * read; the harness reads it around every layer, far more often than its
 * 2^32-cycle wrap).  Where DWT does not count (QEMU's netduinoplus2 reads it
 * as 0), SysTick ticks instead (dqa_systick.c).  Both count core clock
 * cycles on silicon; under QEMU with -icount shift=0, SysTick ticks at the
 * machine's virtual clock and dqa-mcu converts them to instructions.
 *
 * stdio: newlib's plain crt0 and the system calls below (no semihosting:
 * it halts a core that has no debugger attached).  main's return ends in
 * _exit: "dqa: exit <code>" on the console, then the core sleeps.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "dqa_board.h"
#include "dqa_board_internal.h"
#include "dqa_stm32.h"
#include "dqa_systick.h"

#define DCB_DEMCR   0xE000EDFCu
#define DWT_CTRL    0xE0001000u
#define DWT_CYCCNT  0xE0001004u
#define DWT_LAR     0xE0001FB0u
#define DEMCR_TRCENA      (1u << 24)
#define DWT_CTRL_CYCCNTENA (1u << 0)
#define DWT_LAR_UNLOCK    0xC5ACCE55u /* the Cortex-M7 DWT is locked at reset */

#define SCB_CCR     0xE000ED14u
#define SCB_CCSIDR  0xE000ED80u
#define SCB_CSSELR  0xE000ED84u
#define SCB_ICIALLU 0xE000EF50u
#define SCB_DCISW   0xE000EF60u
#define SCB_CCR_DC  (1u << 16)
#define SCB_CCR_IC  (1u << 17)

int dqa_stm32_wait(uint32_t address, uint32_t mask, uint32_t value)
{
    for (uint32_t i = 0u; i < DQA_STM32_READY_POLLS; ++i) {
        if ((DQA_REG(address) & mask) == value) {
            return 1;
        }
    }
    return 0;
}

void dqa_stm32_modify(uint32_t address, uint32_t mask, uint32_t value)
{
    DQA_REG(address) = (DQA_REG(address) & ~mask) | (value & mask);
}

void dqa_stm32_gpio_alternate(uint32_t gpio_base, unsigned pin, unsigned af)
{
    const uint32_t afr = gpio_base + 0x20u + 4u * (pin / 8u);
    dqa_stm32_modify(gpio_base + 0x00u, 3u << (2u * pin), 2u << (2u * pin)); /* MODER: alternate */
    dqa_stm32_modify(gpio_base + 0x08u, 3u << (2u * pin), 2u << (2u * pin)); /* OSPEEDR: high */
    dqa_stm32_modify(gpio_base + 0x0Cu, 3u << (2u * pin), 0u);              /* PUPDR: none */
    dqa_stm32_modify(afr, 0xFu << (4u * (pin % 8u)), af << (4u * (pin % 8u)));
}

/* USART (ISR/TDR layout): CR1 +0x00 (UE bit 0, RE bit 2, TE bit 3), BRR +0x0C,
 * ISR +0x1C (TXE bit 7), TDR +0x28. */
void dqa_stm32_usart_v2_init(uint32_t base, uint32_t brr)
{
    DQA_REG(base + 0x00u) = 0u;
    DQA_REG(base + 0x0Cu) = brr;
    DQA_REG(base + 0x00u) = (1u << 3) | (1u << 2) | (1u << 0);
}

void dqa_stm32_usart_v2_putc(uint32_t base, char c)
{
    (void)dqa_stm32_wait(base + 0x1Cu, 1u << 7, 1u << 7); /* bounded: never hang on a dead UART */
    DQA_REG(base + 0x28u) = (uint8_t)c;
}

void dqa_stm32_m7_caches_enable(void)
{
    uint32_t ccsidr, sets, ways, set_shift, way_shift;

    __asm__ volatile("dsb\n\tisb" ::: "memory");
    DQA_REG(SCB_ICIALLU) = 0u;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
    DQA_REG(SCB_CCR) |= SCB_CCR_IC;

    /* Invalidate the data cache by set and way before enabling it (its
     * content is undefined at reset). */
    DQA_REG(SCB_CSSELR) = 0u; /* level 1 data cache */
    __asm__ volatile("dsb" ::: "memory");
    ccsidr = DQA_REG(SCB_CCSIDR);
    sets = ((ccsidr >> 13) & 0x7FFFu) + 1u;
    ways = ((ccsidr >> 3) & 0x3FFu) + 1u;
    set_shift = (ccsidr & 7u) + 4u;                              /* log2(line bytes) */
    way_shift = ways > 1u ? (uint32_t)__builtin_clz(ways - 1u) : 0u; /* 32 - log2(ways) */
    for (uint32_t set = 0u; set < sets; ++set) {
        for (uint32_t way = 0u; way < ways; ++way) {
            DQA_REG(SCB_DCISW) = (set << set_shift) | (way << way_shift);
        }
    }
    __asm__ volatile("dsb" ::: "memory");
    DQA_REG(SCB_CCR) |= SCB_CCR_DC;
    __asm__ volatile("dsb\n\tisb" ::: "memory");
}

/* ---------------------------------------------------------------------- */

enum dqa_counter { DQA_COUNTER_NONE, DQA_COUNTER_DWT, DQA_COUNTER_SYSTICK };

static char dqa_name[128];
static enum dqa_counter dqa_counter;
static uint32_t dqa_dwt_last;
static uint64_t dqa_dwt_high;

/* DWT on; 1 if CYCCNT moves (it does on every STM32 here; not under QEMU). */
static int dqa_dwt_start(void)
{
    uint32_t before;

    DQA_REG(DCB_DEMCR) |= DEMCR_TRCENA;
    DQA_REG(DWT_LAR) = DWT_LAR_UNLOCK;
    DQA_REG(DWT_CYCCNT) = 0u;
    DQA_REG(DWT_CTRL) |= DWT_CTRL_CYCCNTENA;
    before = DQA_REG(DWT_CYCCNT);
    for (volatile int i = 0; i < 100; ++i) {
    }
    dqa_dwt_last = 0u;
    dqa_dwt_high = 0u;
    return DQA_REG(DWT_CYCCNT) != before;
}

void dqa_board_init(void)
{
    const dqa_stm32_clocks_t clocks = dqa_stm32_clock_init();

    dqa_stm32_console_init(clocks.console_hz);
    dqa_counter = dqa_dwt_start() ? DQA_COUNTER_DWT : DQA_COUNTER_SYSTICK;
    if (dqa_counter == DQA_COUNTER_SYSTICK) {
        dqa_systick_start();
    }
    snprintf(dqa_name, sizeof dqa_name, "%s at %lu MHz%s, counting %s", dqa_stm32_board,
             (unsigned long)(clocks.core_hz / 1000000u),
             clocks.full_speed ? "" : " (clock setup timed out: reset oscillator)",
             dqa_counter == DQA_COUNTER_DWT ? "DWT cycles" : "SysTick ticks");
}

uint64_t dqa_board_instructions(void)
{
    uint32_t now;

    if (dqa_counter != DQA_COUNTER_DWT) {
        return dqa_counter == DQA_COUNTER_SYSTICK ? dqa_systick_ticks() : 0u;
    }
    now = DQA_REG(DWT_CYCCNT);
    if (now < dqa_dwt_last) {
        dqa_dwt_high += 1ull << 32;
    }
    dqa_dwt_last = now;
    return dqa_dwt_high + now;
}

const char *dqa_board_name(void)
{
    return dqa_name;
}

/* The console with CR LF line ends (what terminals want). */
static void dqa_console_write(const char *text, size_t length)
{
    for (size_t i = 0u; i < length; ++i) {
        if (text[i] == '\n') {
            dqa_stm32_console_putc('\r');
        }
        dqa_stm32_console_putc(text[i]);
    }
}

void dqa_board_puts_raw(const char *s)
{
    dqa_console_write(s, strlen(s));
}

void dqa_board_halt(uint32_t code)
{
    char digits[11];
    int i = (int)sizeof digits - 1;

    /* by hand: no stdio here, this may run in a fault handler */
    digits[i] = '\0';
    do {
        digits[--i] = (char)('0' + code % 10u);
        code /= 10u;
    } while (code != 0u);
    dqa_board_puts_raw("dqa: exit ");
    dqa_board_puts_raw(&digits[i]);
    dqa_board_puts_raw("\n");
    for (;;) {
        __asm__ volatile("wfi");
    }
}

/* ---------------------------------------------------------------------- */
/* newlib system calls: stdout/stderr to the console, no files. */

int _write(int fd, const char *buf, int len);
int _read(int fd, char *buf, int len);
int _close(int fd);
int _fstat(int fd, struct stat *st);
int _isatty(int fd);
int _lseek(int fd, int offset, int whence);
int _kill(int pid, int sig);
int _getpid(void);
void *_sbrk(ptrdiff_t increment);
void _exit(int code) __attribute__((noreturn));

int _write(int fd, const char *buf, int len)
{
    if (fd != 1 && fd != 2) {
        errno = EBADF;
        return -1;
    }
    dqa_console_write(buf, (size_t)len);
    return len;
}

int _read(int fd, char *buf, int len)
{
    (void)fd;
    (void)buf;
    (void)len;
    return 0; /* end of file: the harness reads nothing */
}

int _close(int fd)
{
    (void)fd;
    errno = EBADF;
    return -1;
}

int _fstat(int fd, struct stat *st)
{
    (void)fd;
    st->st_mode = S_IFCHR; /* a terminal: stdout is line buffered */
    return 0;
}

int _isatty(int fd)
{
    return fd >= 0 && fd <= 2;
}

int _lseek(int fd, int offset, int whence)
{
    (void)fd;
    (void)offset;
    (void)whence;
    return 0;
}

int _kill(int pid, int sig)
{
    (void)pid;
    (void)sig;
    errno = EINVAL;
    return -1;
}

int _getpid(void)
{
    return 1;
}

/* The heap grows from `end` (linker script) towards the stack; it stops
 * DQA_STACK_GUARD bytes below the current stack pointer. */
#define DQA_STACK_GUARD 2048u

void *_sbrk(ptrdiff_t increment)
{
    extern char end[];
    static char *heap_top = end;
    char *stack;
    char *previous = heap_top;

    __asm__ volatile("mov %0, sp" : "=r"(stack));
    if (heap_top + increment > stack - DQA_STACK_GUARD) {
        errno = ENOMEM;
        return (void *)-1;
    }
    heap_top += increment;
    return previous;
}

void _exit(int code)
{
    dqa_board_halt((uint32_t)code);
}
