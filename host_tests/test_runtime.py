"""The C runtime (firmware/runtime) against the spec's Python side, bit for bit.

A host driver (firmware/runtime/test/runtime_driver.c) built with
AddressSanitizer + UBSan runs the real kernels on test vectors made here:

(a) reader/writer round trips against dqa_mcu.bitpack / dqa_mcu.huffman: the
    code plane and error stream bytes the C writer leaves equal Python's
    encoding of the same data; the C reader reads Python's encodings back;
    bounded streams overflow exactly as spec 2.3 says;
(b) every kernel against dqa_mcu.reference.dqa on small random QModels: fine
    values of every tensor, plane and stream bytes, n_coded and the overflow
    counter, compared with np.array_equal / ==.
"""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

import runtime_vectors as rv
from dqa_mcu import bitpack
from dqa_mcu.codegen import planner
from dqa_mcu.huffman import HuffmanCode

ARM_FLAGS = ["-mcpu=cortex-m3", "-mthumb", "-O2", *rv.WARNINGS]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("runtime")


@pytest.fixture(scope="module")
def driver(work):
    if shutil.which("gcc") is None:
        pytest.fail("gcc not found: apt-get install gcc")
    return rv.build_driver(work)


# -- build hygiene ---------------------------------------------------------------

@pytest.mark.parametrize("compiler", ["gcc", "arm-none-eabi-gcc"])
def test_runtime_compiles_cleanly(compiler, tmp_path):
    if shutil.which(compiler) is None:
        pytest.fail(f"{compiler} not found: ./install.sh installs it")
    flags = ARM_FLAGS if compiler.startswith("arm") else ["-O2", *rv.WARNINGS, "-pedantic"]
    undefined = set()
    for src in rv.runtime_sources():
        obj = tmp_path / (src.stem + ".o")
        proc = subprocess.run([compiler, *flags, f"-I{rv.RUNTIME / 'include'}", "-c", str(src), "-o", str(obj)],
                              capture_output=True, text=True)
        assert proc.returncode == 0 and not proc.stderr, f"{src.name}:\n{proc.stderr}"
        nm = "arm-none-eabi-nm" if compiler.startswith("arm") else "nm"
        if shutil.which(nm):
            out = subprocess.run([nm, "-u", str(obj)], capture_output=True, text=True, check=True).stdout
            undefined |= {line.split()[-1] for line in out.splitlines() if line.strip()}
    ours = {s for s in undefined if s.startswith("dqa_") or s.startswith("dqa__")}
    libc = undefined - ours - {"_GLOBAL_OFFSET_TABLE_"}
    # no malloc, no floating point, nothing from libc but string.h (64-bit helpers of libgcc are fine)
    allowed = {"memcpy", "memset", "memmove", "__aeabi_memcpy", "__aeabi_memset", "__aeabi_memclr",
               "__aeabi_lmul", "__aeabi_llsl", "__aeabi_llsr", "__aeabi_lasr", "__aeabi_uidiv",
               "__aeabi_uidivmod", "__aeabi_idiv", "__aeabi_idivmod"}
    assert libc <= allowed, f"unexpected external symbols: {sorted(libc - allowed)}"


def test_sources_cmake_lists_every_source():
    text = (rv.RUNTIME / "sources.cmake").read_text()
    for src in rv.runtime_sources():
        assert f"src/{src.name}" in text, src.name
    assert "DQA_RUNTIME_INCLUDE_DIR" in text


# -- (a) reader / writer ---------------------------------------------------------------

def _random_config(rng):
    if rng.random() < 0.1:
        return 16, 0, True
    bits = int(rng.integers(2, 9))
    m = int(rng.choice([0, 1, 2, 3, 4])) if bits <= 8 else 0
    m = min(m, 12 - bits)
    return bits, m, bool(rng.integers(2))


