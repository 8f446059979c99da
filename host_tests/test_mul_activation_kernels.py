"""mul and table activations (docs/spec.md 5.4.1, 5.4.2): the C kernels against the reference and the spec.

Small hand-built QModels (runtime_vectors.ModelBuilder: random int8 weights, multipliers calibrated on the
actual values, random important channels and Huffman codes, error streams that sometimes overflow) put each
op between DQA producers and a 16-bit 1x1 convolution whose output is the graph output; the exported C
project runs on the host with ASan + UBSan (one model also on cortex-m7 under QEMU) and its outputs and
overflow counters must equal the reference's (np.array_equal). The reference's values of both ops are also
checked against a direct, element-by-element reading of the spec (spec_mul, spec_activation), and the
tables the tests build follow the spec's formulas in float64.
"""
from __future__ import annotations

import math
import shutil
import subprocess

import numpy as np
import pytest

import runtime_vectors as rv
from dqa_mcu import api
from dqa_mcu.codegen import planner
from dqa_mcu.qmodel import QNode, QTensor
from dqa_mcu.quantize.quantizer import fixed_point
from dqa_mcu.reference import dqa as reference


# -- the spec, read literally -------------------------------------------------------------------

def _rshift_round(x: int, t: int) -> int:
    return (x + (1 << (t - 1))) >> t if t >= 1 else x


def spec_mul(vx: np.ndarray, vs: np.ndarray, arrays: dict) -> np.ndarray:
    """u of spec 5.4.1 for (N, H, W, C) x and s of x's shape or (N, 1, 1, C), element by element."""
    n, h, w, c = vx.shape
    vector = vs.shape[1:3] == (1, 1)
    u = np.zeros(vx.shape, dtype=np.int64)
    for i in range(n):
        for y in range(h):
            for x in range(w):
                for o in range(c):
                    s = int(vs[i, 0, 0, o]) if vector else int(vs[i, y, x, o])
                    t = int(vx[i, y, x, o]) * s
                    assert abs(t) < 1 << 24, "spec 5.4.1: |v_x * v_s| < 2^24"
                    r = _rshift_round(t * int(arrays["multiplier"][o]), int(arrays["shift"][o]))
                    u[i, y, x, o] = min(max(r, int(arrays["out_min"][o])), int(arrays["out_max"][o]))
    return u


def spec_activation(v: np.ndarray, arrays: dict) -> np.ndarray:
    """u of spec 5.4.2 for (N, H, W, C) fine values v, element by element."""
    table = arrays["table"]
    reach = (len(table) - 1) // 2
    u = np.zeros(v.shape, dtype=np.int64)
    for index in np.ndindex(*v.shape):
        c = index[-1]
        k = _rshift_round(int(v[index]) * int(arrays["index_multiplier"][c]), int(arrays["index_shift"][c]))
        k = min(max(k, -reach), reach)
        r = _rshift_round(int(table[k + reach]) * int(arrays["multiplier"][c]), int(arrays["shift"][c]))
        u[index] = min(max(r, int(arrays["out_min"][c])), int(arrays["out_max"][c]))
    return u


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def _hardsigmoid(x: float) -> float:
    return min(max(x / 6.0 + 0.5, 0.0), 1.0)


FUNCTIONS = {  # spec 5.4.2's formulas, float64
    "sigmoid": _sigmoid,
    "hardsigmoid": _hardsigmoid,
    "hardswish": lambda x: x * _hardsigmoid(x),
    "tanh": math.tanh,
    "silu": lambda x: x * _sigmoid(x),
}
NON_NEGATIVE = ("sigmoid", "hardsigmoid")


TABLE_REACH = 2047  # spec 5.4.2's K


