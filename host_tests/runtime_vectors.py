"""Test vectors for the C runtime (firmware/runtime), used by test_runtime.py.

* `build_driver` compiles the runtime plus firmware/runtime/test/runtime_driver.c
  on the host with AddressSanitizer/UBSan (abort on the first error).
* `Program` serializes tensors (dqa_tensor_info_t contents, buffers, initial
  contents) and kernel calls into the driver's int32 program format;
  `run_program` runs it and parses what the driver writes back.
* `ModelBuilder` builds small random QModels directly from dqa_mcu.qmodel
  (random int8 weights, int32 biases, multipliers from
  dqa_mcu.quantize.quantizer.fixed_point calibrated on the actual accumulators, random
  important masks, Huffman codes from random counts, error-stream capacities
  that sometimes overflow); `expected_storage` derives the bytes a producer
  must write from the reference's values with dqa_mcu.bitpack / dqa_mcu.huffman.
"""
from __future__ import annotations

import copy
import os
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dqa_mcu import bitpack, npconv
from dqa_mcu.codegen import dqa as codegen
from dqa_mcu.huffman import HuffmanCode
from dqa_mcu.ir import act_bounds
from dqa_mcu.qmodel import QModel, QNode, QTensor
from dqa_mcu.quantize.quantizer import fixed_point, out_range
from dqa_mcu.reference import dqa as reference

ROOT = Path(__file__).resolve().parents[1]
RUNTIME = ROOT / "firmware" / "runtime"
DRIVER_SOURCE = RUNTIME / "test" / "runtime_driver.c"
MAGIC = 0x44514131
WARNINGS = ["-std=c99", "-Wall", "-Wextra", "-Werror"]
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
OP_WRITE, OP_CONV, OP_ADD, OP_AVGPOOL, OP_MAXPOOL, OP_CONCAT, OP_UPSAMPLE, OP_READSKIP = range(1, 9)
HUGE_CAPACITY = 1 << 30


def runtime_sources() -> list[Path]:
    return sorted((RUNTIME / "src").glob("*.c"))


def build_driver(out_dir: Path) -> Path:
    exe = out_dir / "runtime_driver"
    cmd = ["gcc", *WARNINGS, "-O1", "-g", *SANITIZE, f"-I{RUNTIME / 'include'}",
           *map(str, runtime_sources()), str(DRIVER_SOURCE), "-o", str(exe)]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return exe


def build_header_driver(source: str, out_dir: Path, name: str) -> Path:
    """A C program on the runtime's internal headers (no runtime sources), under ASan + UBSan."""
    path = out_dir / f"{name}.c"
    path.write_text(source)
    exe = out_dir / name
    subprocess.run(["gcc", *WARNINGS, "-O1", *SANITIZE, f"-I{RUNTIME / 'include'}", f"-I{RUNTIME / 'src'}",
                    str(path), "-o", str(exe)], check=True)
    return exe


# -- the driver's program format --------------------------------------------------

def has_errors(t: QTensor) -> bool:
    return t.extra_bits > 0 and bool(t.important.any())


def stream_alloc(t: QTensor) -> int:
    """The smallest stream buffer the header's wording allows: capacity/8 + 1 bytes."""
    return t.err_capacity_bits // 8 + 1 if has_errors(t) else 0


@dataclass
class TensorResult:
    n_coded: int
    plane: bytes
    stream: bytes
    fine: np.ndarray  # (H, W, C) int64


@dataclass
class RunOutput:
    scratch: list[int]
    tensors: list[TensorResult]
    overflowed: int
    probes: np.ndarray


