"""conv2d's inner kernels (firmware/runtime/src/dqa_mac.h: tiles of 4 output channels over kernel-row runs of the
line buffer; VMLADAVA on Cortex-M55, SXTB16 + SMLAD on the other DSP cores, portable C on the host and Cortex-M3)
and the offline weight tiling
(dqa_mcu.codegen.dqa.tile_conv_weights), bit-exact with the reference.

Random stacks of convolutions (runtime_vectors.ModelBuilder: random int8 weights, multipliers calibrated on the
actual values, DQA tensors with Huffman-coded errors) cover odd channel counts, output channels that are not a
multiple of the tile, 1x1 to 5x5 kernels, stride 2, dilation (with more taps than one pass gathers), groups,
depthwise with and without a channel multiplier, fused residuals and linear layers. On the host they run in the
runtime driver under ASan + UBSan (every tensor's values, code plane and error stream compared); under QEMU
(slow) one exported project per core runs them as a whole and every output is compared with the reference.
"""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

import runtime_vectors as rv
from dqa_mcu import api
from dqa_mcu.codegen import dqa as codegen

KERNELS = [(1, 1), (3, 3), (5, 3), (1, 5), (3, 1), (5, 5)]
MAX_OUT_CHANNELS = 13  # 1..13 output channels: every remainder of the 4-channel tile, more than 3 tiles
QEMU_CORES = ["cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55"]
QEMU_IMAGES = 2
QEMU_SEEDS = [100, 101, 102]  # 8-layer stacks, about 6 s each to build and run


def _groups(rng, c_in: int, c_out: int) -> int:
    common = [g for g in range(2, c_in + 1) if c_in % g == 0 and c_out % g == 0]
    return int(rng.choice(common)) if common and rng.random() < 0.4 else 1


def random_conv(b: rv.ModelBuilder, rng, name: str, x: str) -> str:
    h, w, c_in = b.model.tensors[x].shape
    kh, kw = KERNELS[rng.integers(len(KERNELS))]
    dilation = tuple(int(d) for d in rng.integers(1, 4, size=2)) if rng.random() < 0.3 else (1, 1)
    stride = tuple(int(s) if size > 4 else 1 for s, size in zip(rng.integers(1, 3, size=2), (h, w)))
    kind = rng.random()
    residual = None
    if kind < 0.15:  # depthwise, sometimes with a channel multiplier
        c_out, groups = c_in * int(rng.choice([1, 1, 2])), c_in
    elif kind < 0.35 and stride == (1, 1):  # a residual block's second conv: the input added back
        c_out, groups, residual = c_in, _groups(rng, c_in, c_in), x
    else:
        c_out = int(rng.integers(1, MAX_OUT_CHANNELS + 1))
        groups = _groups(rng, c_in, c_out)
    m = int(rng.choice([0, 3]))
    return b.conv(name, x, c_out, k=(kh, kw), stride=stride, dilation=dilation, groups=groups, m=m,
                  bits=int(rng.integers(3, 9)), act=str(rng.choice(["relu", "none"])), residual=residual)


def random_stack(seed: int, layers: int = 4, pixels: np.ndarray | None = None, output: bool = False):
    """input (random shape, 1 to 5 channels) -> `layers` random convolutions -> global pool -> a linear layer
    (`output`: a 16-bit graph output)."""
    rng = np.random.default_rng(seed)
    shape = (int(rng.integers(5, 12)), int(rng.integers(5, 12)), int(rng.integers(1, 6)))
    b = rv.ModelBuilder(rng, shape, None if pixels is None else pixels(rng, shape))
    x = "x"
    for i in range(layers):
        x = random_conv(b, rng, f"c{i}", x)
    if output:  # the graph output: 16 bits, one scale (a 1x1 conv: the builder's linear takes one image)
        y = b.conv("out", b.avgpool("gp", x, m=0), int(rng.integers(1, MAX_OUT_CHANNELS + 1)), k=(1, 1),
                   bits=16, m=0, act="none")
        b.flatten("out_flat", y)
    else:
        b.linear("fc", b.avgpool("gp", x, m=3), int(rng.integers(1, MAX_OUT_CHANNELS + 1)), m=3, act="relu")
    return b


REQUANT_DRIVER = r"""
#include <stdio.h>
#include "dqa_internal.h"

int main(void)
{
    long long x, lo, hi;
    unsigned shift;
    while (scanf("%lld %u %lld %lld", &x, &shift, &lo, &hi) == 4) {
        printf("%ld\n", (long)dqa__requant((int64_t)x, (uint8_t)shift, (int32_t)lo, (int32_t)hi));
    }
    return 0;
}
"""