def spec_table(function: str, index_step: float) -> tuple[np.ndarray, float]:
    """(TABLE, s_t): TABLE[j] = clamp(round_half_up(f((j - K) * s_k) / s_t), -32767, 32767) for j = 0 .. 2K,
    s_t = max |f| / 32767."""
    f = FUNCTIONS[function]
    y = [f(k * index_step) for k in range(-TABLE_REACH, TABLE_REACH + 1)]
    step = max(max(abs(v) for v in y), 1e-8) / 32767
    return np.asarray([min(max(math.floor(v / step + 0.5), -32767), 32767) for v in y], dtype=np.int16), step


def real_reach(t: QTensor) -> np.ndarray:
    """Per channel, the largest |real value| t's storage range holds (an overflowed stream's substitute
    (hi << m) + 2^(m-1) stays inside it)."""
    lo, hi = t.range_of(t.storage_bits)
    return np.maximum(np.abs(lo), np.abs(hi)) * t.storage_step


# -- models -------------------------------------------------------------------------------------

class Builder(rv.ModelBuilder):
    """ModelBuilder with mul and activation."""

    def mul(self, name, x, s, bits=4, m=3, capacity=None, ratio=None) -> str:
        xt, st = self.model.tensors[x], self.model.tensors[s]
        assert xt.channels == st.channels and (st.shape == xt.shape or st.shape[:2] == (1, 1))
        v = self.values()
        p = v[x].astype(np.int64) * v[s].astype(np.int64)  # broadcasts a (1, 1, C) s
        act = "none" if xt.signed or st.signed else "relu"
        out = self.out_tensor(name, xt.shape, bits, m, act, ratio)
        pmax = np.maximum(np.abs(p).reshape(-1, xt.channels).max(axis=0), 1)
        real = self._target(out) / pmax * self.rng.uniform(0.7, 1.6, size=xt.channels)
        (mult,), shift = fixed_point(real)
        node = QNode(name, "mul", [x, s], name, {}, {"multiplier": mult, "shift": shift})
        return self._finish(node, out, act, capacity)

    def activation(self, name, x, function, bits=4, is_output=False) -> str:
        """A table (spec 5.4.2) on x's per-channel fine values; the output a scale per channel (one for the
        16-bit graph output), some channels' top levels clamping."""
        xt = self.model.tensors[x]
        assert xt.lut is None, "a table reads a requantized tensor"
        reach = real_reach(xt)
        index_step = float(reach.max()) / TABLE_REACH
        (index_multiplier,), index_shift = fixed_point(xt.fine_step / index_step)
        table, table_step = spec_table(function, index_step)
        signed = function not in NON_NEGATIVE or is_output
        bits = 16 if is_output else bits
        levels = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
        f = np.vectorize(FUNCTIONS[function])
        ymax = np.maximum(np.abs(f(np.linspace(-reach, reach, 101))).max(axis=0), 1e-8)  # per channel
        if is_output:
            ymax = np.full_like(ymax, ymax.max())
        s_out = ymax / levels * (1.0 if is_output else self.rng.uniform(0.6, 1.0, size=xt.channels))
        out = QTensor(name, xt.shape, bits, signed, 0, s_out, np.zeros(xt.channels, bool))
        (multiplier,), shift = fixed_point(table_step / s_out)
        node = QNode(name, "activation", [x], name, {"function": function},
                     {"index_multiplier": index_multiplier, "index_shift": index_shift, "table": table,
                      "multiplier": multiplier, "shift": shift})
        return self._finish(node, out, "none", None)

    def output(self, x) -> None:
        """A 16-bit 1x1 convolution (every element of x reaches the output), flattened: the graph output."""
        y = self.conv("out", x, self.model.tensors[x].channels, k=(1, 1), bits=16, m=0, act="none")
        self.flatten("out_flat", y)


def _pixels(rng, shape, count=3):
    return rng.integers(0, 256, size=(count, *shape), dtype=np.uint8)