@dataclass
class Program:
    tensors: list[QTensor] = field(default_factory=list)
    words: list[int] = field(default_factory=list)  # tensor section
    ops: list[list[int]] = field(default_factory=list)
    index: dict[str, int] = field(default_factory=dict)

    def add_tensor(self, t: QTensor, alias: str | None = None, plane: bytes | None = None,
                   stream: tuple[int, bytes] | None = None, with_codes: bool = True) -> int:
        """stream: (n_coded, bytes) given by the test instead of a producer."""
        h, w, c = t.shape
        words = [h, w, c, t.bits, t.extra_bits, int(t.signed), self.index[alias] if alias else -1]
        if has_errors(t):
            words += [1, *t.important.astype(int)]
            code = t.huffman
            words += [1, *code.decode_table().astype(int)]
            words += [1, *code.codes, *code.lengths] if with_codes else [0]
        else:
            words += [0, 0, 0]
        words.append(t.err_capacity_bits if has_errors(t) else 0)
        words += [1, *t.lut.astype(int).ravel()] if t.lut is not None else [0]
        words.append(stream_alloc(t))
        if stream is not None:
            words += [2, *plane, stream[0], len(stream[1]), *stream[1]]
        elif plane is not None:
            words += [1, *plane]
        else:
            words.append(0)
        self.index[t.name] = len(self.tensors)
        self.tensors.append(t)
        self.words += words
        return self.index[t.name]

    def op(self, *words) -> None:
        self.ops.append([int(w) for w in words])

    def write(self, name: str, u: np.ndarray) -> None:
        self.op(OP_WRITE, self.index[name], *np.asarray(u).ravel())

    def readskip(self, name: str, pairs: list[tuple[int, int]]) -> None:
        self.op(OP_READSKIP, self.index[name], len(pairs), *[x for p in pairs for x in p])

    def node(self, model: QModel, node: QNode) -> None:
        """The C call the code generator makes for `node` (see dqa_mcu/codegen/dqa.py)."""
        a, at, ix = node.arrays, node.attrs, self.index
        rq = lambda residual: ([*a["multiplier"]] + ([*a["residual_multiplier"]] if residual else [])  # noqa: E731
                               + [*a["shift"], *a["out_min"], *a["out_max"]])
        if node.op in ("conv2d", "linear"):
            res = ix[node.inputs[1]] if len(node.inputs) == 2 else -1
            if node.op == "conv2d":
                w = a["weight"]
                (sh, sw), (pt, _, pl, _), (dh, dw), g = at["stride"], at["padding"], at["dilation"], at["groups"]
            else:
                w = a["weight"][:, None, None, :]
                sh = sw = dh = dw = g = 1
                pt = pl = 0
            self.op(OP_CONV, ix[node.inputs[0]], res, ix[node.output], w.shape[1], w.shape[2], sh, sw, pt, pl,
                    dh, dw, g, at.get("residual_stride", 1), at.get("residual_channel_offset", 0),
                    *codegen.tile_conv_weights(w, g), *a["bias"], int(res >= 0), *rq(res >= 0))
        elif node.op == "add":
            self.op(OP_ADD, ix[node.inputs[0]], ix[node.inputs[1]], ix[node.output], at["b_stride"],
                    at["b_channel_offset"], *rq(True))
        elif node.op in ("avgpool", "global_avgpool", "maxpool"):
            x = model.tensors[node.inputs[0]]
            if node.op == "global_avgpool":
                kernel, stride, pad = (x.shape[0], x.shape[1]), (1, 1), (0, 0, 0, 0)
            else:
                kernel, stride, pad = at["kernel"], at["stride"], at["padding"]
            code = OP_MAXPOOL if node.op == "maxpool" else OP_AVGPOOL
            self.op(code, ix[node.inputs[0]], ix[node.output], *kernel, *stride, pad[0], pad[2],
                    *(rq(False) if code == OP_AVGPOOL else []))
        elif node.op == "concat":
            self.op(OP_CONCAT, ix[node.inputs[0]], ix[node.inputs[1]], ix[node.output])
        elif node.op == "upsample_nearest":
            self.op(OP_UPSAMPLE, ix[node.inputs[0]], ix[node.output], *at["scale"])
        elif node.op not in ("input", "flatten"):
            raise ValueError(node.op)

    def to_bytes(self) -> bytes:
        words = [MAGIC, len(self.tensors), *self.words, len(self.ops)]
        for op in self.ops:
            words += op
        return np.asarray(words, dtype=np.int64).astype("<i4").tobytes()