def test_requantization_in_c_equals_the_reference(tmp_path):
    """dqa__requant (spec 3 + 4, every kernel's epilogue) against the reference's rshift_round and clamp at every
    shift 0..62: sums of every magnitude up to 2^62 (x >> (T - 1) beyond int32 at shifts 2..32, where the C
    returns lo or hi by the sign), within 2 of a rounding tie, and random storage ranges of 3 to 16 bits."""
    if shutil.which("gcc") is None:
        pytest.fail("gcc not found: apt-get install gcc")
    exe = rv.build_header_driver(REQUANT_DRIVER, tmp_path, "requant")
    rng = np.random.default_rng(5)
    count = 30000
    shift = rng.integers(0, 63, count)
    magnitude = rng.integers(0, 63, count)
    x = [int(rng.integers(-(1 << int(k)), 1 << int(k), endpoint=True)) for k in magnitude]
    bits = rng.integers(3, 17, count)
    signed = rng.integers(0, 2, count).astype(bool)
    lo = np.where(signed, -(1 << (bits - 1)), 0) + rng.integers(0, 3, count)  # narrowed as an activation does
    hi = np.where(signed, (1 << (bits - 1)) - 1, (1 << bits) - 1) - rng.integers(0, 3, count)
    for i in range(0, count, 3):  # near a tie of the rounding, with a result around the range's ends
        t = int(shift[i])
        target = int(rng.choice([lo[i], hi[i], 0])) + int(rng.integers(-2, 3))
        tie = (target << t) + ((1 << t) >> 1) + int(rng.integers(-2, 3)) if t else target
        x[i] = tie if abs(tie) < 1 << 62 else x[i]
    lines = "".join(f"{a} {t} {m} {n}\n" for a, t, m, n in zip(x, shift, lo, hi))
    got = [int(v) for v in subprocess.run([str(exe)], input=lines, capture_output=True, text=True,
                                          check=True).stdout.split()]
    expected = [min(max((a + (1 << int(t) >> 1)) >> int(t), int(m)), int(n)) for a, t, m, n in zip(x, shift, lo, hi)]
    beyond_int32 = [2 <= t <= 32 and abs(a >> (int(t) - 1)) >= 1 << 31 for a, t in zip(x, shift)]
    assert sum(beyond_int32) > 1000
    assert np.array_equal(got, expected)


