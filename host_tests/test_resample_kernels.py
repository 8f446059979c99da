"""depth_to_space and upsample_bilinear (docs/spec.md 5.6, 5.6.1): the C kernels against the reference.

Small hand-built QModels (runtime_vectors.ModelBuilder: random int8 weights, multipliers calibrated on the
actual values, random important channels and Huffman codes, error streams that sometimes overflow) put each
op between a DQA producer and a 16-bit 1x1 convolution whose output is the graph output; the exported C
project runs on the host with ASan + UBSan (one model also on cortex-m7 under QEMU) and its outputs and
overflow counters must equal the reference's (np.array_equal). The reference's values of the two ops are
also checked against a direct, loop-by-loop reading of the spec, and the spec's bilinear taps against
PyTorch's interpolate.
"""
from __future__ import annotations

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

def spec_taps(size: int, s: int) -> list[tuple[int, int, int, int]]:
    """Spec 5.6.1, per output index along an axis: (i0, i1, weight of i0, weight of i1)."""
    taps = []
    for o in range(size * s):
        n = max(2 * o + 1 - s, 0)
        i0, f = n // (2 * s), n % (2 * s)
        taps.append((i0, min(i0 + 1, size - 1), 2 * s - f, f))
    return taps


def spec_bilinear_sum(v: np.ndarray, sh: int, sw: int) -> np.ndarray:
    """S of spec 5.6.1 for (N, H, W, C) fine values, element by element (vectorized over N and C)."""
    n, h, w, c = v.shape
    v = v.astype(np.int64)
    s = np.zeros((n, h * sh, w * sw, c), dtype=np.int64)
    for oy, (y0, y1, wy0, wy1) in enumerate(spec_taps(h, sh)):
        for ox, (x0, x1, wx0, wx1) in enumerate(spec_taps(w, sw)):
            s[:, oy, ox] = (wy0 * wx0 * v[:, y0, x0] + wy0 * wx1 * v[:, y0, x1]
                            + wy1 * wx0 * v[:, y1, x0] + wy1 * wx1 * v[:, y1, x1])
    return s


def spec_depth_to_space(v: np.ndarray, r: int) -> np.ndarray:
    n, h, w, cin = v.shape
    c = cin // (r * r)
    out = np.zeros((n, h * r, w * r, c), dtype=v.dtype)
    for i in range(r):
        for j in range(r):
            for ch in range(c):
                out[:, i::r, j::r, ch] = v[:, :, :, ch * r * r + i * r + j]
    return out


# -- models -------------------------------------------------------------------------------------

