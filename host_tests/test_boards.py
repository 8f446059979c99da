"""Real boards (STM32 Nucleo): the F446RE image bit-exact under QEMU netduinoplus2, all four boards built
and checked against their memories, the flasher command lines and the serial parsing (no hardware)."""
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dqa_mcu import api, cli
from dqa_mcu.codegen import dqa as codegen
from dqa_mcu.device import build as fw, flash
from dqa_mcu.targets import KIB, STATIC_RAM_BYTES, get_target

from conftest import shared_file
from test_backend import digits_model, require_arm  # noqa: F401 (a fixture, shared)

BOARDS = ["nucleo-f446re", "nucleo-f767zi", "nucleo-l4r5zi", "nucleo-h743zi"]
RESNET8_INT8 = "models/mlperf_tiny_ic_resnet8_int8.tflite"
FLASH_ORIGIN = 0x08000000  # every board; its size from the target table
# the datasheets' SRAM regions the linker scripts use: name -> (origin, bytes)
RAM_REGIONS = {
    "nucleo-f446re": {"SRAM1+2": (0x20000000, 128 * KIB)},
    "nucleo-f767zi": {"DTCM+SRAM1+2": (0x20000000, 512 * KIB)},
    "nucleo-l4r5zi": {"SRAM1+2+3": (0x20000000, 640 * KIB)},
    "nucleo-h743zi": {"DTCM": (0x20000000, 128 * KIB), "AXI SRAM": (0x24000000, 512 * KIB)},
}
DTCM = (0x20000000, 128 * KIB)  # F7 and H7
FLASH_SECTIONS = (".vectors", ".text", ".rodata", ".ARM.exidx", ".init_array", ".fini_array")
RAM_SECTIONS = (".fast_bss", ".data", ".bss")


def _sections(elf: Path) -> dict[str, tuple[int, int]]:
    """section -> (size, address)"""
    proc = subprocess.run(["arm-none-eabi-size", "-A", "-d", str(elf)], capture_output=True, text=True, check=True)
    return {p[0]: (int(p[1]), int(p[2])) for p in (line.split() for line in proc.stdout.splitlines())
            if len(p) == 3 and p[0].startswith(".") and p[1].isdigit()}


def _inside(size, address, region):
    origin, length = region
    return origin <= address and address + size <= origin + length


@pytest.fixture(scope="module")
def exports(digits_model, cifar_test, tmp_path_factory):  # noqa: F811
    """(board, model) -> export directory, each exported and built by `dqa-mcu export --target BOARD`:
    the small DQA CNN (4 harness images) and ResNet-8 int8 (2)."""
    require_arm()
    root = tmp_path_factory.mktemp("boards")
    model, images, _ = digits_model
    model.save(root / "digits.dqa.npz")
    np.savez(root / "digits.npz", x=images)
    np.savez(root / "cifar.npz", x=cifar_test[0][:2])
    models = {"dqa": [str(root / "digits.dqa.npz"), "--data", str(root / "digits.npz"), "-n", "4"],
              "resnet8-int8": [str(shared_file(RESNET8_INT8)), "--data", str(root / "cifar.npz"), "-n", "2"]}
    out = {}
    for board in BOARDS:
        for name, args in models.items():
            out[board, name] = root / f"{board}-{name}"
            assert cli.main(["export", args[0], "--target", board, "-o", str(out[board, name])] + args[1:]) == 0
    return out


@pytest.mark.slow
@pytest.mark.parametrize("model", ["dqa", "resnet8-int8"])
def test_nucleo_f446re_image_is_bit_exact_under_netduinoplus2(exports, model, tmp_path, capsys):
    report_file = tmp_path / "run.json"
    assert cli.main(["run", str(exports["nucleo-f446re", model]), "--qemu", "--json", str(report_file)]) == 0
    print(capsys.readouterr().out)
    report = json.loads(report_file.read_text())
    assert report["bit_exact"], report["mismatched_images"]
    assert "STM32F446RE" in report["board"] and "SysTick" in report["board"]  # DWT reads 0 under QEMU
    assert report["instructions_per_inference"] > 0