def _vector(b: Builder, name, x, act, m, capacity=None) -> str:
    """A (1, 1, C) vector from x: global average pooling, then a 1x1 convolution (a squeeze-excite branch; the
    builder's linear layer takes one image)."""
    c = b.model.tensors[x].channels
    g = b.avgpool(f"{name}_pool", x, m=m, capacity="roomy")
    return b.conv(name, g, c, k=(1, 1), bits=4, m=m, act=act, capacity=capacity)


def mul_model(rng, shape, vector, x_act, s_act, m_x, m_s, m_out, cap, x_vector=False) -> Builder:
    b = Builder(rng, shape, _pixels(rng, shape))
    c = 4
    if x_vector:  # x itself a (1, 1, C) vector
        p = b.conv("p", "x", c, k=(3, 3), m=m_x, act="relu", capacity="roomy")
        x = _vector(b, "xv", p, x_act, m_x, capacity="exact")
    else:
        x = b.conv("xc", "x", c, k=(3, 3), m=m_x, act=x_act, capacity="roomy")
    if vector:
        s = _vector(b, "s", x, s_act, m_s, capacity="overflow" if m_s else None)
    else:
        s = b.conv("s", "x", c, k=(1, 3), m=m_s, act=s_act, capacity="overflow" if m_s else None)
    b.output(b.mul("y", x, s, m=m_out, capacity=cap))
    return b


def activation_model(rng, shape, function, m, x_act, bits_in=4, bits_out=4, vector=False,
                     is_output=False) -> Builder:
    b = Builder(rng, shape, _pixels(rng, shape))
    c = 6
    p = b.conv("p", "x", c, k=(3, 3), bits=bits_in, m=m, act=x_act, capacity="overflow" if m else None)
    if vector:
        g = b.avgpool("g", p, m=m, capacity="roomy")
        p = b.conv("p_vec", g, c, k=(1, 1), bits=bits_in, m=m, act=x_act, capacity="overflow" if m else None)
    y = b.activation("y", p, function, bits=bits_out, is_output=is_output)
    if is_output:
        b.flatten("out_flat", y)
    else:
        b.output(y)
    return b


MUL_CASES = {  # vector s, activation of x, of s, m of x, s, output, capacity of the output, x a vector
    "vector_unsigned_dqa": (True, "relu", "relu", 3, 2, 3, "exact", False),
    "vector_signed_x_dqa_overflow": (True, "none", "relu", 3, 3, 3, "overflow", False),
    "vector_signed_s_direct_x": (True, "relu", "none", 0, 3, 2, "roomy", False),
    "same_shape_signed_dqa_overflow": (False, "none", "none", 3, 2, 3, "overflow", False),
    "same_shape_mixed_sign_dqa": (False, "relu", "none", 2, 3, 4, "exact", False),
    "same_shape_unsigned_direct": (False, "relu", "relu", 0, 0, 0, None, False),
    "vector_times_vector": (True, "none", "none", 3, 3, 3, "overflow", True),
}
ACT_CASES = {  # function, input shape, m, activation of the input, n of the input, n of the output, vector
    "hardswish_signed_dqa": ("hardswish", (5, 7, 3), 3, "none", 4, 4, False),
    "sigmoid_signed_dqa_m2": ("sigmoid", (4, 5, 3), 2, "none", 4, 4, False),
    "tanh_unsigned_dqa": ("tanh", (5, 4, 3), 3, "relu", 4, 3, False),
    "silu_signed_dqa_m4": ("silu", (3, 6, 3), 4, "none", 3, 5, False),
    "hardsigmoid_vector_dqa": ("hardsigmoid", (5, 5, 3), 3, "none", 4, 8, True),
    "hardswish_direct_8bit": ("hardswish", (4, 4, 3), 0, "none", 8, 8, False),
    "sigmoid_4096_entries": ("sigmoid", (4, 3, 3), 4, "none", 8, 6, False),
}