class Builder(rv.ModelBuilder):
    """ModelBuilder with the two ops; `tie = g` makes the next requantized tensor's channels share one scale
    and one importance in groups of g (what the quantizer guarantees for a depth_to_space input)."""

    tie = 1

    def out_tensor(self, name, shape, bits, m, act, ratio=None) -> QTensor:
        t = super().out_tensor(name, shape, bits, m, act, ratio)
        g, self.tie = self.tie, 1
        if g > 1:
            groups = t.channels // g
            t.scale = np.repeat(t.scale.reshape(groups, g).max(axis=1), g)
            imp = np.zeros(groups, dtype=bool)
            if m:  # some groups important, and some not when there are several
                k = max(1, min(groups - 1, int(round(self.rng.uniform(0.3, 0.7) * groups)))) if groups > 1 else 1
                imp[self.rng.permutation(groups)[:k]] = True
            t.important = np.repeat(imp, g)
        return t

    def depth_to_space(self, name, x, r, capacity=None) -> str:
        xt = self.model.tensors[x]
        h, w, cin = xt.shape
        g = r * r
        assert cin % g == 0
        for part in (xt.scale.reshape(-1, g), xt.important.reshape(-1, g)):
            assert (part == part[:, :1]).all(), "depth_to_space input channels are not tied"
        out = QTensor(name, (h * r, w * r, cin // g), xt.bits, xt.signed, xt.extra_bits, xt.scale[::g].copy(),
                      xt.important[::g].copy())
        if rv.has_errors(out):
            out.huffman = rv.random_code(self.rng, out.extra_bits)
            out.err_capacity_bits = rv.HUGE_CAPACITY
        return self._finish(QNode(name, "depth_to_space", [x], name, {"block": r}, {}), out, None, capacity)

    def bilinear(self, name, x, scale, bits=4, m=3, capacity=None, ratio=None) -> str:
        xt = self.model.tensors[x]
        s = spec_bilinear_sum(self.values()[x], *scale)
        if xt.lut is not None:  # spec 5.6.1: an image, stored at 8 bits, signed, m = 0
            bits, m, act = 8, 0, "none"
        else:
            act = "none" if xt.signed else "relu"
        out = self.out_tensor(name, s.shape[1:], bits, m, act, ratio)
        smax = np.maximum(np.abs(s).reshape(-1, xt.channels).max(axis=0), 1)
        real = self._target(out) / smax * self.rng.uniform(0.7, 1.6, size=xt.channels)  # divisor folded in
        (mult,), shift = fixed_point(real)
        node = QNode(name, "upsample_bilinear", [x], name, {"scale": tuple(scale)},
                     {"multiplier": mult, "shift": shift})
        return self._finish(node, out, act, capacity)

    def output(self, x) -> None:
        """A 16-bit 1x1 convolution (every element of x reaches the output), flattened: the graph output."""
        y = self.conv("out", x, self.model.tensors[x].channels, k=(1, 1), bits=16, m=0, act="none")
        self.flatten("out_flat", y)


def d2s_model(rng, shape, r, c_out, m, act, cap, bits=4):
    b = Builder(rng, shape, rng.integers(0, 256, size=(3, *shape), dtype=np.uint8))
    b.tie = r * r
    p = b.conv("p", "x", c_out * r * r, k=(3, 3), bits=bits, m=m, act=act)
    b.output(b.depth_to_space("y", p, r, capacity=cap))
    return b


def bilinear_model(rng, shape, scale, m, act, cap, from_input=False, bits=4):
    b = Builder(rng, shape, rng.integers(0, 256, size=(3, *shape), dtype=np.uint8))
    p = "x" if from_input else b.conv("p", "x", 4, k=(3, 3), bits=bits, m=m, act=act)
    b.output(b.bilinear("y", p, scale, bits=bits, m=m, capacity=cap))
    return b


def bilinear_then_d2s_model(rng):
    """upsample_bilinear is a valid producer of a depth_to_space input (spec 5.6); one input row (H = 1)."""
    shape = (1, 5, 3)
    b = Builder(rng, shape, rng.integers(0, 256, size=(3, *shape), dtype=np.uint8))
    p = b.conv("p", "x", 8, k=(1, 3), m=2, act="relu")
    b.tie = 4
    q = b.bilinear("q", p, (1, 3), m=2, capacity="roomy")
    b.output(b.depth_to_space("y", q, 2, capacity="overflow"))
    return b


D2S_CASES = {  # shape, r, output channels, m, activation of the input, error-stream capacity of the output
    "r2_odd_dqa_unsigned": ((5, 7, 3), 2, 2, 3, "relu", "exact"),
    "r3_width1_dqa_signed_overflow": ((4, 1, 3), 3, 2, 2, "none", "overflow"),
    "r3_dqa_m4": ((3, 5, 2), 3, 3, 4, "relu6", "roomy"),
    "r2_direct_signed": ((3, 5, 3), 2, 3, 0, "none", None),
}
BILINEAR_CASES = {  # shape, (s_h, s_w), m, activation of the input, capacity, read the input stage
    "2x2_odd_dqa_unsigned": ((5, 7, 3), (2, 2), 3, "relu", "exact", False),
    "3x3_width1_dqa_signed_overflow": ((4, 1, 3), (3, 3), 2, "none", "overflow", False),
    "2x1_dqa": ((3, 5, 3), (2, 1), 3, "relu", "overflow", False),
    "1x3_direct_signed": ((6, 3, 3), (1, 3), 0, "none", None, False),
    "2x2_from_input_stage": ((5, 3, 3), (2, 2), 0, "none", None, True),
}


def check_reference_follows_spec(b: Builder) -> None:
    """The reference's values of the ops under test, against spec_* (and their storage)."""
    model = b.model
    values = reference.run(model, b.pixels, keep_tensors=True).tensors
    for node in model.nodes:
        if node.op == "depth_to_space":
            out = model.tensors[node.output]
            want = spec_depth_to_space(values[node.inputs[0]], node.attrs["block"])
            if not rv.has_errors(out):  # with errors the stored values may be substituted (spec 2.3)
                assert np.array_equal(values[node.output], want), node.name
            else:
                lost = values[node.output] != want
                assert (lost[..., ~out.important] == 0).all(), node.name
        elif node.op == "upsample_bilinear":
            out = model.tensors[node.output]
            a = node.arrays
            s = spec_bilinear_sum(values[node.inputs[0]], *node.attrs["scale"])
            u = reference.rshift_round(s * a["multiplier"], a["shift"])
            u = np.clip(u, a["out_min"], a["out_max"])
            if not rv.has_errors(out):
                fine = u << out.extra_bits if out.extra_bits else u
                want = np.where(out.important, u, fine)
                assert np.array_equal(values[node.output], want), node.name


def export_and_run(model, images, target, out, **run_args):
    api.export_project(model, out, target, "resample test model", images, None, None, log=lambda *a: None)
    return api.run_project(out, images, None, None, timeout=600, log=lambda *a: None, **run_args)


def run_case(b: Builder, target, out, **run_args) -> dict:
    check_reference_follows_spec(b)
    model = b.model
    y = model.tensors["y"]
    if y.extra_bits:
        assert rv.has_errors(y) and y.important.any() and not y.important.all(), "not a mixed DQA tensor"
    report = export_and_run(model, b.pixels, target, out, **run_args)
    assert report["images"] == len(b.pixels)
    assert report["bit_exact"], report["mismatched_images"]
    if b.capacity_kinds.get("y") == "overflow":
        assert report["overflowed_tensors"] > 0, "the forced overflow did not happen"
    return report


@pytest.mark.parametrize("case", sorted(D2S_CASES))
def test_depth_to_space_is_bit_exact_on_the_host(case, tmp_path):
    shape, r, c_out, m, act, cap = D2S_CASES[case]
    b = d2s_model(np.random.default_rng(sorted(D2S_CASES).index(case)), shape, r, c_out, m, act, cap)
    run_case(b, "host", tmp_path / case, sanitize=True)


@pytest.mark.parametrize("case", sorted(BILINEAR_CASES))
def test_upsample_bilinear_is_bit_exact_on_the_host(case, tmp_path):
    shape, scale, m, act, cap, from_input = BILINEAR_CASES[case]
    b = bilinear_model(np.random.default_rng(100 + sorted(BILINEAR_CASES).index(case)), shape, scale, m, act,
                       cap, from_input)
    run_case(b, "host", tmp_path / case, sanitize=True)


def test_bilinear_into_depth_to_space_on_one_row_is_bit_exact_on_the_host(tmp_path):
    run_case(bilinear_then_d2s_model(np.random.default_rng(7)), "host", tmp_path / "chain", sanitize=True)


def _sr_net(nn, F):
    class SR(nn.Module):  # pixel shuffle head + a bilinear copy of the image (global residual)
        def __init__(self):
            super().__init__()
            self.c1, self.c2 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 12, 3, padding=1)
            self.shuffle, self.c3 = nn.PixelShuffle(2), nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x):
            y = self.shuffle(self.c2(F.relu(self.c1(x))))
            return self.c3(y) + F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    return SR(), (7, 9, 3), 3


