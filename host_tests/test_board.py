"""Board support smoke tests: firmware/board + firmware/cmake.

For each QEMU Cortex-M target, builds firmware/board/examples/hello.c with
CMake and the arm-none-eabi toolchain, runs it in qemu-system-arm with
semihosting and -icount shift=0, and checks the output, the exit code (3),
the instruction counter (positive, deterministic, linear in the work done,
exact instructions-per-tick scale) and the memory layout.  Also builds and
runs the host variant with AddressSanitizer/UBSan.

Skipped (with the Debian package to install) only when the cross compiler or
QEMU is missing.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware"
EXAMPLES = FIRMWARE / "board" / "examples"
TOOLCHAIN = FIRMWARE / "cmake" / "arm-none-eabi.cmake"

# target -> (QEMU machine, instructions per SysTick tick, vector table address,
#            flash region (origin, size), RAM region (origin, size))
TARGETS = {
    "cortex-m3": ("mps2-an385", 40.0, 0x00000000, (0x00000000, 4 << 20), (0x20000000, 4 << 20)),
    "cortex-m4": ("mps2-an386", 40.0, 0x00000000, (0x00000000, 4 << 20), (0x20000000, 4 << 20)),
    "cortex-m7": ("mps2-an500", 40.0, 0x00000000, (0x00000000, 4 << 20), (0x20000000, 4 << 20)),
    "cortex-m33": ("mps2-an505", 50.0, 0x10000000, (0x10000000, 4 << 20), (0x38000000, 4 << 20)),
    "cortex-m55": ("mps3-an547", 31.25, 0x10000000, (0x11000000, 2 << 20), (0x31000000, 4 << 20)),
}

DEFAULT_LOOP = 100000  # DQA_HELLO_LOOP default in examples/CMakeLists.txt
QEMU_TIMEOUT = 60
FAULT_EXIT_CODE = 125  # startup_cortexm.c: unexpected exception


def _need(tool, package):
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} not found: apt-get install {package} (./install.sh does)")


def _need_cross():
    _need("cmake", "cmake")
    _need("arm-none-eabi-gcc", "gcc-arm-none-eabi libnewlib-arm-none-eabi")
    _need("qemu-system-arm", "qemu-system-arm")


def _run(cmd, **kw):
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, **kw)
    return proc


def _build(build_dir, target, extra=()):
    cmd = ["cmake", "-S", str(EXAMPLES), "-B", str(build_dir), f"-DDQA_TARGET={target}"]
    if target != "host":
        cmd.append(f"-DCMAKE_TOOLCHAIN_FILE={TOOLCHAIN}")
    cmd.extend(extra)
    proc = _run(cmd)
    assert proc.returncode == 0, f"configure failed:\n{proc.stdout}"
    proc = _run(["cmake", "--build", str(build_dir)])
    assert proc.returncode == 0, f"build failed:\n{proc.stdout}"
    return proc.stdout


def _qemu(machine, elf, append=None):
    cmd = ["qemu-system-arm", "-M", machine, "-nographic",
           "-semihosting-config", "enable=on,target=native",
           "-kernel", str(elf), "-icount", "shift=0"]
    if append is not None:
        cmd += ["-append", append]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, timeout=QEMU_TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"QEMU timed out after {QEMU_TIMEOUT}s: {' '.join(cmd)}\n{exc.stdout}")
    return proc.returncode, proc.stdout


LOOP_RE = re.compile(r"^loop (\d+): (\d+) instructions$", re.M)
TOTAL_RE = re.compile(r"^total: (\d+) instructions$", re.M)


def _parse(out):
    loops = [(int(n), int(c)) for n, c in LOOP_RE.findall(out)]
    total = TOTAL_RE.search(out)
    assert len(loops) == 2 and total, f"unexpected output:\n{out}"
    return loops, int(total.group(1))


@pytest.fixture(scope="module", params=sorted(TARGETS))
def built(request, tmp_path_factory):
    _need_cross()
    target = request.param
    build_dir = tmp_path_factory.mktemp(f"hello-{target}")
    log = _build(build_dir, target)
    elf = build_dir / "hello.elf"
    assert elf.is_file(), log
    return target, elf, log


def test_hello_runs(built):
    target, elf, _ = built
    machine = TARGETS[target][0]
    rc, out = _qemu(machine, elf)
    assert f"hello {machine} ({target})" in out, out
    assert rc == 3, f"exit code {rc}, expected 3:\n{out}"
    loops, total = _parse(out)
    (n1, c1), (n2, c2) = loops
    assert (n1, n2) == (DEFAULT_LOOP, 2 * DEFAULT_LOOP)
    assert c1 > 0 and c2 > 0 and total >= c1 + c2


def test_instruction_count_deterministic_and_linear(built):
    target, elf, _ = built
    machine, per_tick = TARGETS[target][:2]
    rc_a, out_a = _qemu(machine, elf)
    rc_b, out_b = _qemu(machine, elf)
    assert rc_a == rc_b == 3
    assert out_a == out_b, f"non-deterministic:\n{out_a}\n---\n{out_b}"

    (n1, c1), (n2, c2) = _parse(out_a)[0]
    # Each loop iteration is exactly 2 instructions (subs + bne): the extra
    # N iterations of the second loop must show up as 2N instructions, up to
    # one tick of resolution per reading.  This checks the
    # instructions-per-tick scale (1e9 / CPU clock) of each machine.
    assert abs((c2 - c1) - 2 * (n2 - n1)) <= 2 * per_tick + 2, (c1, c2)
    assert 1.9 < c2 / c1 < 2.1

    # A 1500x larger workload via the semihosting command line (argv[1]):
    # 900M instructions, so the second measured loop spans a wrap-around of
    # the 24-bit SysTick (2^24 ticks = 524M..839M instructions).
    big = 150_000_000
    rc_c, out_c = _qemu(machine, elf, append=str(big))
    assert rc_c == 3, out_c
    loops, total = _parse(out_c)
    (m1, d1), (m2, d2) = loops
    assert (m1, m2) == (big, 2 * big)
    assert (d1 + d2) / per_tick > (1 << 24), "workload should span a SysTick wrap-around"
    assert abs((d2 - d1) - 2 * (m2 - m1)) <= 2 * per_tick + 2, (d1, d2)
    assert abs(d1 / c1 - big / DEFAULT_LOOP) < 0.01 * big / DEFAULT_LOOP
    assert total >= d1 + d2


def _sections(elf):
    proc = _run(["arm-none-eabi-size", "-A", "-d", str(elf)])
    assert proc.returncode == 0, proc.stdout
    out = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].startswith("."):
            out[parts[0]] = (int(parts[1]), int(parts[2]))
    return out


def test_memory_layout(built):
    target, elf, log = built
    _, _, vectors, (flash, flash_len), (ram, ram_len) = TARGETS[target]
    sec = _sections(elf)
    assert sec[".vectors"][1] == vectors
    for name in (".text", ".rodata"):
        size, addr = sec[name]
        assert flash <= addr and addr + size <= flash + flash_len, (name, hex(addr))
    for name in (".data", ".bss"):
        size, addr = sec[name]
        assert ram <= addr and addr + size <= ram + ram_len, (name, hex(addr))
    assert flash_len >= 1 << 20 and ram_len >= 256 << 10
    # Berkeley size output and the linker's region summary are printed.
    assert re.search(r"text\s+data\s+bss", log), log
    assert "Memory region" in log and "RAM:" in log, log


def test_fault_exits_with_code(tmp_path):
    """An unexpected exception terminates QEMU with a clear message."""
    _need_cross()
    src = tmp_path / "src"
    src.mkdir()
    (src / "fault.c").write_text(
        "#include <stdio.h>\n"
        "int main(void) {\n"
        "    void (*f)(void) = (void (*)(void))0xF0000001u;\n"
        "    printf(\"before\\n\");\n"
        "    f();\n"
        "    return 0;\n"
        "}\n")
    (src / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.16)\n"
        f"include({(FIRMWARE / 'cmake' / 'dqa_targets.cmake').as_posix()})\n"
        "project(fault C)\n"
        "dqa_add_firmware(fault SOURCES fault.c)\n")
    build = tmp_path / "build"
    proc = _run(["cmake", "-S", str(src), "-B", str(build), "-DDQA_TARGET=cortex-m7"])
    assert proc.returncode == 0, proc.stdout  # toolchain chosen automatically
    proc = _run(["cmake", "--build", str(build)])
    assert proc.returncode == 0, proc.stdout
    rc, out = _qemu("mps2-an500", build / "fault.elf")
    assert rc == FAULT_EXIT_CODE, out
    assert "before" in out and "dqa: unexpected exception" in out, out


def test_host_build_with_sanitizers(tmp_path):
    _need("cmake", "cmake")
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.fail("no host C compiler: apt-get install gcc")
    build = tmp_path / "host"
    log = _build(build, "host", ["-DDQA_SANITIZE=ON"])
    flags = (build / "CMakeFiles" / "hello.dir" / "flags.make").read_text()
    assert "-fsanitize=address,undefined" in flags and "-fno-sanitize-recover=all" in flags
    exe = build / "hello"
    assert exe.is_file(), log
    proc = subprocess.run([str(exe), "1000"], stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=60)
    assert proc.returncode == 3, proc.stdout
    assert "hello host" in proc.stdout
    loops, total = _parse(proc.stdout)
    assert loops == [(1000, 0), (2000, 0)] and total == 0  # no counter on host
