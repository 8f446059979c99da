"""Targets: plain data about the cores we generate code for.

RAM and flash are what the QEMU machine maps for the program (see
firmware/board/ld); a real part is smaller: pass its limits to
`dqa-mcu export --ram-bytes/--flash-bytes`.
"""
from __future__ import annotations

from dataclasses import dataclass

KIB = 1024
MIB = 1024 * KIB


@dataclass(frozen=True)
class Target:
    name: str
    qemu_machine: str | None  # None: runs on the build machine
    ram_bytes: int
    flash_bytes: int
    debian_packages: tuple[str, ...]  # what building and running it needs


ARM_PACKAGES = ("gcc-arm-none-eabi", "libnewlib-arm-none-eabi", "qemu-system-arm", "cmake")

TARGETS: dict[str, Target] = {t.name: t for t in (
    Target("host", None, 1 << 30, 1 << 30, ("gcc", "cmake")),
    Target("cortex-m3", "mps2-an385", 4 * MIB, 4 * MIB, ARM_PACKAGES),
    Target("cortex-m4", "mps2-an386", 4 * MIB, 4 * MIB, ARM_PACKAGES),
    Target("cortex-m7", "mps2-an500", 4 * MIB, 4 * MIB, ARM_PACKAGES),
    Target("cortex-m33", "mps2-an505", 4 * MIB, 4 * MIB, ARM_PACKAGES),
    Target("cortex-m55", "mps3-an547", 4 * MIB, 2 * MIB, ARM_PACKAGES),
)}


def get_target(name: str) -> Target:
    if name not in TARGETS:
        raise ValueError(f"unknown target {name!r}; valid targets: {', '.join(TARGETS)}")
    return TARGETS[name]
