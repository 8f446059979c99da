"""Build a generated project (CMake) and run it (host or QEMU), parsing what it prints.

Failures name what is missing: the Debian package to install for a missing
tool, the build log for a compile error, the timeout for a hung run.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .targets import Target

DEFAULT_TIMEOUT_S = 600
TOOL_PACKAGES = {
    "cmake": "cmake",
    "gcc": "gcc",
    "arm-none-eabi-gcc": "gcc-arm-none-eabi (and libnewlib-arm-none-eabi)",
    "arm-none-eabi-size": "binutils-arm-none-eabi",
    "qemu-system-arm": "qemu-system-arm",
}


class BuildError(RuntimeError):
    """Building or running the firmware failed; the message says what to do."""


def require_tool(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise BuildError(f"{tool} not found: install the Debian package {TOOL_PACKAGES.get(tool, tool)} "
                         f"(apt-get install {TOOL_PACKAGES.get(tool, tool).split()[0]})")
    return path


def _run(cmd: list[str], cwd: Path | None = None, timeout: float | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise BuildError(f"timed out after {timeout:.0f} s and was stopped: {' '.join(cmd)}") from None


def build(project: Path, target: Target, build_dir: Path | None = None, sanitize: bool = False) -> Path:
    """Configure and build; return the executable (.elf for Cortex-M)."""
    require_tool("cmake")
    require_tool("gcc" if target.qemu_machine is None else "arm-none-eabi-gcc")
    build_dir = build_dir or project / f"build-{target.name}{'-asan' if sanitize else ''}"
    configure = ["cmake", "-S", str(project), "-B", str(build_dir), f"-DDQA_TARGET={target.name}",
                 "-DCMAKE_BUILD_TYPE=Release", f"-DDQA_SANITIZE={'ON' if sanitize else 'OFF'}"]
    for cmd in (configure, ["cmake", "--build", str(build_dir), "-j", "2"]):
        proc = _run(cmd)
        if proc.returncode != 0:
            log = (proc.stdout + proc.stderr)[-4000:]
            raise BuildError(f"{' '.join(cmd[:2])} failed in {project}:\n{log}")
    name = re.search(r"dqa_add_firmware\((\w+)", (project / "CMakeLists.txt").read_text()).group(1)
    exe = build_dir / (f"{name}.elf" if target.qemu_machine else name)
    if not exe.exists():
        raise BuildError(f"build finished but {exe} is missing")
    return exe


def sizes(elf: Path) -> dict[str, int]:
    """RAM (.data + .bss) and flash (.text + .rodata + .data) of a Cortex-M ELF, by section."""
    tool = require_tool("arm-none-eabi-size")
    proc = _run([tool, "-A", str(elf)])
    sections = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sections[parts[0]] = int(parts[1])
    ram_sections = [s for s in sections if s.startswith((".data", ".bss"))]
    flash_sections = [s for s in sections if s.startswith((".text", ".rodata", ".data", ".isr_vector",
                                                             ".vectors", ".ARM"))]
    return {"ram": sum(sections[s] for s in ram_sections),
            "flash": sum(sections[s] for s in flash_sections), "sections": sections}


@dataclass
class FirmwareRun:
    outputs: np.ndarray  # (N, C) int16 values printed by the harness
    overflowed: np.ndarray  # (N,)
    instructions: np.ndarray  # (N,) per inference (0 on host)
    layers: list[tuple[str, int]] = field(default_factory=list)
    board: str = ""


def parse_harness(text: str) -> FirmwareRun:
    outputs, status, instr, layers, board = {}, {}, {}, [], ""
    for line in text.splitlines():
        parts = line.split()
        if not parts:
            continue
        if parts[0] == "board":
            board = line[len("board "):].strip()
        elif parts[0] == "output":
            outputs[int(parts[1])] = [int(v) for v in parts[2:]]
        elif parts[0] == "status":
            status[int(parts[1])] = int(parts[2])
        elif parts[0] == "instructions":
            instr[int(parts[1])] = int(parts[2])
        elif parts[0] == "layer":
            layers.append((parts[2], int(parts[3])))
    if "done" not in text.split():
        raise BuildError(f"the firmware did not finish; it printed:\n{text[-2000:]}")
    order = sorted(outputs)
    return FirmwareRun(np.array([outputs[i] for i in order], dtype=np.int64),
                       np.array([status[i] for i in order]), np.array([instr[i] for i in order]),
                       layers, board)


def run(exe: Path, target: Target, timeout: float = DEFAULT_TIMEOUT_S) -> FirmwareRun:
    if target.qemu_machine is None:
        cmd = [str(exe)]
    else:
        cmd = [require_tool("qemu-system-arm"), "-M", target.qemu_machine, "-nographic",
               "-semihosting-config", "enable=on,target=native", "-icount", "shift=0", "-kernel", str(exe)]
    proc = _run(cmd, timeout=timeout)
    if proc.returncode != 0:
        raise BuildError(f"firmware exited with code {proc.returncode}:\n{(proc.stdout + proc.stderr)[-2000:]}")
    return parse_harness(proc.stdout)
