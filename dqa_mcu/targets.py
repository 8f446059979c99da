"""Targets: plain data about the cores and boards we generate code for.

A bare core's RAM and flash are what its QEMU machine maps for the program
(see firmware/board/ld); a real part is smaller: pass its limits to
`dqa-mcu export --ram-bytes/--flash-bytes`, or pick its board. A board's are
its part's: RAM is the largest region the activation arena can take.
"""
from __future__ import annotations

from dataclasses import dataclass

KIB = 1024
MIB = 1024 * KIB

# Flash beside the model's constants: the runtime kernels, the harness, startup, newlib's printf and
# the generated calls and tables. Upper bounds of what the exports link (46 KB for every int8 kernel
# on Cortex-M3, up to 53 KB on a board with its clocks and UART), checked by
# test_the_code_allowance_covers_every_int8_kernel_on_cortex_m3 and test_every_board_image_fits_its_memories.
CORE_CODE_BYTES = 56 * KIB
BOARD_CODE_BYTES = 64 * KIB
# RAM beside the arena: the runtime's and harness's .data and .bss (about 3 KB), and the stack and
# heap the linker scripts keep free (DQA_MIN_STACK_HEAP in firmware/board/ld).
STATIC_RAM_BYTES = 4 * KIB
CORE_STACK_HEAP_BYTES = 64 * KIB
BOARD_STACK_HEAP_BYTES = 16 * KIB


@dataclass(frozen=True)
class Board:
    """A real board: what flashing it and reading its console need (its clocks, UART and memory map:
    firmware/board/src/nucleo_*.c, firmware/board/ld/nucleo_*.ld)."""
    console: str  # the UART of the ST-LINK virtual COM port
    openocd_config: str
    pyocd_target: str
    pyocd_pack: str | None = None  # the CMSIS pack pyocd needs when the target is not built in
    flash_address: int = 0x08000000
    # Under QEMU (None: not emulated): the k-th -serial option is the k-th USART, and SysTick
    # ticks at the machine's clock; with -icount shift=0 a tick is 1e9 / emulator_tick_hz instructions.
    emulator_usart: int | None = None
    emulator_tick_hz: int | None = None


@dataclass(frozen=True)
class Target:
    name: str
    qemu_machine: str | None  # None: runs on the build machine, or a board QEMU does not emulate
    ram_bytes: int
    flash_bytes: int
    debian_packages: tuple[str, ...]  # what building and running it needs
    board: Board | None = None

    @property
    def is_host(self) -> bool:
        return self.name == "host"

    @property
    def code_bytes(self) -> int:
        """The flash its code takes beside the model's constants, at most."""
        return 0 if self.is_host else BOARD_CODE_BYTES if self.board else CORE_CODE_BYTES

    @property
    def reserved_ram_bytes(self) -> int:
        """The RAM its image keeps beside the activation arena: static variables, stack and heap."""
        if self.is_host:
            return 0
        return STATIC_RAM_BYTES + (BOARD_STACK_HEAP_BYTES if self.board else CORE_STACK_HEAP_BYTES)


ARM_PACKAGES = ("gcc-arm-none-eabi", "libnewlib-arm-none-eabi", "qemu-system-arm", "cmake")

TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("host", None, 1 << 30, 1 << 30, ("gcc", "cmake")),
    Target("cortex-m3", "mps2-an385", 4 * MIB, 4 * MIB, ARM_PACKAGES),
    Target("cortex-m4", "mps2-an386", 4 * MIB, 4 * MIB, ARM_PACKAGES),
    Target("cortex-m7", "mps2-an500", 4 * MIB, 4 * MIB, ARM_PACKAGES),
    Target("cortex-m33", "mps2-an505", 4 * MIB, 4 * MIB, ARM_PACKAGES),
    Target("cortex-m55", "mps3-an547", 4 * MIB, 2 * MIB, ARM_PACKAGES),
    # QEMU's netduinoplus2 is an STM32F405: the F446RE's image runs there, USART2 on the 2nd -serial.
    Target("nucleo-f446re", "netduinoplus2", 128 * KIB, 512 * KIB, ARM_PACKAGES, Board(
        "USART2 (PA2/PA3)", "board/st_nucleo_f4.cfg", "stm32f446retx",
        pyocd_pack="stm32f446re", emulator_usart=2, emulator_tick_hz=168_000_000)),
    # F7, L4+ and H7 USARTs (ISR/TDR) have no QEMU model: built and size-checked, run on the board.
    Target("nucleo-f767zi", None, 512 * KIB, 2 * MIB, ARM_PACKAGES, Board(
        "USART3 (PD8/PD9)", "board/st_nucleo_f7.cfg", "stm32f767zi")),
    Target("nucleo-l4r5zi", None, 640 * KIB, 2 * MIB, ARM_PACKAGES, Board(
        "LPUART1 (PG7/PG8)", "board/st_nucleo_l4.cfg", "stm32l4r5zitx",
        pyocd_pack="stm32l4r5zi")),
    # RAM: the AXI SRAM (512 KB), the largest region the arena can take; it goes in the DTCM when it fits
    Target("nucleo-h743zi", None, 512 * KIB, 2 * MIB, ARM_PACKAGES, Board(
        "USART3 (PD8/PD9)", "board/st_nucleo_h743zi.cfg", "stm32h743xx")),
)}


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r}; valid targets: {', '.join(TARGETS)}")
    return TARGETS[name]