def check_reference_follows_spec(b: Builder) -> None:
    """The reference's values of mul and activation nodes, against spec_* (and their storage, spec 2)."""
    model = b.model
    values = reference.run(model, b.pixels, keep_tensors=True).tensors
    checked = 0
    for node in model.nodes:
        out = model.tensors[node.output]
        if node.op == "mul":
            u = spec_mul(values[node.inputs[0]], values[node.inputs[1]], node.arrays)
        elif node.op == "activation":
            u = spec_activation(values[node.inputs[0]], node.arrays)
            assert out.extra_bits == 0
        else:
            continue
        for i in range(len(u)):  # what storing u leaves for a consumer: DQA split, overflow substitution
            assert np.array_equal(values[node.output][i], rv.store(out, u[i]).fine), (node.name, i)
        checked += 1
    assert checked


def export_and_run(model, images, target, out, **run_args):
    api.export_project(model, out, target, "mul/activation test model", images, None, None, log=lambda *a: None)
    return api.run_project(out, images, None, None, timeout=600, log=lambda *a: None, **run_args)


def run_case(b: Builder, target, out, **run_args) -> dict:
    check_reference_follows_spec(b)
    report = export_and_run(b.model, b.pixels, target, out, **run_args)
    assert report["images"] == len(b.pixels)
    assert report["bit_exact"], report["mismatched_images"]
    if "overflow" in b.capacity_kinds.values():
        assert report["overflowed_tensors"] > 0, "the forced overflow did not happen"
    return report


def _mixed_dqa(t: QTensor) -> bool:
    return rv.has_errors(t) and t.important.any() and not t.important.all()


@pytest.mark.parametrize("case", sorted(MUL_CASES))
def test_mul_is_bit_exact_on_the_host(case, tmp_path):
    vector, x_act, s_act, m_x, m_s, m_out, cap, x_vector = MUL_CASES[case]
    shape = (5, 6, 3)
    b = mul_model(np.random.default_rng(sorted(MUL_CASES).index(case)), shape, vector, x_act, s_act, m_x, m_s,
                  m_out, cap, x_vector)
    node = next(n for n in b.model.nodes if n.op == "mul")
    x, s, y = (b.model.tensors[t] for t in (*node.inputs, node.output))
    assert (s.shape[:2] == (1, 1)) == vector and (x.shape[:2] == (1, 1)) == x_vector
    for t, m in ((x, m_x), (s, m_s), (y, m_out)):  # DQA tensors carry important and unimportant channels
        assert t.extra_bits == m and (m == 0 or _mixed_dqa(t)), t.name
    assert (x.signed, s.signed) == (x_act == "none", s_act == "none")
    run_case(b, "host", tmp_path / case, sanitize=True)


@pytest.mark.parametrize("case", sorted(ACT_CASES))
def test_activation_is_bit_exact_on_the_host(case, tmp_path):
    function, shape, m, x_act, bits_in, bits_out, vector = ACT_CASES[case]
    b = activation_model(np.random.default_rng(100 + sorted(ACT_CASES).index(case)), shape, function, m, x_act,
                         bits_in, bits_out, vector)
    node = next(n for n in b.model.nodes if n.op == "activation")
    x = b.model.tensors[node.inputs[0]]
    assert (x.shape[:2] == (1, 1)) == vector and x.signed == (x_act == "none")
    if m:  # fine values of both kinds: important (any value) and unimportant (multiples of 2^m)
        assert _mixed_dqa(x)
        v = b.values()[node.inputs[0]]
        assert (v[..., x.important] % (1 << m) != 0).any()
        assert (v[..., ~x.important] % (1 << m) == 0).all()
    assert np.ptp(x.scale) > 0 and len(node.arrays["table"]) == 2 * TABLE_REACH + 1  # channels of many scales
    run_case(b, "host", tmp_path / case, sanitize=True)