def _storage_cases(rng, count):
    cases = []
    for k in range(count):
        bits, m, signed = _random_config(rng)
        shape = (int(rng.integers(1, 5)), int(rng.integers(1, 6)), int(rng.integers(1, 9)))
        ratio = float(rng.choice([0.0, 0.3, 0.7, 1.0]))
        t = rv.random_tensor(rng, f"t{k}", shape, bits, m, signed, ratio=ratio)
        u = rv.random_storage(rng, t)
        if rv.has_errors(t):
            _, symbols = rv.split(t, u)
            full = int(np.asarray(t.huffman.lengths)[symbols].sum())
            kind = rng.choice(["exact", "roomy", "overflow", "zero"], p=[0.25, 0.25, 0.4, 0.1])
            t.err_capacity_bits = {"exact": full, "roomy": full + int(rng.integers(1, 20)), "zero": 0,
                                   "overflow": int(full * rng.uniform(0.1, 0.95))}[kind]
        cases.append((t, u))
    return cases


@pytest.mark.parametrize("seed", range(4))
def test_writer_matches_python_encodings(driver, work, seed):
    rng = np.random.default_rng(100 + seed)
    cases = _storage_cases(rng, 40)
    prog = rv.Program()
    for k, (t, u) in enumerate(cases):
        prog.add_tensor(t, with_codes=bool(k % 3))  # every third derives its codes from the decode table
        prog.write(t.name, u)
    got = rv.run_program(driver, prog, work, f"writer{seed}")
    overflowed = 0
    for k, (t, u) in enumerate(cases):
        want = rv.store(t, u)
        r = got.tensors[k]
        assert len(r.plane) == t.plane_bytes == bitpack.plane_bytes(t.size, t.bits)
        assert r.plane == want.plane, f"{t.name}: plane (n={t.bits}, m={t.extra_bits}, signed={t.signed})"
        assert np.array_equal(r.fine, want.fine), f"{t.name}: fine values read back"
        if rv.has_errors(t):
            assert r.n_coded == want.n_coded, f"{t.name}: n_coded"
            assert r.stream[:len(want.stream)] == want.stream, f"{t.name}: error stream"
            overflowed += want.n_coded < want.n_symbols
    assert got.overflowed == overflowed
    assert overflowed > 0 and any(rv.has_errors(t) and t.extra_bits == 4 for t, _ in cases)


def _skip_pattern(rng, pixels):
    pairs, pos = [], 0
    while pos < pixels:
        skip = int(rng.integers(0, 4))
        read = int(rng.integers(0, 3))
        skip = min(skip, pixels - pos)
        read = min(read, pixels - pos - skip)
        pairs.append((skip, read))
        pos += skip + read
    return pairs


@pytest.mark.parametrize("seed", range(3))
def test_reader_reads_python_encodings(driver, work, seed):
    """Planes from bitpack.pack and streams from HuffmanCode.encode, read (and skipped) in C."""
    rng = np.random.default_rng(200 + seed)
    cases = _storage_cases(rng, 40)
    prog = rv.Program()
    expected_probes = []
    for t, u in cases:
        st = rv.store(t, u)
        stream = (st.n_coded, st.stream) if rv.has_errors(t) else None
        assert stream is None or len(st.stream) <= rv.stream_alloc(t)
        prog.add_tensor(t, plane=st.plane, stream=stream)
        pairs = _skip_pattern(rng, t.shape[0] * t.shape[1])
        prog.readskip(t.name, pairs)
        pixels = st.fine.reshape(-1, t.channels)
        pos = 0
        for skip, read in pairs:
            pos += skip
            expected_probes.append(pixels[pos:pos + read].ravel())
            pos += read
    got = rv.run_program(driver, prog, work, f"reader{seed}")
    for k, (t, u) in enumerate(cases):
        assert np.array_equal(got.tensors[k].fine, rv.store(t, u).fine), t.name
    assert np.array_equal(got.probes, np.concatenate(expected_probes))


def test_input_stage_reads_the_lut(driver, work):
    rng = np.random.default_rng(7)
    b = rv.ModelBuilder(rng, (3, 5, 3))
    t = b.model.tensors["x"]
    prog = rv.Program()
    prog.add_tensor(t, plane=b.pixels.tobytes())
    got = rv.run_program(driver, prog, work, "lut")
    want = t.lut[np.arange(3), b.pixels[0]].astype(np.int64)
    assert np.array_equal(got.tensors[0].fine, want)