@pytest.mark.parametrize("rows_contiguous", [False, True])
def test_weight_tiles_follow_the_documented_layout(rows_contiguous):
    """Byte (r, k) of a tile sits at (k // 2) * 8 + (r // 2) * 4 + (k % 2) * 2 + r % 2, or for MVE at
    r * (tile bytes / 4) + k (dqa_runtime.h)."""
    rng = np.random.default_rng(7)
    for c_out, kh, kw, c_in_g, groups in [(5, 3, 3, 3, 1), (4, 1, 1, 7, 1), (6, 3, 1, 2, 3), (1, 1, 5, 1, 1),
                                          (8, 3, 3, 1, 4), (6, 3, 3, 1, 6)]:
        w = rng.integers(-127, 128, size=(c_out, kh, kw, c_in_g)).astype(np.int8)
        tiled = codegen.tile_conv_weights(w, groups, rows_contiguous)
        if codegen.is_depthwise(w, groups):
            assert np.array_equal(tiled, w.ravel())
            continue
        c_out_g, k = c_out // groups, kh * kw * c_in_g
        tiles, tile_bytes = -(-c_out_g // codegen.MAC_ROWS), -(-k // 2) * 8
        assert tiled.size == groups * tiles * tile_bytes
        rows = w.reshape(c_out, k)
        for o in range(c_out):
            g, j = divmod(o, c_out_g)
            t, r = divmod(j, codegen.MAC_ROWS)
            base = (g * tiles + t) * tile_bytes
            for kk in range(k):
                offset = r * tile_bytes // 4 + kk if rows_contiguous else kk // 2 * 8 + r // 2 * 4 + kk % 2 * 2 + r % 2
                assert tiled[base + offset] == rows[o, kk]
        padding = tiled.size - rows.size  # the missing rows and the pad of an odd K are zeros
        assert np.count_nonzero(tiled) <= rows.size and padding >= 0


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("fast_kernels")


@pytest.fixture(scope="module")
def driver(work):
    if shutil.which("gcc") is None:
        pytest.fail("gcc not found: apt-get install gcc")
    return rv.build_driver(work)


@pytest.mark.parametrize("seed", range(12))
def test_random_convs_bit_exact_on_the_host(driver, work, seed):
    b = random_stack(seed)
    convs = [n for n in b.model.nodes if n.op == "conv2d"]
    assert convs
    rv.check_model(driver, b.model, b.pixels, work, f"fast{seed}")


# Shapes the random stacks may miss, each right after a 4-bit DQA producer of `c_in` channels:
# (c_in, c_out, kernel, stride, dilation, groups)
FIXED_CASES = {
    "taps beyond one pass (5x5, dilation 2)": (5, 6, (5, 5), (1, 1), (2, 2), 1),
    "grouped taps beyond one pass": (6, 9, (5, 5), (1, 1), (1, 1), 3),
    "odd K, odd run starts (3 channels)": (3, 7, (3, 3), (1, 1), (1, 1), 1),
    "1x1 stride 2, 13 outputs": (17, 13, (1, 1), (2, 2), (1, 1), 1),
    "depthwise multiplier 2, stride 2": (4, 8, (3, 3), (2, 2), (1, 1), 4),
    "depthwise dilation 3": (5, 5, (3, 3), (1, 1), (3, 3), 5),
    "a row longer than the ring's end (1x5 on width 7)": (2, 3, (1, 5), (1, 1), (1, 1), 1),
}


@pytest.mark.parametrize("case", sorted(FIXED_CASES))
def test_fixed_shapes_bit_exact_on_the_host(driver, work, case):
    c_in, c_out, k, stride, dilation, groups = FIXED_CASES[case]
    rng = np.random.default_rng(sorted(FIXED_CASES).index(case))
    b = rv.ModelBuilder(rng, (9, 7, 3))
    x = b.conv("p0", "x", c_in, k=(3, 3), m=3, act="relu", bits=4)
    b.conv("y", x, c_out, k=k, stride=stride, dilation=dilation, groups=groups, m=3, act="none", bits=5)
    rv.check_model(driver, b.model, b.pixels, work, f"fixed{sorted(FIXED_CASES).index(case)}")


# Output pixels go in pairs, both windows gathered into columns (dqa_conv2d.c), a row's lone last pixel
# alone: (input shape, c_out, kernel, stride, groups, with a residual)
PAIR_CASES = {
    "one pixel wide: every pixel a lone one": ((6, 1, 3), 5, (3, 3), (1, 1), 1, False),
    "two wide 1x1: pairs only": ((5, 2, 4), 6, (1, 1), (1, 1), 1, False),
    "odd width with a residual read per pixel": ((5, 5, 6), 6, (3, 3), (1, 1), 1, True),
    "stride 2 on a 3-wide input, pairs across the padding": ((7, 3, 5), 7, (3, 3), (2, 2), 1, False),
    "groups with partial tiles, odd width": ((6, 5, 6), 9, (3, 3), (1, 1), 3, False),
    "odd K (3 channels, 1x3), pairs and a lone pixel": ((4, 5, 3), 5, (1, 3), (1, 1), 1, False),
}


@pytest.mark.parametrize("case", sorted(PAIR_CASES))
def test_pixel_pairs_bit_exact_on_the_host(driver, work, case):
    shape, c_out, k, stride, groups, residual = PAIR_CASES[case]
    rng = np.random.default_rng(100 + sorted(PAIR_CASES).index(case))
    b = rv.ModelBuilder(rng, shape)
    x = b.conv("p0", "x", shape[2], k=(1, 1), m=3, act="relu", bits=4)
    b.conv("y", x, c_out, k=k, stride=stride, groups=groups, m=3, act="none", bits=5,
           residual=x if residual else None)
    rv.check_model(driver, b.model, b.pixels, work, f"pairs{sorted(PAIR_CASES).index(case)}")


def test_random_stacks_cover_the_special_cases():
    """The random stacks above reach every case the kernels treat apart."""
    seen = set()
    for seed in range(12):
        model = random_stack(seed).model
        for n in model.nodes:
            if n.op != "conv2d":
                continue
            w, g = n.arrays["weight"], n.attrs["groups"]
            c_in = model.tensors[n.inputs[0]].channels
            seen.add("odd input channels" if c_in % 2 else "even input channels")
            seen.add("partial tile" if (w.shape[0] // g) % codegen.MAC_ROWS else "whole tiles")
            seen.add("depthwise" if codegen.is_depthwise(w, g) else ("groups" if g > 1 else "dense"))
            seen |= {"stride 2"} if 2 in n.attrs["stride"] else set()
            seen |= {"dilation"} if max(n.attrs["dilation"]) > 1 else set()
            seen |= {"residual"} if len(n.inputs) == 2 else set()
    assert seen >= {"odd input channels", "even input channels", "partial tile", "whole tiles", "depthwise",
                    "groups", "dense", "stride 2", "dilation", "residual"}, seen


def _images(rng, shape):
    return rng.integers(0, 256, size=(QEMU_IMAGES, *shape), dtype=np.uint8)


@pytest.mark.slow
@pytest.mark.parametrize("seed", QEMU_SEEDS)
@pytest.mark.parametrize("target", QEMU_CORES)
def test_random_convs_bit_exact_under_qemu(target, seed, tmp_path):
    """One project per core and stack: the portable C (M3), SMLAD (M4, M7, M33) and MVE (M55) kernels."""
    b = random_stack(seed, layers=8, pixels=_images, output=True)
    api.export_project(b.model, tmp_path / "fast", target, "fast kernel test", b.pixels, None, None,
                       log=lambda *a: None)
    report = api.run_project(tmp_path / "fast", b.pixels, None, None, timeout=600, log=lambda *a: None)
    assert report["bit_exact"], report["mismatched_images"]