@pytest.mark.slow
def test_every_board_image_fits_its_memories(exports):
    """Each image's sections lie in the board's flash and SRAM regions; the arena in the DTCM on the F7/H7."""
    rows = []
    for (board, model), out in sorted(exports.items()):
        target = get_target(board)
        elf = fw.executable(out, target)
        for suffix in (".bin", ".hex"):
            assert elf.with_suffix(suffix).is_file()
        sections = _sections(elf)
        for name in FLASH_SECTIONS:
            size, address = sections[name]
            assert _inside(size, address, (FLASH_ORIGIN, target.flash_bytes)), (board, name, hex(address))
        for name in RAM_SECTIONS:
            size, address = sections[name]
            assert any(_inside(size, address, r) for r in RAM_REGIONS[board].values()), (board, name, hex(address))
        if board in ("nucleo-f767zi", "nucleo-h743zi"):
            assert _inside(*sections[".fast_bss"], DTCM), (board, "arena not in the DTCM")
        sizes = fw.sizes(elf)
        assert sizes["flash"] <= target.flash_bytes and sizes["ram"] <= target.ram_bytes
        # what the export's fit check allows for beside the constants and the arena
        code = sizes["flash"] - api.constant_bytes(out)
        assert code <= target.code_bytes, (board, model, code)
        assert sizes["ram"] - sections[".fast_bss"][0] <= STATIC_RAM_BYTES, (board, model)
        rows.append(f"{board:14s} {model:13s} flash {sizes['flash']:7d} of {target.flash_bytes:7d} B (code {code:6d}) "
                    f"RAM {sizes['ram']:6d} of {target.ram_bytes:6d} B  (arena {sections['.fast_bss'][0]} B "
                    f"at 0x{sections['.fast_bss'][1]:08x})")
    print("\n" + "\n".join(rows))


def _build_program(tmp_path: Path, name: str, source: str, target: str) -> subprocess.CompletedProcess:
    """Builds `source` as firmware `name` for `target` in tmp_path/name/b."""
    src = tmp_path / name
    src.mkdir()
    (src / f"{name}.c").write_text(source)
    (src / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.16)\n"
        f"include({(codegen.FIRMWARE / 'cmake/dqa_targets.cmake').as_posix()})\n"
        f"project({name} C)\ndqa_add_firmware({name} SOURCES {name}.c)\n")
    subprocess.run(["cmake", "-S", str(src), "-B", str(src / "b"), f"-DDQA_TARGET={target}"],
                   capture_output=True, check=True)
    return subprocess.run(["cmake", "--build", str(src / "b")], capture_output=True, text=True)


def _arena_program(tmp_path: Path, arena_bytes: int, target: str) -> subprocess.CompletedProcess:
    """Links a program whose only big object is a `dqa_arena` of `arena_bytes`."""
    return _build_program(tmp_path, f"arena{arena_bytes}", (
        "#include <stdint.h>\n"
        f"static volatile uint8_t dqa_arena[{arena_bytes}] __attribute__((aligned(4)));\n"
        "int main(void) { dqa_arena[0] = 1; return dqa_arena[0]; }\n"), target)


@pytest.mark.slow
def test_a_fault_on_the_board_image_is_reported_on_its_console(tmp_path):
    """Under netduinoplus2: the fault handler prints on USART2 and the run stops there."""
    require_arm()
    proc = _build_program(tmp_path, "fault", (
        "#include <stdio.h>\n#include \"dqa_board.h\"\n"
        "int main(void) {\n"
        "    void (*f)(void) = (void (*)(void))0xF0000001u;\n"
        "    dqa_board_init();\n    printf(\"before\\n\");\n    f();\n    return 0;\n}\n"), "nucleo-f446re")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = fw.board_output_under_qemu(tmp_path / "fault" / "b" / "fault.elf", get_target("nucleo-f446re"), 30)
    assert text.splitlines()[-2:-1] == ["before"], text
    assert text.splitlines()[-1].startswith("dqa: unexpected exception 0x00000003"), text
    with pytest.raises(fw.BuildError, match="did not finish"):
        fw.parse_harness(text)