def test_forced_overflow(driver, work):
    """A stream that holds only a few codes: n_coded, substituted errors, the counter."""
    rng = np.random.default_rng(3)
    t = rv.random_tensor(rng, "o", (4, 4, 6), 4, 3, True, ratio=0.5)
    t.huffman = HuffmanCode((2, 2, 3, 3, 3, 3, 4, 4))
    t.err_capacity_bits = 11
    u = rv.random_storage(rng, t)
    u[..., t.important] = (u[..., t.important] & ~7) | 0  # every error symbol is 0: code length 2
    t2 = rv.random_tensor(rng, "p", (2, 3, 4), 5, 2, False, ratio=1.0)
    t2.err_capacity_bits = 10_000  # roomy: no overflow
    u2 = rv.random_storage(rng, t2)
    prog = rv.Program()
    prog.add_tensor(t)
    prog.add_tensor(t2)
    prog.write("o", u)
    prog.write("p", u2)
    got = rv.run_program(driver, prog, work, "overflow")
    r = got.tensors[0]
    assert r.n_coded == 5  # 5 codes of 2 bits fit in 11 bits, the 6th does not
    imp = t.important
    fine_imp = r.fine[..., imp].ravel()
    hi = (u[..., imp] >> 3).ravel()
    assert np.array_equal(fine_imp[:5], hi[:5] * 8)
    assert np.array_equal(fine_imp[5:], hi[5:] * 8 + 4)  # e = 2^(m-1) substituted
    assert np.array_equal(r.fine[..., ~imp], u[..., ~imp] * 8)
    assert r.stream[:2] == t.huffman.encode(np.zeros(5, dtype=np.int64))[0]
    assert got.tensors[1].n_coded == 2 * 3 * 4
    assert got.overflowed == 1


# -- (b) kernels against the reference ---------------------------------------------------

def _prefix(b: rv.ModelBuilder, m, act, shape_c=6, capacity=None):
    """x (LUT) -> a DQA tensor the op under test reads."""
    return b.conv("p0", "x", shape_c, k=(3, 3), m=m, act=act, bits=4, capacity=capacity)


def case_conv_first_layer(b, m, cap, act):
    b.conv("y", "x", 8, k=(3, 3), m=m, act=act, capacity=cap)


def case_conv3x3_s1(b, m, cap, act):
    b.conv("y", _prefix(b, m, act), 7, m=m, act=act, capacity=cap)


def case_conv3x3_s2(b, m, cap, act):
    b.conv("y", _prefix(b, m, act), 5, stride=(2, 2), m=m, act=act, bits=5, capacity=cap)


def case_conv_dilation2(b, m, cap, act):
    b.conv("y", _prefix(b, m, act), 4, dilation=(2, 2), m=m, act=act, capacity=cap)


def case_conv_5x3_asym(b, m, cap, act):
    b.conv("y", _prefix(b, m, act), 4, k=(5, 3), stride=(1, 2), padding=(1, 2, 0, 1), m=m, act=act, capacity=cap)


def case_conv_saturating(b, m, cap, act):
    # multipliers so large that rshift_round leaves the int32 range before the clamp
    b.conv("y", _prefix(b, m, act), 5, m=m, act=act, capacity=cap, gain=2.0 ** 35)


def case_depthwise(b, m, cap, act):
    b.conv("y", _prefix(b, m, act), 6, groups=6, m=m, act=act, capacity=cap)


def case_depthwise_s2(b, m, cap, act):
    b.conv("y", _prefix(b, m, act), 6, groups=6, stride=(2, 2), m=m, act=act, capacity=cap)


def case_groups2(b, m, cap, act):
    b.conv("y", _prefix(b, m, act), 4, groups=2, m=m, act=act, bits=3, capacity=cap)


def case_conv1x1(b, m, cap, act):
    b.conv("y", _prefix(b, m, act), 9, k=(1, 1), m=m, act=act, capacity=cap)


def case_conv1x1_s2(b, m, cap, act):
    b.conv("y", _prefix(b, m, act), 5, k=(1, 1), stride=(2, 2), m=m, act=act, capacity=cap)