def run_program(driver: Path, program: Program, work: Path, tag: str = "case") -> RunOutput:
    src, dst = work / f"{tag}.bin", work / f"{tag}.out"
    src.write_bytes(program.to_bytes())
    env = dict(os.environ, ASAN_OPTIONS="detect_leaks=0:abort_on_error=0",
               UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1")
    proc = subprocess.run([str(driver), str(src), str(dst)], capture_output=True, text=True, env=env, timeout=60)
    if proc.returncode != 0:
        raise AssertionError(f"runtime driver failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    words = np.frombuffer(dst.read_bytes(), dtype="<i4").astype(np.int64)
    pos = 0

    def take(n):
        nonlocal pos
        chunk = words[pos:pos + n]
        if len(chunk) != n:
            raise AssertionError("driver result truncated")
        pos += n
        return chunk

    scratch = [int(x) for x in take(len(program.ops))]
    results = []
    for t in program.tensors:
        n_coded = int(take(1)[0]) & 0xFFFFFFFF
        plane = bytes(take(int(take(1)[0])).astype(np.uint8))
        stream = bytes(take(int(take(1)[0])).astype(np.uint8))
        fine = take(t.size).reshape(t.shape)
        results.append(TensorResult(n_coded, plane, stream, fine))
    overflowed = int(take(1)[0])
    probes = take(int(take(1)[0]))
    if pos != len(words):
        raise AssertionError("driver result has trailing words")
    return RunOutput(scratch, results, overflowed, probes)


# -- expected storage -----------------------------------------------------------------

@dataclass
class Storage:
    plane: bytes
    n_symbols: int
    n_coded: int
    stream: bytes  # Python's encoding of the coded symbols
    fine: np.ndarray  # what a consumer reads (errors substituted past n_coded)


def split(t: QTensor, u: np.ndarray):
    """Storage values u (H, W, C) -> (hi codes, error symbols in stream order)."""
    u = np.asarray(u, dtype=np.int64)
    m = t.extra_bits
    if m == 0:
        return u, np.zeros(0, dtype=np.int64)
    imp = t.important.astype(bool)
    hi = np.where(imp, u >> m, u)
    return hi, (u & ((1 << m) - 1))[..., imp].ravel()


def store(t: QTensor, u: np.ndarray) -> Storage:
    """What a producer writing storage values u must leave behind (spec 2.1-2.3)."""
    hi, symbols = split(t, u)
    plane = bitpack.pack(hi.ravel(), t.bits)
    m = t.extra_bits
    if not has_errors(t):
        return Storage(plane, 0, 0, b"", hi << m)
    code = t.huffman
    lengths = np.asarray(code.lengths, dtype=np.int64)[symbols]
    n_coded = int((np.cumsum(lengths) <= t.err_capacity_bits).sum())
    stream, nbits = code.encode(symbols[:n_coded])
    assert nbits <= t.err_capacity_bits
    err = np.where(np.arange(len(symbols)) < n_coded, symbols, 1 << (m - 1))
    fine = hi << m
    imp = t.important.astype(bool)
    sub = fine[..., imp]
    fine[..., imp] = sub + err.reshape(sub.shape)
    return Storage(plane, len(symbols), n_coded, stream, fine)


def storage_from_fine(t: QTensor, v: np.ndarray) -> np.ndarray:
    """Fine values -> storage values u (exact; errors as stored)."""
    if t.extra_bits == 0:
        return v
    return np.where(t.important.astype(bool), v, v >> t.extra_bits)


def random_storage(rng, t: QTensor) -> np.ndarray:
    bits = t.storage_bits
    lo, hi = t.range_of(bits)
    return rng.integers(lo, hi + 1, size=t.shape)


def random_code(rng, m: int) -> HuffmanCode:
    kind = rng.integers(3)
    if kind == 0:
        counts = rng.integers(0, 1000, size=1 << m)
    elif kind == 1:  # geometric: long codes, up to the 8-bit limit
        counts = (2.0 ** (24 - rng.permutation(1 << m) * rng.uniform(1.0, 2.5))).astype(np.int64)
    else:  # peaked at the middle, like real DQA errors
        x = np.arange(1 << m) - (1 << m) / 2
        counts = (1e5 * np.exp(-(x / rng.uniform(0.5, 3)) ** 2)).astype(np.int64)
    return HuffmanCode.from_counts(counts)


def random_tensor(rng, name, shape, bits, m, signed, ratio=None, scale=None) -> QTensor:
    c = shape[2]
    important = np.zeros(c, dtype=bool)
    if m:
        ratio = rng.uniform(0.2, 0.8) if ratio is None else ratio
        important[rng.permutation(c)[:max(1, int(round(ratio * c)))] if ratio > 0 else []] = True
    if scale is None:
        scale = rng.uniform(0.5, 2.0, size=c) * 6.0 / ((1 << bits) - 1)
    t = QTensor(name, tuple(shape), bits, signed, m, np.asarray(scale, dtype=np.float64), important)
    if has_errors(t):
        t.huffman = random_code(rng, m)
        t.err_capacity_bits = HUGE_CAPACITY
    return t


# -- random models ------------------------------------------------------------------

class ModelBuilder:
    """input (LUT) -> ... built node by node; multipliers calibrated on the actual values."""

    def __init__(self, rng, shape, pixels: np.ndarray | None = None):
        self.rng = rng
        h, w, c = shape
        lut = rng.integers(-127, 128, size=(c, 256)).astype(np.int8)
        t = QTensor("x", tuple(shape), 8, False, 0, np.full(c, 1 / 127), np.zeros(c, dtype=bool), lut=lut)
        self.model = QModel([QNode("input", "input", [], "x")], {"x": t}, "x", "x")
        self.pixels = rng.integers(0, 256, size=(1, *shape), dtype=np.uint8) if pixels is None else pixels
        self.capacity_kinds: dict[str, str] = {}

    def values(self) -> dict[str, np.ndarray]:
        return reference.run(self.model, self.pixels, keep_tensors=True).tensors

    def out_tensor(self, name, shape, bits, m, act, ratio=None) -> QTensor:
        signed = act == "none"
        return random_tensor(self.rng, name, shape, bits, m, signed, ratio)

    def _finish(self, node: QNode, out: QTensor, act: str, capacity: str | None) -> str:
        if act is not None:
            lo, hi = out_range(out, act_bounds({"act": act}))
            node.arrays.update(out_min=lo.astype(np.int64), out_max=hi.astype(np.int64))
        self.model.tensors[out.name] = out
        self.model.nodes.append(node)
        self.model.output = out.name
        if has_errors(out):
            self.set_capacity(out.name, capacity or self.rng.choice(["exact", "roomy", "overflow", "overflow"]))
        return out.name

    def set_capacity(self, name: str, kind: str) -> None:
        t = self.model.tensors[name]
        t.err_capacity_bits = HUGE_CAPACITY
        bits = reference.run(self.model, self.pixels).stats[name].stream_bits[0]
        t.err_capacity_bits = {"exact": bits, "roomy": bits + 13, "zero": 0,
                               "overflow": int(bits * self.rng.uniform(0.2, 0.9))}[kind]
        self.capacity_kinds[name] = kind

    def _target(self, out: QTensor) -> np.ndarray:
        """Typical largest storage value per output channel."""
        lo, hi = out.range_of(out.storage_bits)
        return np.maximum(np.abs(lo), hi).astype(np.float64)

    def conv(self, name, x, cout, k=(3, 3), stride=(1, 1), padding=None, dilation=(1, 1), groups=1,
             bits=4, m=3, act="none", residual=None, residual_stride=1, residual_offset=0,
             capacity=None, ratio=None, op="conv2d", gain=1.0) -> str:
        xt = self.model.tensors[x]
        v = self.values()
        if op == "linear":
            cin = xt.size
            weight = self.rng.integers(-127, 128, size=(cout, cin)).astype(np.int8)
            w4 = weight[:, None, None, :]
            xin = v[x].reshape(1, 1, 1, -1)
            attrs = {}
            oh = ow = 1
        else:
            kh, kw = k
            if padding is None:
                padding = ((kh - 1) * dilation[0] // 2,) * 2 + ((kw - 1) * dilation[1] // 2,) * 2
            cin_g = xt.channels // groups
            weight = self.rng.integers(-127, 128, size=(cout, kh, kw, cin_g)).astype(np.int8)
            w4 = weight
            xin = v[x]
            attrs = {"stride": tuple(stride), "padding": tuple(padding), "dilation": tuple(dilation),
                     "groups": groups, "act": act}
            oh = npconv.out_size(xt.shape[0], kh, stride[0], padding[0], padding[1], dilation[0])
            ow = npconv.out_size(xt.shape[1], kw, stride[1], padding[2], padding[3], dilation[1])
        dtype = npconv.exact_dtype(reference.fine_max_abs(xt), w4)
        acc = np.rint(npconv.conv2d(xin, w4, attrs.get("stride", (1, 1)), attrs.get("padding", (0, 0, 0, 0)),
                                    attrs.get("dilation", (1, 1)), groups, dtype)).astype(np.int64)
        spread = np.maximum(np.abs(acc).reshape(-1, cout).max(axis=0), 1)
        bias = np.rint(self.rng.uniform(-0.5, 0.5, size=cout) * spread).astype(np.int64)
        out = self.out_tensor(name, (oh, ow, cout), bits, m, act, ratio)
        target = self._target(out)
        reals = [np.minimum(target / (spread * 1.5) * self.rng.uniform(0.6, 2.0, size=cout) * gain, 2.0 ** 29)]
        inputs = [x]
        if residual is not None:
            rt = self.model.tensors[residual]
            inputs.append(residual)
            attrs.update(residual_stride=residual_stride, residual_channel_offset=residual_offset)
            rmax = np.zeros(cout)
            rmax[residual_offset:residual_offset + rt.channels] = np.maximum(
                np.abs(v[residual]).reshape(-1, rt.channels).max(axis=0), 1)
            real_r = np.where(rmax > 0, target / np.maximum(rmax, 1) * self.rng.uniform(0.3, 1.0, size=cout), 0.0)
            reals.append(real_r)
        mults, shift = fixed_point(*reals)
        arrays = {"weight": weight, "bias": bias, "multiplier": mults[0], "shift": shift}
        if residual is not None:
            arrays["residual_multiplier"] = mults[1]
        node = QNode(name, op, inputs, name, attrs, arrays)
        return self._finish(node, out, act, capacity)

    def linear(self, name, x, cout, **kw) -> str:
        return self.conv(name, x, cout, op="linear", **kw)

    def output_linear(self, name, x, cout) -> str:
        """The graph output: signed 16-bit, one scale, m = 0."""
        name = self.linear(name, x, cout, bits=16, m=0, act="none")
        return name

    def add(self, name, a, b, b_stride=1, b_offset=0, bits=4, m=3, act="none", capacity=None, ratio=None) -> str:
        at, bt = self.model.tensors[a], self.model.tensors[b]
        v = self.values()
        cout = at.channels
        out = self.out_tensor(name, at.shape, bits, m, act, ratio)
        target = self._target(out)
        amax = np.maximum(np.abs(v[a]).reshape(-1, cout).max(axis=0), 1)
        bmax = np.zeros(cout)
        bmax[b_offset:b_offset + bt.channels] = np.maximum(np.abs(v[b]).reshape(-1, bt.channels).max(axis=0), 1)
        ra = target / amax * self.rng.uniform(0.3, 1.0, size=cout)
        rb = np.where(bmax > 0, target / np.maximum(bmax, 1) * self.rng.uniform(0.3, 1.0, size=cout), 0.0)
        (ma, mb), shift = fixed_point(ra, rb)
        node = QNode(name, "add", [a, b], name, {"b_stride": b_stride, "b_channel_offset": b_offset, "act": act},
                     {"multiplier": ma, "residual_multiplier": mb, "shift": shift})
        return self._finish(node, out, act, capacity)

    def avgpool(self, name, x, kernel=None, stride=None, padding=(0, 0, 0, 0), bits=4, m=3, capacity=None,
                ratio=None) -> str:
        xt = self.model.tensors[x]
        v = self.values()[x]
        c = xt.channels
        if kernel is None:  # global
            s = v.sum(axis=(1, 2))
            op, attrs, shape = "global_avgpool", {}, (1, 1, c)
        else:
            s = npconv.windows(v, *kernel, stride, padding).sum(axis=(4, 5))
            op, attrs = "avgpool", {"kernel": kernel, "stride": stride, "padding": padding}
            shape = s.shape[1:]
        act = "none" if xt.signed else "relu"
        out = self.out_tensor(name, shape, bits, m, act, ratio)
        smax = np.maximum(np.abs(s).reshape(-1, c).max(axis=0), 1)
        real = self._target(out) / smax * self.rng.uniform(0.7, 1.6, size=c)  # divisor folded in
        (mult,), shift = fixed_point(real)
        node = QNode(name, op, [x], name, attrs, {"multiplier": mult, "shift": shift})
        return self._finish(node, out, act, capacity)

    def _copy_tensor(self, name, shape, sources: list[QTensor]) -> QTensor:
        first = sources[0]
        t = QTensor(name, tuple(shape), first.bits, first.signed, first.extra_bits,
                    np.concatenate([s.scale for s in sources]), np.concatenate([s.important for s in sources]))
        if has_errors(t):
            t.huffman = random_code(self.rng, t.extra_bits)
            t.err_capacity_bits = HUGE_CAPACITY
        return t

    def maxpool(self, name, x, kernel, stride, padding=(0, 0, 0, 0), capacity=None) -> str:
        xt = self.model.tensors[x]
        oh = npconv.out_size(xt.shape[0], kernel[0], stride[0], padding[0], padding[1])
        ow = npconv.out_size(xt.shape[1], kernel[1], stride[1], padding[2], padding[3])
        out = self._copy_tensor(name, (oh, ow, xt.channels), [xt])
        node = QNode(name, "maxpool", [x], name, {"kernel": kernel, "stride": stride, "padding": padding}, {})
        return self._finish(node, out, None, capacity)

    def concat(self, name, a, b, capacity=None) -> str:
        at, bt = self.model.tensors[a], self.model.tensors[b]
        out = self._copy_tensor(name, (*at.shape[:2], at.channels + bt.channels), [at, bt])
        return self._finish(QNode(name, "concat", [a, b], name, {}, {}), out, None, capacity)

    def upsample(self, name, x, scale, capacity=None) -> str:
        xt = self.model.tensors[x]
        out = self._copy_tensor(name, (xt.shape[0] * scale[0], xt.shape[1] * scale[1], xt.channels), [xt])
        return self._finish(QNode(name, "upsample_nearest", [x], name, {"scale": tuple(scale)}, {}), out, None,
                            capacity)

    def flatten(self, name, x) -> str:
        xt = self.model.tensors[x]
        src = self.model.storage_of(x)
        tiles = xt.shape[0] * xt.shape[1]
        t = QTensor(name, (1, 1, xt.size), xt.bits, xt.signed, xt.extra_bits, np.tile(xt.scale, tiles),
                    np.tile(xt.important, tiles), huffman=xt.huffman, err_capacity_bits=xt.err_capacity_bits,
                    alias_of=src.name)
        self.model.tensors[name] = t
        self.model.nodes.append(QNode(name, "flatten", [x], name, {}, {}))
        self.model.output = name
        return name


# -- running a model through the C runtime ---------------------------------------------

def model_program(model: QModel, pixels: np.ndarray, with_codes: bool = True) -> Program:
    prog = Program()
    for node in model.nodes:
        t = model.tensors[node.output]
        if node.op == "input":
            prog.add_tensor(t, plane=pixels.reshape(-1).tobytes())
        else:
            prog.add_tensor(t, alias=t.alias_of, with_codes=with_codes)
    for node in model.nodes:
        prog.node(model, node)
    return prog


def untruncated_storage(model: QModel, pixels: np.ndarray, name: str) -> np.ndarray:
    """Storage values u of tensor `name` before its own error stream can overflow
    (its inputs as the deployed model computes them)."""
    m2 = copy.deepcopy(model)
    m2.tensors[name].err_capacity_bits = HUGE_CAPACITY
    v = reference.run(m2, pixels, keep_tensors=True).tensors[name][0]
    return storage_from_fine(m2.tensors[name], v)


def check_model(driver: Path, model: QModel, pixels: np.ndarray, work: Path, tag: str,
                with_codes: bool = True) -> dict:
    """Runs `model` on one image in C and in the reference; asserts bit-exact agreement of
    every tensor's fine values, code plane, error stream, n_coded and the overflow counter.
    Returns facts about the run (for coverage assertions)."""
    assert pixels.shape[0] == 1
    ref = reference.run(model, pixels, keep_tensors=True)
    prog = model_program(model, pixels, with_codes)
    got = run_program(driver, prog, work, tag)
    facts = {"overflowed": got.overflowed, "scratch": got.scratch, "errors_coded": 0}
    for name, i in prog.index.items():
        t = model.tensors[name]
        r = got.tensors[i]
        want_fine = ref.tensors[name][0]
        assert np.array_equal(r.fine, want_fine), f"{tag}: tensor {name}: fine values differ"
        if t.lut is not None or t.alias_of:
            continue
        st = store(t, untruncated_storage(model, pixels, name) if has_errors(t) else storage_from_fine(t, want_fine))
        assert np.array_equal(st.fine, want_fine), f"{tag}: {name}: test's own storage model disagrees"
        assert r.plane == st.plane, f"{tag}: tensor {name}: code plane bytes differ"
        if has_errors(t):
            assert r.n_coded == st.n_coded, f"{tag}: tensor {name}: n_coded {r.n_coded} != {st.n_coded}"
            assert r.stream[:len(st.stream)] == st.stream, f"{tag}: tensor {name}: error stream differs"
            facts["errors_coded"] += st.n_coded
            if st.n_coded < st.n_symbols:
                facts.setdefault("overflow_tensors", []).append(name)
    assert got.overflowed == int(ref.overflowed_tensors[0]), \
        f"{tag}: overflowed_tensors {got.overflowed} != reference {int(ref.overflowed_tensors[0])}"
    return facts