def _unet_decoder(nn, F):
    class Up(nn.Module):  # ConvTranspose2d(k = s = 3) -> 1x1 conv + depth_to_space; bilinear of features
        def __init__(self):
            super().__init__()
            self.c1, self.up, self.c2 = nn.Conv2d(3, 6, 3, padding=1), nn.ConvTranspose2d(6, 4, 3, stride=3), \
                nn.Conv2d(6, 4, 1)

        def forward(self, x):
            a = F.relu(self.c1(x))
            return self.up(a) + F.interpolate(self.c2(a), scale_factor=3, mode="bilinear", align_corners=False)
    return Up(), (5, 1, 3), 2


@pytest.mark.parametrize("net", ["sr", "unet_decoder"])
def test_quantized_networks_are_bit_exact_on_the_host(net, tmp_path):
    """Through the whole pipeline: torch import, DQA quantization (ties the depth_to_space groups), export."""
    torch = pytest.importorskip("torch")
    from torch import nn
    from torch.nn import functional as F

    from dqa_mcu.frontends import passes
    from dqa_mcu.frontends.torch_import import import_module
    from dqa_mcu.quantize.calibrate import calibrate
    from dqa_mcu.quantize.quantizer import QuantConfig, quantize
    torch.manual_seed(0)
    module, shape, m = {"sr": _sr_net, "unet_decoder": _unet_decoder}[net](nn, F)
    x = np.random.default_rng(0).integers(0, 256, size=(24, *shape), dtype=np.uint8)
    graph = passes.optimize(import_module(module.eval(), shape))
    model = quantize(graph, calibrate(graph, x, show_progress=False),
                     QuantConfig(bits=4, extra_bits=m, important_ratio=0.4), x)
    ops = {n.op for n in model.nodes}
    assert {"depth_to_space", "upsample_bilinear"} <= ops
    assert any(rv.has_errors(model.tensors[n.output]) for n in model.nodes if n.op == "depth_to_space")
    report = export_and_run(model, x[:4], "host", tmp_path / net, sanitize=True)  # an image output
    assert report["bit_exact"], report["mismatched_images"]