def case_residual_same(b, m, cap, act):
    p = _prefix(b, m, act)
    b.conv("y", p, 6, m=m, act=act, residual=p, capacity=cap)


def case_residual_option_a(b, m, cap, act):
    p = _prefix(b, m, act)  # 6 channels -> 10, stride 2, channels placed at offset 2
    b.conv("y", p, 10, stride=(2, 2), m=m, act=act, residual=p, residual_stride=2, residual_offset=2,
           capacity=cap)


def case_linear_flatten_output(b, m, cap, act):
    p = b.conv("p0", "x", 3, k=(3, 3), stride=(2, 2), m=m, act=act, capacity=cap)
    f = b.flatten("f", p)
    b.output_linear("y", f, 10)


def case_linear_after_global_pool(b, m, cap, act):
    g = b.avgpool("g", _prefix(b, m, act), m=m, capacity=cap)
    h = b.linear("h", g, 5, m=m, act=act)
    b.output_linear("y", h, 4)


def case_add(b, m, cap, act):
    p = _prefix(b, m, act)
    q = b.conv("q", p, 6, k=(1, 1), m=m, act="none")
    b.add("y", p, q, m=m, act=act, capacity=cap)


def case_add_b_view(b, m, cap, act):
    p = _prefix(b, m, act)
    q = b.conv("q", p, 9, stride=(2, 2), m=m, act="relu")
    b.add("y", q, p, b_stride=2, b_offset=3, m=m, act=act, capacity=cap)


def case_maxpool_pad(b, m, cap, act):
    b.maxpool("y", _prefix(b, m, act), (3, 3), (2, 2), (1, 1, 1, 1), capacity=cap)


def case_maxpool_2x2(b, m, cap, act):
    b.maxpool("y", _prefix(b, m, act), (2, 2), (2, 2), capacity=cap)


def case_avgpool_pad(b, m, cap, act):
    b.avgpool("y", _prefix(b, m, act), (3, 3), (1, 1), (1, 1, 1, 1), m=m, capacity=cap)


def case_avgpool_2x2(b, m, cap, act):
    b.avgpool("y", _prefix(b, m, act), (2, 2), (2, 2), m=m, capacity=cap)


def case_global_avgpool(b, m, cap, act):
    b.avgpool("y", _prefix(b, m, act), m=m, capacity=cap)


def case_concat(b, m, cap, act):
    p = _prefix(b, m, act)
    q = b.conv("q", p, 3, k=(1, 1), m=m, act=act)
    b.concat("y", p, q, capacity=cap)


def case_upsample(b, m, cap, act):
    b.upsample("y", _prefix(b, m, act), (2, 3), capacity=cap)


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}
VARIANTS = [  # (m, capacity of the tested op's output, activation of the tensors it reads)
    (0, None, "none"),
    (3, "exact", "relu"),
    (3, "overflow", "none"),
]
INPUT_SHAPES = [(8, 7, 3), (6, 9, 2), (7, 7, 3)]


@pytest.mark.parametrize("variant", range(len(VARIANTS)))
@pytest.mark.parametrize("case", sorted(CASES))
def test_kernel_matches_reference(driver, work, case, variant):
    m, cap, act = VARIANTS[variant]
    rng = np.random.default_rng(1000 * variant + sorted(CASES).index(case))
    b = rv.ModelBuilder(rng, INPUT_SHAPES[variant])
    CASES[case](b, m, cap, act)
    model = b.model
    facts = rv.check_model(driver, model, b.pixels, work, f"{case}_{variant}", with_codes=variant != 1)
    out = model.tensors[model.output]
    if m:
        assert any(rv.has_errors(t) for t in model.tensors.values()), "no DQA tensor in this case"
        assert facts["errors_coded"] > 0
        if cap == "overflow" and rv.has_errors(out):
            assert out.name in facts.get("overflow_tensors", []), "the forced overflow did not happen"
    # the planner reserves exactly what each kernel's *_get_buffer_size() asks for
    kernels = [n for n in model.nodes if n.op not in ("input", "flatten")]
    assert len(kernels) == len(facts["scratch"])
    for node, size in zip(kernels, facts["scratch"]):
        assert size == planner.scratch_bytes(node, model), f"{node.name}: C scratch {size} differs from the plan"


