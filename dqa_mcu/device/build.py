"""Build a generated project (CMake) and run it (host or QEMU), parsing what it prints.

Failures name what is missing: the Debian package to install for a missing
tool, the build log for a compile error, the timeout for a hung run.
"""
from __future__ import annotations

import queue
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from dqa_mcu.targets import Target

DEFAULT_TIMEOUT_S = 600
LINKER_OVERFLOW = re.compile(r"region [`'\"]?(\w+)[`'\"]? overflowed by (\d+) bytes")
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


def executable(project: Path, target: Target, build_dir: Path | None = None, sanitize: bool = False) -> Path:
    """Where build() puts the executable (.elf for Cortex-M; .bin and .hex beside it)."""
    build_dir = build_dir or project / f"build-{target.name}{'-asan' if sanitize else ''}"
    name = re.search(r"dqa_add_firmware\((\w+)", (project / "CMakeLists.txt").read_text()).group(1)
    return build_dir / (name if target.is_host else f"{name}.elf")


def build(project: Path, target: Target, build_dir: Path | None = None, sanitize: bool = False) -> Path:
    """Configure and build; return the executable (.elf for Cortex-M)."""
    require_tool("cmake")
    require_tool("gcc" if target.is_host else "arm-none-eabi-gcc")
    exe = executable(project, target, build_dir, sanitize)
    build_dir = exe.parent
    configure = ["cmake", "-S", str(project), "-B", str(build_dir), f"-DDQA_TARGET={target.name}",
                 "-DCMAKE_BUILD_TYPE=Release", f"-DDQA_SANITIZE={'ON' if sanitize else 'OFF'}"]
    for cmd in (configure, ["cmake", "--build", str(build_dir), "-j", "2"]):
        proc = _run(cmd)
        if proc.returncode != 0:
            overflow = LINKER_OVERFLOW.search(proc.stdout + proc.stderr)
            if overflow:  # past the fit check's code allowance (targets.CORE_CODE_BYTES): named in one line
                raise BuildError(f"{project}: the image does not fit {target.name}: its {overflow.group(1)} region "
                                 f"overflows by {int(overflow.group(2))} bytes (use fewer bits, a smaller model or "
                                 "a larger part)")
            log = (proc.stdout + proc.stderr)[-4000:]
            raise BuildError(f"{' '.join(cmd[:2])} failed in {project}:\n{log}")
    if not exe.exists():
        raise BuildError(f"build finished but {exe} is missing")
    return exe


def sizes(elf: Path) -> dict[str, int]:
    """RAM (.data + .bss + .fast_bss) and flash (.text + .rodata + .data) of a Cortex-M ELF, by section."""
    tool = require_tool("arm-none-eabi-size")
    proc = _run([tool, "-A", str(elf)])
    sections = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sections[parts[0]] = int(parts[1])
    ram_sections = [s for s in sections if s.startswith((".data", ".bss", ".fast_bss"))]
    # what is loaded into flash (not .ARM.attributes, which is not loaded at all)
    flash_sections = [s for s in sections if s.startswith((".text", ".rodata", ".data", ".isr_vector", ".vectors",
                                                             ".ARM.ex", ".preinit_array", ".init_array",
                                                             ".fini_array"))]
    return {"ram": sum(sections[s] for s in ram_sections),
            "flash": sum(sections[s] for s in flash_sections), "sections": sections}


@dataclass
class FirmwareRun:
    outputs: np.ndarray  # (N, C) int16 values printed by the harness
    overflowed: np.ndarray  # (N,)
    instructions: np.ndarray  # (N,) per inference (0 on host)
    layers: list[tuple[str, int]] = field(default_factory=list)
    board: str = ""
    counter: str = "instructions"  # what `instructions` counts: "cycles" on a real board (DWT)


HARNESS_LAST_LINE = "done"
BOARD_STOP_PREFIX = "dqa: "  # a board's exit or fault line (dqa_board_stm32.c, startup_cortexm.c)


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
    if HARNESS_LAST_LINE not in text.split():
        raise BuildError(f"the firmware did not finish; it printed:\n{text[-2000:]}")
    order = sorted(outputs)
    return FirmwareRun(np.array([outputs[i] for i in order], dtype=np.int64),
                       np.array([status[i] for i in order]), np.array([instr[i] for i in order]),
                       layers, board)