def test_activation_as_the_graph_output_is_bit_exact_on_the_host(tmp_path):
    """A table straight into the 16-bit graph output (spec 5.7), read from a DQA input."""
    b = activation_model(np.random.default_rng(200), (4, 5, 3), "tanh", 3, "none", is_output=True)
    assert b.model.tensors["y"].bits == 16
    run_case(b, "host", tmp_path / "out", sanitize=True)


def se_model(rng, shape, c, m, count=3) -> Builder:
    """A MobileNetV3-style block: hardswish(conv), times hardsigmoid(fc(relu(fc(pool)))), then a
    sigmoid of a same-shape product; every tensor DQA except the tables' outputs (m = 0, a scale per channel)."""
    b = Builder(rng, shape, _pixels(rng, shape, count))
    p = b.conv("p", "x", c, k=(3, 3), m=m, act="none", capacity="roomy")
    a = b.activation("hswish", p, "hardswish", bits=4)
    g = b.avgpool("pool", a, m=m, capacity="roomy")
    r = b.conv("fc1", g, c, k=(1, 1), bits=4, m=m, act="relu", capacity="exact")
    e = b.conv("fc2", r, c, k=(1, 1), bits=4, m=m, act="none", capacity="roomy")
    s = b.activation("hsig", e, "hardsigmoid", bits=4)
    y = b.mul("se", a, s, m=m, capacity="roomy")
    q = b.conv("q", "x", c, k=(1, 1), m=m, act="none", capacity="overflow")
    z = b.mul("y", y, q, m=m, capacity="roomy")
    b.output(b.activation("sig", z, "sigmoid", bits=4))
    return b


def test_squeeze_excite_chain_is_bit_exact_on_the_host(tmp_path):
    run_case(se_model(np.random.default_rng(300), (6, 5, 3), 5, 3), "host", tmp_path / "se", sanitize=True)


# -- the C API alone ----------------------------------------------------------------------------

def _compile(tmp_path, name, body, sources, sanitize=False):
    if shutil.which("gcc") is None:
        pytest.fail("gcc not found: apt-get install gcc")
    src = tmp_path / f"{name}.c"
    src.write_text("#include <stdio.h>\n#include <string.h>\n#include \"dqa_runtime.h\"\n" + body)
    exe = tmp_path / name
    files = [str(rv.RUNTIME / "src" / f) for f in (*sources, "dqa_reader.c", "dqa_writer.c")]
    subprocess.run(["gcc", *rv.WARNINGS, "-g", *(rv.SANITIZE if sanitize else []),
                    f"-I{rv.RUNTIME / 'include'}", str(src), *files, "-o", str(exe)],
                   check=True, capture_output=True, text=True)
    return subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout


def test_planner_reserves_what_the_kernels_ask_for(tmp_path):
    """planner.scratch_bytes == dqa_*_get_buffer_size for both ops, over many shapes."""
    rng = np.random.default_rng(11)
    cases, lines = [], []
    for k in range(40):
        h, w, c = (int(v) for v in rng.integers(1, 9, size=3))
        x = QTensor("x", (h, w, c), 4, False, 0, np.ones(c), np.zeros(c, bool))
        o = QTensor("o", (h, w, c), 4, False, 0, np.ones(c), np.zeros(c, bool))
        if k % 2:
            s_shape = (1, 1, c) if k % 4 == 1 else (h, w, c)
            s = QTensor("s", s_shape, 4, False, 0, np.ones(c), np.zeros(c, bool))
            node = QNode("n", "mul", ["x", "s"], "o")
            tensors = {"x": x, "s": s, "o": o}
            lines.append(f"    s.height = {s_shape[0]}; s.width = {s_shape[1]}; s.channels = {c};")
            call = "dqa_mul_get_buffer_size(&x, &s, &out)"
        else:
            node = QNode("n", "activation", ["x"], "o", {"function": "tanh"}, {"table": np.zeros(5, np.int16)})
            tensors = {"x": x, "o": o}
            call = "dqa_activation_get_buffer_size(&x, &out)"
        cases.append(planner.scratch_bytes(node, rv.QModel([node], tensors, "x", "o")))
        lines.append(f"    x.height = {h}; x.width = {w}; x.channels = {c};")
        lines.append(f"    out.height = {h}; out.width = {w}; out.channels = {c};")
        lines.append(f'    printf("%lu\\n", (unsigned long){call});')
    body = ("int main(void)\n{\n    dqa_tensor_info_t x = {0}, s = {0}, out = {0};\n"
            + "\n".join(lines) + "\n    return 0;\n}\n")
    got = [int(v) for v in _compile(tmp_path, "sizes", body, ("dqa_mul.c", "dqa_activation.c")).split()]
    assert got == cases and all(v > 0 for v in got)