def test_kernel_sweep_random(driver, work):
    """A few bigger random stacks: many shapes, strides and paddings in one model."""
    rng = np.random.default_rng(42)
    for k in range(3):
        b = rv.ModelBuilder(rng, (int(rng.integers(5, 11)), int(rng.integers(5, 11)), 3))
        m = int(rng.choice([0, 2, 3, 4]))
        x = b.conv("c0", "x", 8, k=(3, 3), m=m, act="relu6", bits=int(rng.integers(3, 7)))
        x = b.conv("c1", x, 8, k=(3, 3), groups=8, stride=(2, 1), m=m, act="relu")
        y = b.conv("c2", x, 12, k=(1, 1), m=m, act="none", bits=5)
        z = b.conv("c3", y, 12, k=(3, 3), m=m, act="relu", residual=y)
        z = b.maxpool("mp", z, (2, 3), (1, 2), (1, 1, 1, 1))
        g = b.avgpool("gp", z, m=m)
        b.output_linear("out", g, 6)
        rv.check_model(driver, b.model, b.pixels, work, f"sweep{k}")


# -- the checks themselves must catch a broken runtime -----------------------------------------

def test_comparison_detects_a_wrong_kernel(driver, work):
    rng = np.random.default_rng(5)
    b = rv.ModelBuilder(rng, (6, 6, 3))
    case_residual_option_a(b, 3, "exact", "relu")
    rv.check_model(driver, b.model, b.pixels, work, "sane")
    original = rv.model_program

    def tampered(model, pixels, with_codes=True):  # the C side gets the weights of one tap changed
        prog = original(model, pixels, with_codes)
        node = next(n for n in model.nodes if n.name == "y")
        cin_g = node.arrays["weight"].shape[3]
        for op in prog.ops:
            if op[0] == rv.OP_CONV and op[3] == prog.index["y"]:
                for k in range(cin_g):  # output channel 0, tap (0, 0)
                    op[15 + k] = 127 if op[15 + k] < 0 else -127
        return prog

    rv.model_program = tampered
    try:
        with pytest.raises(AssertionError):
            rv.check_model(driver, b.model, b.pixels, work, "tampered")
    finally:
        rv.model_program = original


def test_comparison_detects_a_wrong_stream(driver, work):
    """The stream comparison sees a single changed error symbol (the plane is unchanged)."""
    rng = np.random.default_rng(9)
    t = rv.random_tensor(rng, "s", (3, 3, 4), 4, 3, False, ratio=1.0)
    t.huffman = HuffmanCode((3,) * 8)
    t.err_capacity_bits = 10_000
    u = rv.random_storage(rng, t)
    prog = rv.Program()
    prog.add_tensor(t)
    prog.write("s", u)
    got = rv.run_program(driver, prog, work, "stream_check").tensors[0]
    want = rv.store(t, u)
    assert got.plane == want.plane and got.stream[:len(want.stream)] == want.stream
    u2 = u.copy()
    u2[1, 2, 3] ^= 1  # the low bit is part of the error symbol
    wrong = rv.store(t, u2)
    assert wrong.plane == want.plane
    assert got.stream[:len(wrong.stream)] != wrong.stream


# -- a real network ----------------------------------------------------------------------------

@pytest.mark.slow
def test_resnet20_runs_bit_exact(driver, work, resnet20, cifar_calib, cifar_test):
    """The pretrained ResNet-20 (fused option-A residuals, global pooling, linear), quantized
    with DQA and error-stream capacities cut short so that streams overflow."""
    from dqa_mcu.quantize.quantizer import QuantConfig, quantize
    graph, calib = resnet20
    model = quantize(graph, calib, QuantConfig(bits=4, extra_bits=3, stream_margin=-0.2), cifar_calib[:100])
    facts = rv.check_model(driver, model, cifar_test[0][:1], work, "resnet20")
    assert facts["overflowed"] > 0 and facts["errors_coded"] > 0
    assert any(len(n.inputs) == 2 for n in model.nodes if n.op == "conv2d"), "no fused residual"