def test_the_spec_taps_are_pytorchs_bilinear():
    """spec 5.6.1's integer taps give F.interpolate(mode="bilinear", align_corners=False) exactly."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    for h, w, sh, sw in [(5, 7, 2, 2), (4, 1, 3, 3), (3, 5, 2, 1), (6, 3, 1, 3), (2, 3, 4, 5)]:
        x = rng.integers(-100, 100, size=(1, h, w, 2))
        want = torch.nn.functional.interpolate(torch.from_numpy(x.transpose(0, 3, 1, 2)).double(),
                                               scale_factor=(sh, sw), mode="bilinear", align_corners=False)
        got = spec_bilinear_sum(x, sh, sw) / (4 * sh * sw)
        assert np.allclose(got, want.numpy().transpose(0, 2, 3, 1), rtol=0, atol=1e-9), (h, w, sh, sw)


def test_planner_reserves_what_the_kernels_ask_for(tmp_path):
    """planner.scratch_bytes == dqa_*_get_buffer_size for both ops, over many shapes."""
    if shutil.which("gcc") is None:
        pytest.fail("gcc not found: apt-get install gcc")
    rng = np.random.default_rng(11)
    cases, lines = [], []
    for k in range(40):
        h, w, c = (int(v) for v in rng.integers(1, 9, size=3))
        if k % 2:
            r = int(rng.integers(1, 4))
            src = QTensor("i", (h, w, c * r * r), 4, False, 0, np.ones(c * r * r), np.zeros(c * r * r, bool))
            dst = QTensor("o", (h * r, w * r, c), 4, False, 0, np.ones(c), np.zeros(c, bool))
            node = QNode("n", "depth_to_space", ["i"], "o", {"block": r})
            call = "dqa_depth_to_space_get_buffer_size(&in, &out)"
        else:
            sh, sw = (int(v) for v in rng.integers(1, 4, size=2))
            src = QTensor("i", (h, w, c), 4, False, 0, np.ones(c), np.zeros(c, bool))
            dst = QTensor("o", (h * sh, w * sw, c), 4, False, 0, np.ones(c), np.zeros(c, bool))
            node = QNode("n", "upsample_bilinear", ["i"], "o", {"scale": (sh, sw)})
            call = "dqa_upsample_bilinear_get_buffer_size(&p, &in, &out)"
            lines.append(f"    p.scale_h = {sh}; p.scale_w = {sw};")
        model = rv.QModel([node], {"i": src, "o": dst}, "i", "o")
        cases.append(planner.scratch_bytes(node, model))
        lines.append(f"    in.height = {src.shape[0]}; in.width = {src.shape[1]}; in.channels = {src.shape[2]};")
        lines.append(f"    out.height = {dst.shape[0]}; out.width = {dst.shape[1]}; out.channels = {dst.shape[2]};")
        lines.append(f'    printf("%lu\\n", (unsigned long){call});')
    src_file = tmp_path / "sizes.c"
    src_file.write_text("#include <stdio.h>\n#include \"dqa_runtime.h\"\nint main(void)\n{\n"
                        "    dqa_tensor_info_t in = {0}, out = {0};\n    dqa_upsample_params_t p = {0};\n"
                        + "\n".join(lines) + "\n    return 0;\n}\n")
    exe = tmp_path / "sizes"
    sources = [str(rv.RUNTIME / "src" / f) for f in ("dqa_depth_to_space.c", "dqa_upsample_bilinear.c",
                                                     "dqa_reader.c", "dqa_writer.c", "dqa_window.c")]
    subprocess.run(["gcc", *rv.WARNINGS, f"-I{rv.RUNTIME / 'include'}", str(src_file), *sources, "-o", str(exe)],
                   check=True, capture_output=True, text=True)
    got = [int(v) for v in subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split()]
    assert got == cases


@pytest.mark.slow
def test_both_ops_are_bit_exact_on_cortex_m7(tmp_path):
    """16x16x12 -> 32x32x3 depth_to_space and 16x16x3 -> 32x32x3 bilinear, DQA, under QEMU."""
    for tool in ("arm-none-eabi-gcc", "qemu-system-arm", "cmake"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: ./install.sh installs the Arm toolchain and QEMU")
    rng = np.random.default_rng(21)
    shape = (16, 16, 3)
    b = Builder(rng, shape, rng.integers(0, 256, size=(2, *shape), dtype=np.uint8))
    b.tie = 4
    p = b.conv("p", "x", 12, k=(3, 3), bits=4, m=3, act="relu")
    d = b.depth_to_space("d2s", p, 2, capacity="roomy")
    q = b.conv("q", "x", 3, k=(3, 3), bits=4, m=3, act="none")
    u = b.bilinear("y", q, (2, 2), bits=4, m=3, capacity="overflow")
    b.output(b.add("sum", d, u, m=3, act="none"))
    report = run_case(b, "cortex-m7", tmp_path / "m7")
    layers = dict(report["layers"])  # layer name -> instructions (profiled on the first image)
    assert layers["d2s"] > 0 and layers["y"] > 0
    print(f"cortex-m7 instructions: depth_to_space 16x16x12 -> 32x32x3 {layers['d2s']}, "
          f"upsample_bilinear 16x16x3 -> 32x32x3 {layers['y']}, whole model {report['instructions_per_inference']:.0f}")