@pytest.mark.slow
def test_h743_arena_goes_to_the_dtcm_when_it_fits_else_the_axi_sram(tmp_path):
    require_arm()
    for arena_bytes, region in ((100_000, DTCM), (200_000, RAM_REGIONS["nucleo-h743zi"]["AXI SRAM"])):
        proc = _arena_program(tmp_path, arena_bytes, "nucleo-h743zi")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        elf = tmp_path / f"arena{arena_bytes}" / "b" / f"arena{arena_bytes}.elf"
        address = int(re.search(r"^([0-9a-f]+) b dqa_arena$", subprocess.run(
            ["arm-none-eabi-nm", str(elf)], capture_output=True, text=True).stdout, re.M).group(1), 16)
        assert _inside(arena_bytes, address, region), hex(address)
    proc = _arena_program(tmp_path, 600_000, "nucleo-h743zi")
    assert proc.returncode != 0 and "fits neither the DTCM (128 KB) nor the AXI SRAM" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_netduinoplus2_systick_ticks_at_168_mhz(tmp_path):
    """The F446RE hello under QEMU: DWT reads 0, so SysTick counts; 2N extra loop instructions read as
    2N x 168e6 / 1e9 ticks (the scale `run` uses), and the run stops at the board's exit line."""
    require_arm()
    examples = codegen.FIRMWARE / "board/examples"
    subprocess.run(["cmake", "-S", str(examples), "-B", str(tmp_path), "-DDQA_TARGET=nucleo-f446re"],
                   capture_output=True, check=True)
    subprocess.run(["cmake", "--build", str(tmp_path)], capture_output=True, check=True)
    target = get_target("nucleo-f446re")
    text = fw.board_output_under_qemu(tmp_path / "hello.elf", target, 30)
    assert "SysTick ticks" in text and text.splitlines()[-1] == "dqa: exit 3", text
    (n1, t1), (n2, t2) = [(int(n), int(t)) for n, t in re.findall(r"^loop (\d+): (\d+) instructions$", text, re.M)]
    ticks_per_instruction = target.board.emulator_tick_hz / 1e9
    assert abs((t2 - t1) - 2 * (n2 - n1) * ticks_per_instruction) <= 2, (t1, t2)


def test_a_model_too_big_for_the_board_fails_at_export_with_numbers(tmp_path):
    """The fit check uses the board's real SRAM: the digits CNN on 128 x 128 inputs at 8 bits needs
    about 780 KB of arena layer by layer, which the F446RE's 128 KB cannot hold (a QEMU core's 4 MB can;
    row streaming, the default, would fit it)."""
    import torch
    from dqa_mcu import demo
    from dqa_mcu.frontends import passes
    from dqa_mcu.frontends.torch_import import import_module
    from dqa_mcu.quantize.calibrate import calibrate
    from dqa_mcu.quantize.quantizer import QuantConfig, quantize
    torch.manual_seed(0)
    x = np.random.default_rng(0).integers(0, 17, (2, 128, 128, 1)).astype(np.uint8)
    graph = passes.optimize(import_module(demo.DigitsNet().eval(), x.shape[1:], demo.DEMO_NORMALIZATION))
    model = quantize(graph, calibrate(graph, x, show_progress=False), QuantConfig(bits=8, extra_bits=0), x)
    with pytest.raises(cli.QuantizationError,
                       match=r"activation arena of \d+ bytes does not fit nucleo-f446re's RAM of 131072 bytes"):
        api.export_project(model, tmp_path / "f446", "nucleo-f446re", "m", x, None, None, log=lambda *a: None,
                           schedule="layer")
    api.export_project(model, tmp_path / "m4", "cortex-m4", "m", x, None, None, log=lambda *a: None,
                       schedule="layer")