def test_activation_clamps_its_index_to_the_table(tmp_path):
    """An index beyond the table's reach reads its end entry, never out of bounds (ASan also watches the
    bytes just past the global table): here index = v (A = 1, S = 0), u = table entry (M = 1, T = 0)."""
    body = r"""
static const int16_t table[3] = {-300, 7, 300}; /* index -1, 0, 1 */
static const int32_t one[1] = {1}, lowest[1] = {-32768}, highest[1] = {32767};
static const uint8_t no_shift[1] = {0};
static const dqa_tensor_info_t in_info = {1, 8, 1, 8, 0, 1, NULL, NULL, 0, NULL, NULL, NULL};
static const dqa_tensor_info_t out_info = {1, 8, 1, 16, 0, 1, NULL, NULL, 0, NULL, NULL, NULL};
int main(void)
{
    static const int8_t v[8] = {-128, -2, -1, 0, 1, 2, 3, 127};
    uint8_t in_plane[8], out_plane[16];
    uint32_t scratch[8];
    int16_t u[8];
    dqa_tensor_t in = {&in_info, in_plane, NULL, 0, 0, 0, 0}, out = {&out_info, out_plane, NULL, 0, 0, 0, 0};
    dqa_status_t status = {0};
    dqa_activation_params_t p = {table, 1u, one, no_shift,
                                 {one, NULL, no_shift, lowest, highest, NULL, NULL}};
    int i;
    if (dqa_activation_get_buffer_size(&in_info, &out_info) > sizeof scratch) return 2;
    memcpy(in_plane, v, sizeof v);
    dqa_activation(&p, &in, &out, scratch, &status);
    memcpy(u, out_plane, sizeof u);
    for (i = 0; i < 8; i++) printf("%d\n", u[i]);
    return 0;
}
"""
    got = [int(v) for v in _compile(tmp_path, "clamp", body, ("dqa_activation.c",), sanitize=True).split()]
    assert got == [-300, -300, -300, 7, 300, 300, 300, 300]


# -- cortex-m7 -------------------------------------------------------------------------------------

@pytest.mark.slow
def test_both_ops_are_bit_exact_on_cortex_m7(tmp_path):
    """The squeeze-excite chain at 16x16x8, DQA m = 3, under QEMU."""
    for tool in ("arm-none-eabi-gcc", "qemu-system-arm", "cmake"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: ./install.sh installs the Arm toolchain and QEMU")
    b = se_model(np.random.default_rng(21), (16, 16, 3), 8, 3, count=2)
    report = run_case(b, "cortex-m7", tmp_path / "m7")
    layers = dict(report["layers"])  # layer name -> instructions (profiled on the first image)
    for name in ("hswish", "hsig", "se", "y", "sig"):
        assert layers[name] > 0, name
    print(f"cortex-m7 instructions, 16x16x8: hardswish table {layers['hswish']}, "
          f"mul by a vector {layers['se']}, mul same shape {layers['y']}, sigmoid table {layers['sig']}, "
          f"hardsigmoid table on 1x1x8 {layers['hsig']}, whole model {report['instructions_per_inference']:.0f}")