def read_harness_lines(readline: Callable[[float], str | None], timeout: float, source: str) -> str:
    """What the harness prints, line by line from ``readline(seconds_left)`` ('' when nothing came yet,
    None at the end of the stream), up to its last line or a board's exit or fault line: a board has
    no exit to wait for."""
    deadline = time.monotonic() + timeout
    lines: list[str] = []
    while (left := deadline - time.monotonic()) > 0:
        line = readline(left)
        if line is None:
            break
        line = line.rstrip("\r\n")
        if not line:
            continue
        lines.append(line)
        if line == HARNESS_LAST_LINE or line.startswith(BOARD_STOP_PREFIX):
            break
    else:
        raise BuildError(f"{source} did not finish within {timeout:.0f} s and was stopped; it printed:\n"
                         + "\n".join(lines[-20:]))
    return "\n".join(lines) + "\n"


def check_runnable(target: Target) -> None:
    """A board QEMU does not emulate runs only on the board itself: say so before building."""
    if target.board is not None and target.qemu_machine is None:
        raise BuildError(f"{target.name} cannot run here: QEMU does not emulate its {target.board.console} "
                         "(ISR/TDR USART); connect the board and use dqa-mcu flash OUT")


def check_emulated(target: Target) -> None:
    """`run --qemu`: the target must have a QEMU machine."""
    check_runnable(target)
    if target.qemu_machine is None:
        raise BuildError(f"{target.name} runs on this machine, not under QEMU; export for a core or nucleo-f446re")


def qemu_command(target: Target, exe: Path) -> list[str]:
    """The QEMU command line: semihosting for the bare cores; for a board, its console UART's
    -serial on stdout (the k-th -serial option is the k-th USART) and no semihosting."""
    cmd = [require_tool("qemu-system-arm"), "-M", target.qemu_machine]
    if target.board is None:
        cmd += ["-nographic", "-semihosting-config", "enable=on,target=native"]
    else:
        cmd += ["-display", "none"] + ["-serial", "null"] * (target.board.emulator_usart - 1) + ["-serial", "stdio"]
    return cmd + ["-icount", "shift=0", "-kernel", str(exe)]


def board_output_under_qemu(exe: Path, target: Target, timeout: float) -> str:
    """What a board's image prints on its console UART under QEMU: stdout streamed, QEMU stopped at
    the harness's last line (a board has no exit)."""
    proc = subprocess.Popen(qemu_command(target, exe), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, errors="replace")
    lines: queue.Queue = queue.Queue()

    def forward_lines():  # a thread, so that waiting for a line can time out
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)
    threading.Thread(target=forward_lines, daemon=True).start()

    def readline(left: float) -> str | None:
        try:
            return lines.get(timeout=min(left, 1.0))
        except queue.Empty:
            return ""
    try:
        return read_harness_lines(readline, timeout, f"{target.name} under QEMU {target.qemu_machine}")
    finally:
        proc.kill()
        proc.wait()


def _run_board_emulated(exe: Path, target: Target, timeout: float) -> FirmwareRun:
    """SysTick ticks (the count when DWT does not move, as under QEMU) become instructions: with
    -icount shift=0, one tick is 1e9 / the machine's clock of them."""
    result = parse_harness(board_output_under_qemu(exe, target, timeout))
    scale = 1e9 / target.board.emulator_tick_hz
    result.instructions = np.round(result.instructions * scale).astype(np.int64)
    result.layers = [(name, round(count * scale)) for name, count in result.layers]
    return result


def run(exe: Path, target: Target, timeout: float = DEFAULT_TIMEOUT_S) -> FirmwareRun:
    check_runnable(target)
    if target.is_host:
        cmd = [str(exe)]
    elif target.board is not None:
        return _run_board_emulated(exe, target, timeout)
    else:
        cmd = qemu_command(target, exe)
    proc = _run(cmd, timeout=timeout)
    if proc.returncode != 0:
        raise BuildError(f"firmware exited with code {proc.returncode}:\n{(proc.stdout + proc.stderr)[-2000:]}")
    return parse_harness(proc.stdout)