@pytest.mark.parametrize("board", BOARDS[1:])
def test_boards_qemu_does_not_emulate_say_so_in_one_line(board, tmp_path, capsys):
    out = _fake_export(tmp_path, board)
    (out / "harness_images.npz").write_bytes(b"")  # never read: the check comes first
    assert cli.main(["run", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"{board} cannot run here: QEMU does not emulate" in err and "dqa-mcu flash" in err


# -- flashing ---------------------------------------------------------------------------------------

def _fake_export(tmp_path: Path, board: str) -> Path:
    """What `flash --dry-run` reads of an export: its target and its CMake project's name."""
    out = tmp_path / board
    out.mkdir()
    (out / api.EXPORT_INFO_FILE).write_text(json.dumps({"target": board}))
    (out / "CMakeLists.txt").write_text("dqa_add_firmware(dqa_model SOURCES main.c)\n")
    return out


EXPECTED_COMMANDS = {
    "openocd": "openocd -f board/{cfg} -c 'program {elf} verify reset exit'",
    "st-flash": "st-flash --reset write {bin} 0x08000000",
    "pyocd": "pyocd flash -t {pyocd} {elf}",
}
BOARD_TOOLS = {  # openocd board file, pyocd target
    "nucleo-f446re": ("st_nucleo_f4.cfg", "stm32f446retx"),
    "nucleo-f767zi": ("st_nucleo_f7.cfg", "stm32f767zi"),
    "nucleo-l4r5zi": ("st_nucleo_l4.cfg", "stm32l4r5zitx"),
    "nucleo-h743zi": ("st_nucleo_h743zi.cfg", "stm32h743xx"),
}


@pytest.mark.parametrize("probe", flash.PROBES)
@pytest.mark.parametrize("board", BOARDS)
def test_flash_dry_run_prints_the_exact_commands(board, probe, tmp_path, capsys):
    out = _fake_export(tmp_path, board)
    assert cli.main(["flash", str(out), "--dry-run", "--probe", probe, "--port", "/dev/ttyACM3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    elf = out / f"build-{board}" / "dqa_model.elf"
    cfg, pyocd = BOARD_TOOLS[board]
    assert EXPECTED_COMMANDS[probe].format(cfg=cfg, elf=elf, bin=elf.with_suffix(".bin"), pyocd=pyocd) in lines
    assert lines[-1] == "then read /dev/ttyACM3 at 115200 baud (8N1) up to the line 'done'"
    if probe == "pyocd" and board in ("nucleo-f446re", "nucleo-l4r5zi"):  # not built into pyocd
        assert lines[0].startswith(f"pyocd pack install stm32{board.split('-')[1]}")


def test_flash_without_a_flasher_says_what_to_install(tmp_path, capsys, monkeypatch):
    out = _fake_export(tmp_path, "nucleo-f767zi")
    monkeypatch.setattr(shutil, "which", lambda tool: None)
    assert cli.main(["flash", str(out), "--dry-run"]) == 0  # every flasher's command, as alternatives
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == [
        "openocd", "st-flash", "pyocd", "then"]
    assert cli.main(["flash", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("dqa-mcu: error: no flasher is installed: install one of openocd (apt-get install openocd), "
                   "st-flash (apt-get install stlink-tools), pyocd (pip install pyocd)")
    assert cli.main(["flash", str(out), "--probe", "st-flash"]) == 2
    assert capsys.readouterr().err.strip() == "dqa-mcu: error: st-flash is not installed: apt-get install stlink-tools"


def test_flash_refuses_an_export_for_a_bare_core(tmp_path, capsys):
    out = _fake_export(tmp_path, "cortex-m7")
    assert cli.main(["flash", str(out), "--dry-run"]) == 2
    assert "cortex-m7 is not a board: export with --target nucleo-f446re" in capsys.readouterr().err


class FakeSerial:
    """pyserial's interface as flash.py uses it: readline() gives what came before its timeout (b'', or
    part of a line)."""

    def __init__(self, chunks):
        self.chunks = list(chunks)
        self.timeout = None
        self.flushed = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def reset_input_buffer(self):
        self.flushed = True

    def readline(self):
        return self.chunks.pop(0) if self.chunks else b""


BOARD_OUTPUT = [b"\x00\xff", b"", b"board NUCLEO-F446RE (STM32F446RE) at 180 MHz, counting DWT cycles\r\n",
                b"output 0 -3", b"", b" 7 12\r\n", b"status 0 0\r\n", b"instructions 0 123456\r\n",
                b"layer 0 conv 1000\r\n", b"done\r\n", b"dqa: exit 0\r\n"]


def test_flash_and_read_parses_the_board_output(tmp_path, monkeypatch):
    flashed = []
    monkeypatch.setattr(flash, "run_flasher", lambda cmd: flashed.append(cmd) or
                        subprocess.CompletedProcess(cmd, 0, "", ""))
    port = FakeSerial(BOARD_OUTPUT)
    monkeypatch.setattr(flash, "open_serial", lambda name: port)
    elf = tmp_path / "dqa_model.elf"
    result = flash.flash_and_read(elf, get_target("nucleo-f446re"), "st-flash", "/dev/ttyACM0", 5)
    assert port.flushed and flashed == [["st-flash", "--reset", "write", str(tmp_path / "dqa_model.bin"), "0x08000000"]]
    assert result.outputs.tolist() == [[-3, 7, 12]] and result.overflowed.tolist() == [0]
    assert result.instructions.tolist() == [123456] and result.counter == "cycles"
    assert result.layers == [("conv", 1000)] and result.board.endswith("counting DWT cycles")


def test_serial_output_that_stops_early_or_never_ends_is_an_error(monkeypatch):
    early = FakeSerial([b"board x\r\n", b"error: a kernel needs more scratch memory\r\n", b"dqa: exit 2\r\n"])
    with pytest.raises(fw.BuildError, match="did not finish; it printed:\nboard x\nerror: a kernel"):
        fw.parse_harness(flash.read_serial(early, 5, "nucleo-f446re on /dev/ttyACM0"))
    silent = FakeSerial([])
    with pytest.raises(fw.BuildError, match=r"nucleo-f446re on /dev/ttyACM0 did not finish within 1 s"):
        flash.read_serial(silent, 1, "nucleo-f446re on /dev/ttyACM0")


@pytest.mark.slow
def test_flash_compares_the_board_output_as_run_does(exports, monkeypatch, capsys):
    """`dqa-mcu flash` end to end with QEMU as the board: the flasher call runs the image on
    netduinoplus2 and its USART2 output becomes the serial port's; run's comparison finds it bit-exact."""
    out = exports["nucleo-f446re", "dqa"]
    port = FakeSerial([])

    def flasher(cmd):
        assert cmd[:3] == ["openocd", "-f", "board/st_nucleo_f4.cfg"]
        elf = Path(cmd[-1].split()[1])  # program ELF verify reset exit
        text = fw.board_output_under_qemu(elf, get_target("nucleo-f446re"), 60)
        port.chunks = [line.encode() + b"\r\n" for line in text.splitlines()]
        return subprocess.CompletedProcess(cmd, 0, "", "")
    monkeypatch.setattr(flash, "run_flasher", flasher)
    monkeypatch.setattr(flash, "open_serial", lambda name: port)
    which = shutil.which
    monkeypatch.setattr(shutil, "which", lambda tool: "/usr/bin/openocd" if tool == "openocd" else which(tool))
    assert cli.main(["flash", str(out), "--timeout", "60"]) == 0
    assert "bit-exact with the reference" in capsys.readouterr().out


def test_a_linker_region_overflow_is_named_in_one_line(tmp_path, monkeypatch):
    """Code and small tables are not in the export's fit check: when the image then overflows a memory
    region, the build says so with the bytes, not with the linker's log."""
    ld = ("/usr/bin/arm-none-eabi-ld: dqa_model.elf section `.rodata' will not fit in region `FLASH'\n"
          "/usr/bin/arm-none-eabi-ld: region `FLASH' overflowed by 34280 bytes\ncollect2: error: ld returned 1")

    def fake_run(cmd, cwd=None, timeout=None):
        failed = "--build" in cmd
        return subprocess.CompletedProcess(cmd, 1 if failed else 0, "", ld if failed else "")

    monkeypatch.setattr(fw, "_run", fake_run)
    monkeypatch.setattr(fw, "require_tool", lambda tool: tool)
    (tmp_path / "CMakeLists.txt").write_text("dqa_add_firmware(dqa_model SOURCES main.c)\n")
    with pytest.raises(fw.BuildError) as err:
        fw.build(tmp_path, get_target("nucleo-f446re"))
    assert str(err.value) == (f"{tmp_path}: the image does not fit nucleo-f446re: its FLASH region overflows by "
                              "34280 bytes (use fewer bits, a smaller model or a larger part)")
