"""Flash a board's image with a standard flasher and read the harness output from its serial port.

The first installed of openocd, st-flash and pyocd writes the image; the board then runs the harness
and prints over the ST-LINK virtual COM port, read here with pyserial up to the harness's last line.
Comparing that with the reference is `dqa-mcu run`'s job (api.run_project), not this module's.
"""
from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

from dqa_mcu.device import build as fw
from dqa_mcu.targets import TARGETS, Board, Target

PROBES = ("openocd", "st-flash", "pyocd")  # tried in this order
PROBE_INSTALL = {
    "openocd": "apt-get install openocd",
    "st-flash": "apt-get install stlink-tools",
    "pyocd": "pip install pyocd",
}
DEFAULT_PORT = "/dev/ttyACM0"  # the Nucleo's ST-LINK virtual COM port on Linux
BAUD = 115200  # DQA_STM32_BAUD in firmware/board/src/dqa_stm32.h
FLASH_TIMEOUT_S = 120


def require_board(target: Target) -> Board:
    if target.board is None:
        boards = ", ".join(name for name, t in TARGETS.items() if t.board is not None)
        raise fw.BuildError(f"{target.name} is not a board: export with --target {boards} to flash one")
    return target.board


def flash_command(probe: str, board: Board, elf: Path) -> list[str]:
    """The flasher's command line: write the image, verify where the tool can, reset the board."""
    if probe == "openocd":
        return ["openocd", "-f", board.openocd_config, "-c", f"program {elf} verify reset exit"]
    if probe == "st-flash":
        return ["st-flash", "--reset", "write", str(elf.with_suffix(".bin")), f"0x{board.flash_address:08x}"]
    if probe == "pyocd":
        return ["pyocd", "flash", "-t", board.pyocd_target, str(elf)]
    raise ValueError(f"unknown probe {probe!r}; valid probes: {', '.join(PROBES)}")


def choose_probe(requested: str | None) -> str:
    """The requested flasher, or the first installed one; the error says what to install and how."""
    for probe in [requested] if requested else PROBES:
        if shutil.which(probe):
            return probe
    if requested:
        raise fw.BuildError(f"{requested} is not installed: {PROBE_INSTALL[requested]}")
    raise fw.BuildError("no flasher is installed: install one of "
                        + ", ".join(f"{p} ({PROBE_INSTALL[p]})" for p in PROBES))


def dry_run(elf: Path, target: Target, probe: str | None, port: str) -> str:
    """The exact commands `flash` would run: the chosen (or first installed) flasher's, or, when none
    is installed and none was asked for, each one's."""
    board = require_board(target)
    installed = [p for p in PROBES if shutil.which(p)]
    probes = [probe] if probe else installed[:1] or list(PROBES)
    lines = []
    for p in probes:
        if p == "pyocd" and board.pyocd_pack:
            lines.append(f"pyocd pack install {board.pyocd_pack}  # once: {board.pyocd_target} is not built into pyocd")
        lines.append(shlex.join(flash_command(p, board, elf)))
    lines.append(f"then read {port} at {BAUD} baud (8N1) up to the line '{fw.HARNESS_LAST_LINE}'")
    return "\n".join(lines)


def open_serial(port: str):
    import serial  # pyserial
    try:
        return serial.Serial(port, BAUD, timeout=1.0)
    except (serial.SerialException, OSError) as exc:
        raise fw.BuildError(f"cannot open the board's serial port {port} ({exc}); connect the board or "
                            "pass --port") from None


def read_serial(connection, timeout: float, source: str) -> str:
    """The harness output from an open serial connection (pyserial's interface: readline, timeout)."""
    pending = bytearray()  # pyserial's readline returns what came so far when its timeout ends a read

    def readline(left: float) -> str:
        connection.timeout = min(left, 1.0)
        pending.extend(connection.readline())
        if not pending.endswith(b"\n"):
            return ""
        # bytes that are no text (line noise from the reset or the port's opening) are dropped
        line = "".join(c for c in pending.decode("utf-8", errors="ignore") if c.isprintable() or c in "\r\n")
        pending.clear()
        return line
    return fw.read_harness_lines(readline, timeout, source)


def run_flasher(cmd: list[str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=FLASH_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise fw.BuildError(f"{cmd[0]} did not finish within {FLASH_TIMEOUT_S} s: {shlex.join(cmd)}") from None


def flash_and_read(elf: Path, target: Target, probe: str, port: str, timeout: float) -> fw.FirmwareRun:
    """Flashes `elf` and parses what the board prints after its reset. The port is opened first, so
    that the lines the board prints right after the reset are not lost."""
    board = require_board(target)
    with open_serial(port) as connection:
        connection.reset_input_buffer()
        cmd = flash_command(probe, board, elf)
        proc = run_flasher(cmd)
        if proc.returncode != 0:
            pack = (f"\n(is the pack installed? pyocd pack install {board.pyocd_pack})"
                    if probe == "pyocd" and board.pyocd_pack else "")
            raise fw.BuildError(f"{shlex.join(cmd)} failed (exit code {proc.returncode}):\n"
                                f"{(proc.stdout + proc.stderr)[-2000:]}{pack}")
        text = read_serial(connection, timeout, f"{target.name} on {port}")
    result = fw.parse_harness(text)
    result.counter = "cycles"  # DWT->CYCCNT on silicon
    return result
