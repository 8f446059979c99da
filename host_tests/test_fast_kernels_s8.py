"""The TFLite-exact int8 kernels on the shared MAC tiles (firmware/runtime/src/dqa_mac.h): CONV_2D gathers
each output pixel's window widened to int16 into a scratch column and multiplies it with weight tiles
(dqa_mcu.codegen.dqa.tile_conv_weights); DEPTHWISE_CONV_2D has its own kernel. Bit-exact (np.array_equal) with
reference.tflite and the LiteRT interpreter's reference kernels.

* The fixed-point primitives in C (dqa_s8_internal.h: SRDHM as the 64-bit sum's bits 31..62, RDBPOT, MBQM, the
  conv epilogue's one rounding) against reference.tflite on edge, random and near-tie values, under ASan + UBSan.
* A Keras stack converted to full int8 whose convolutions reach every case the kernels treat apart: an odd
  and a 3-channel input (odd K, rows of 3 bytes), output channels that are not a multiple of the 4-row tile
  (1, 5, 7, 13), stride 2, dilation, SAME and VALID padding, 1x1, a
  non-square kernel, groups, depthwise with a depth multiplier, with stride 2 and of 13 channels (a block
  of 4 channels on DSP, 8 on MVE, and a rest), layers wider than one epilogue call with left and right shifts
  mixed, and FULLY_CONNECTED of odd depth and of one input and output; on the host under ASan + UBSan and (slow) under QEMU on every core,
  there with the MLPerf Tiny ResNet-8 too.
"""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

import runtime_vectors as rv
from conftest import int8_inputs, shared_file, tflite_int8
from dqa_mcu import api
from dqa_mcu.codegen.tflite import FOLDED_SHIFTS, depthwise_block, folded_epilogue
from dqa_mcu.frontends.tflite_import import load_tflite
from dqa_mcu.reference import tflite as R
from test_tflite import _repack, tf  # noqa: F401  (tf is a fixture)
from test_tflite_ops import _with_random_biases

RESNET8 = "models/mlperf_tiny_ic_resnet8_int8.tflite"
QEMU_CORES = ["cortex-m3", "cortex-m4", "cortex-m7", "cortex-m33", "cortex-m55"]
INPUTS = 6  # random inputs, plus the extremes and the zero point (conftest.int8_inputs)

PRIMITIVES_DRIVER = r"""
#include <stdio.h>
#include "dqa_s8_internal.h"

int main(void)
{
    long long a, b, s, z;
    while (scanf("%lld %lld %lld %lld", &a, &b, &s, &z) == 4) {
        /* the conv epilogue's multiplier is >= 0 */
        const int8_t q = dqa__conv_output_s8((int32_t)a, 0, (int32_t)(b & INT32_MAX), (int32_t)s, (int32_t)z, -128, 127);
        const int32_t right = s <= -1 ? dqa__mbqm_right((int32_t)a, (int32_t)(b & INT32_MAX), (int32_t)-s) : 0;
        const int8_t folded = s <= DQA_FOLDED_MAX_SHIFT && s >= DQA_FOLDED_MIN_SHIFT ?
            (int8_t)dqa__folded_s8((int32_t)a, 0, (int32_t)(b & INT32_MAX),
                                   dqa__folded_base((int32_t)z, (int32_t)-s), (int32_t)-s) : 0;
        printf("%ld %ld %d %ld %d\n", (long)dqa__srdhm((int32_t)a, (int32_t)b),
               (long)dqa__mbqm((int32_t)a, (int32_t)b, (int32_t)s), q, (long)right, folded);
    }
    return 0;
}
"""


def test_fixed_point_primitives_in_c_equal_the_reference(tmp_path):
    if shutil.which("gcc") is None:
        pytest.fail("gcc not found: apt-get install gcc")
    exe = rv.build_header_driver(PRIMITIVES_DRIVER, tmp_path, "primitives")
    rng = np.random.default_rng(3)
    edges = [R.INT32_MIN, R.INT32_MIN + 1, -(1 << 30), -3, -1, 0, 1, 3, 1 << 30, R.INT32_MAX]
    a = np.concatenate([np.repeat(edges, len(edges)), rng.integers(R.INT32_MIN, R.INT32_MAX, 4000, endpoint=True),
                        rng.integers(-(1 << 20), 1 << 20, 4000)])
    b = np.concatenate([np.tile(edges, len(edges)), rng.integers(R.INT32_MIN, R.INT32_MAX, 4000, endpoint=True),
                        rng.integers(1 << 30, R.INT32_MAX, 4000, endpoint=True)])
    shift = rng.integers(-31, 8, a.size)
    shift[:len(edges) ** 2] = rng.integers(-31, 1, len(edges) ** 2)  # edges: RDBPOT at every right shift
    # x * M within 2 of a tie of the conv epilogue's rounding, with results inside int8: where one rounding of
    # the 64-bit product (dqa__mbqm_right) and SRDHM's then RDBPOT's could part
    tie_m = rng.integers(1 << 30, R.INT32_MAX, 4000, endpoint=True)
    tie_shift = rng.integers(-31, 0, 4000)
    ties = (2 * rng.integers(-100, 100, 4000) + 1) * (1 << (30 - tie_shift).astype(object)) // tie_m.astype(object)
    ties = ties.astype(np.int64) + rng.integers(-2, 3, 4000)
    keep = (ties >= R.INT32_MIN) & (ties <= R.INT32_MAX)
    a, b, shift = (np.concatenate([v, w[keep]]) for v, w in ((a, ties), (b, tie_m), (shift, tie_shift)))
    a, b, shift = (np.concatenate([v, w]) for v, w in zip((a, b, shift), _rounding_boundaries(rng)))
    offset = rng.integers(-128, 128, a.size)
    lines = "".join(f"{x} {y} {s} {z}\n" for x, y, s, z in zip(a, b, shift, offset))
    got = np.array([line.split() for line in subprocess.run([str(exe)], input=lines, capture_output=True,
                                                            text=True, check=True).stdout.splitlines()], np.int64)
    srdhm = [R.saturating_rounding_doubling_high_mul(int(x), int(y)) for x, y in zip(a, b)]
    assert np.array_equal(got[:, 0], srdhm)
    shifted = a.astype(object) * 2 ** np.maximum(shift, 0).astype(object)
    fits = (shifted >= R.INT32_MIN) & (shifted <= R.INT32_MAX)  # MBQM's x * 2^left is an int32
    mbqm = [int(R.multiply_by_quantized_multiplier(np.array([x]), int(y), int(s))[0])
            for x, y, s in zip(a[fits], b[fits], shift[fits])]
    assert fits.sum() > 4000 and np.array_equal(got[fits, 1], mbqm)
    right = fits & (shift <= -1)
    assert right.sum() > 4000 and np.array_equal(got[right, 3], [
        int(R.multiply_by_quantized_multiplier(np.array([x]), int(y) & R.INT32_MAX, int(s))[0])
        for x, y, s in zip(a[right], b[right], shift[right])])
    epilogue = [int(np.clip(R.multiply_by_quantized_multiplier(np.array([x]), int(y) & R.INT32_MAX, int(s))[0] + z,
                            -128, 127)) for x, y, s, z in zip(a[fits], b[fits], shift[fits], offset[fits])]
    assert np.array_equal(got[fits, 2], epilogue)
    folded = (shift >= FOLDED_SHIFTS[0]) & (shift <= FOLDED_SHIFTS[1])  # the offset in the nudge (dqa__folded_s8)
    header = (rv.RUNTIME / "include/dqa_runtime_s8.h").read_text()
    assert f"#define DQA_FOLDED_MIN_SHIFT ({FOLDED_SHIFTS[0]})" in header
    assert f"#define DQA_FOLDED_MAX_SHIFT ({FOLDED_SHIFTS[1]})" in header
    assert folded.sum() > 4000 and np.array_equal(got[folded, 4], got[folded, 2])


def _rounding_boundaries(rng, count: int = 3000):
    """(x, M, shift) whose product x * M lies at, or one below, a step of the one-rounding MBQM: x * M + nudge
    a multiple of 2^(31 + right), for either nudge (dqa__mbqm_right), right = 1..10. Random values hit those
    residues almost never; x solves x * M = residue modulo 2^(31 + right) for an odd M (kept where it fits
    int32)."""
    xs, ms, shifts = [], [], []
    while len(xs) < count:
        right = int(rng.integers(1, 11))
        modulus = 1 << (31 + right)
        m = int(rng.integers(1 << 29, 1 << 30)) * 2 + 1  # odd, in [2^30, 2^31)
        nudge = (1 << 30) + (1 << (30 + right)) - int(rng.integers(0, 2)) * (1 << 31)
        x = (-nudge - int(rng.integers(0, 2))) * pow(m, -1, modulus) % modulus
        x = x - modulus if x >= modulus // 2 else x
        if R.INT32_MIN <= x <= R.INT32_MAX:
            xs.append(x), ms.append(m), shifts.append(-right)
    return np.array(xs, np.int64), np.array(ms, np.int64), np.array(shifts, np.int64)


def conv_stack(tf, rng):
    """Every case of the conv kernels (11x9x5 in, 7 classes out), an RGB stem, the smallest FC layers, and
    layers wider than one epilogue call (DQA_REQUANTIZE_CHANNELS, 32), whose shifts _left_shifts mixes."""
    keras, L = tf.keras, tf.keras.layers
    inp = keras.Input(batch_shape=(1, 11, 9, 5))  # a fixed batch: Flatten is a constant RESHAPE
    x = L.Conv2D(7, 3, padding="same", activation="relu")(inp)                 # odd K (45), 7 = 4 + 3 rows
    x = L.Conv2D(8, (3, 2), activation="relu")(x)                              # VALID
    x = L.Conv2D(13, 3, strides=2, padding="same")(x)                          # stride 2, 13 = 3 tiles + 1
    x = L.DepthwiseConv2D(3, padding="same")(x)                                # 13 = 3 quads of channels + 1
    x = L.Conv2D(5, 1)(x)                                                      # 1x1, 5 rows
    x = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(x)            # depth multiplier
    x = L.Conv2D(12, 3, padding="same", groups=2, activation="relu")(x)        # groups of 5 in, 6 out
    x = L.DepthwiseConv2D(3, strides=2, padding="same")(x)                     # depthwise stride 2
    x = L.Conv2D(1, (1, 3), padding="same")(x)                                 # one output channel
    y = L.Dense(7)(L.Dense(9, activation="relu")(L.Flatten()(x)))              # FC of odd depths
    rgb = keras.Input(batch_shape=(1, 8, 10, 3))                                            # an RGB stem: rows of 9 bytes
    stem = keras.Model(rgb, L.Conv2D(6, 3, strides=2, padding="same")(rgb))
    scalar = keras.Input(batch_shape=(1, 1))                                   # FC 1 -> 1 (one tile), 1 -> 3
    tiny = keras.Model(scalar, L.Dense(3)(L.Dense(1, activation="relu")(scalar)))
    wide = keras.Input(batch_shape=(1, 4, 5, 3))                               # more channels than one epilogue call
    w = L.Conv2D(37, 3, padding="same", activation="relu")(wide)               # 32 + 5: a call of 9 tiles' 5 rows
    w = L.DepthwiseConv2D(3, padding="same")(w)                                # 37: 32 + a quad + 1; 5 wide: a lone pixel
    w = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(w)            # 74 = 2 x 32 + 10
    w = L.Conv2D(70, 1, groups=2)(w)                                           # groups of 35 = 32 + 3 outputs
    return [_with_random_biases(m, rng) for m in (keras.Model(inp, y), stem, tiny, keras.Model(wide, w))]


def _left_shifts(model, s) -> None:
    """Some channels of each convolution rescaled by a left shift (a right shift for the rest), as the
    conv epilogue's rare form: every output scale set to 2 s_in s_w of its median channel, whose rescale is 1/2."""
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    tensors = model.subgraphs[0].tensors
    for op in model.subgraphs[0].operators:
        if codes[op.opcodeIndex] in (s.BuiltinOperator.CONV_2D, s.BuiltinOperator.DEPTHWISE_CONV_2D):
            x, w, y = (tensors[i].quantization for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
            y.scale = np.array([2 * x.scale[0] * np.median(w.scale)], np.float32)


DILATIONS = [(2, 2), (1, 2), (3, 1)]
RELU_FLOOR = -100  # an output zero point, the act_min of its ReLU: the folded epilogue's clamp below -128


def _dilate(model, s) -> None:
    """Dilation in the file (the converter writes a dilated Keras conv as SPACE_TO_BATCH_ND, unsupported):
    every stride-1 SAME convolution in turn gets one of DILATIONS (SAME keeps the output's shape)."""
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    convs = (s.BuiltinOperator.CONV_2D, s.BuiltinOperator.DEPTHWISE_CONV_2D)
    dilated = 0
    for op in model.subgraphs[0].operators:
        o = op.builtinOptions
        if codes[op.opcodeIndex] in convs and o.padding == s.Padding.SAME and (o.strideH, o.strideW) == (1, 1):
            o.dilationHFactor, o.dilationWFactor = DILATIONS[dilated % len(DILATIONS)]
            dilated += 1


def _dilate_and_raise_relu_floors(model, s) -> None:
    """_dilate, and every CONV_2D with a fused ReLU given the output zero point RELU_FLOOR (the converter
    writes -128 for a ReLU's outputs, which the int8 saturation alone clamps)."""
    _dilate(model, s)
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    tensors = model.subgraphs[0].tensors
    for op in model.subgraphs[0].operators:
        if (codes[op.opcodeIndex] == s.BuiltinOperator.CONV_2D and
                op.builtinOptions.fusedActivationFunction == s.ActivationFunctionType.RELU):
            tensors[op.outputs[0]].quantization.zeroPoint = np.array([RELU_FLOOR], np.int64)


@pytest.fixture(scope="module")
def conv_models(tf, tmp_path_factory):  # noqa: F811
    rng = np.random.default_rng(21)
    work = tmp_path_factory.mktemp("conv_s8")
    paths = []
    models = conv_stack(tf, rng)
    for i, model in enumerate(models):
        path = work / f"convs{i}.tflite"
        shape = model.input_shape[1:]
        path.write_bytes(_repack(tflite_int8(tf, model, rng.normal(0, 1, (32,) + shape).astype(np.float32)),
                                 [_dilate_and_raise_relu_floors, _dilate, _dilate, _left_shifts][i]))
        paths.append(path)
    return paths


def test_the_stack_reaches_every_kernel_case(conv_models):
    g = load_tflite(conv_models[0])
    convs = [op for op in g.ops if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    shapes = [(op.op, g.tensors[op.inputs[1]].shape, op.options["stride"], op.options["dilation"]) for op in convs]
    assert any(s[0] == "CONV_2D" and s[1][3] * 2 == g.tensors[op.inputs[0]].shape[3]
               for s, op in zip(shapes, convs)), "a grouped CONV_2D"
    assert any(s[0] == "DEPTHWISE_CONV_2D" and s[1][3] == 2 * g.tensors[op.inputs[0]].shape[3]
               for s, op in zip(shapes, convs)), "a depth multiplier"
    blocks = (depthwise_block(row_tiles=False), depthwise_block(row_tiles=True))  # DSP, MVE
    assert any(s[0] == "DEPTHWISE_CONV_2D" and s[1][3] == g.tensors[op.inputs[0]].shape[3] and
               all(s[1][3] % b and s[1][3] > b for b in blocks) for s, op in zip(shapes, convs)), \
        "depthwise blocks of channels and a rest, on DSP and MVE cores"
    assert {s[1][0] % 4 for s in shapes if s[0] == "CONV_2D"} >= {0, 1, 3}
    assert any(s[2] == (2, 2) for s in shapes) and {s[3] for s in shapes} >= {(1, 1), *DILATIONS}
    assert sum(op.op == "FULLY_CONNECTED" for op in g.ops) == 2
    params = R.TFLiteReference(g).params
    folded = [params[op.index].values for op in convs if folded_epilogue(params[op.index].values)]
    assert any(v["act_min"] == RELU_FLOOR and len(v["shift"]) % 4 for v in folded), \
        "a folded epilogue clamping at act_min, its channels four at a time and a rest"
    wide = R.TFLiteReference(load_tflite(conv_models[3])).params
    shifts = [wide[i].values["shift"] for i in sorted(wide) if "shift" in wide[i].values]
    assert len(shifts) == 4 and all((sh < 0).any() and (sh >= 0).any() for sh in shifts), "mixed shifts"


def _check(path, out, target, sanitize=False):
    g = load_tflite(path)
    x = int8_inputs(g, INPUTS, seed=5)
    assert np.array_equal(R.TFLiteReference(g).run(x).reshape(len(x), -1),
                          R.run_litert_interpreter(path, x, batch_size=1).reshape(len(x), -1))
    api.export_s8_project(g, out, target, str(path), x, None, None, log=lambda *a: None)
    report = api.run_project(out, x, None, target, 600, sanitize=sanitize, log=lambda *a: None)
    assert report["bit_exact"], f"{target}: differs from reference.tflite on images {report['mismatched_images']}"


@pytest.mark.parametrize("model", [0, 1, 2, 3])
def test_conv_kernels_bit_exact_on_the_host_with_sanitizers(conv_models, tmp_path, model):
    _check(conv_models[model], tmp_path / "host", "host", sanitize=True)


@pytest.mark.parametrize("core", QEMU_CORES)
def test_conv_kernels_bit_exact_under_qemu(conv_models, tmp_path, core):
    """The stack, and ResNet-8 (12.5 M MACs on random inputs: many requantization ties, which the small
    stack may miss, e.g. RDBPOT rounding them up instead of away from zero)."""
    if shutil.which("arm-none-eabi-gcc") is None:
        pytest.fail("arm-none-eabi-gcc not found: ./install.sh installs it")
    for i, path in enumerate([*conv_models, shared_file(RESNET8)]):
        _check(path, tmp_path / f"{core}-{i}", core)


def test_the_model_init_refuses_a_plan_short_of_a_kernels_scratch(tmp_path, monkeypatch):
    """The plan sizes each kernel's scratch offline (codegen.tflite.scratch_bytes); dqa_model_init() checks it
    against the kernels' *_get_buffer_size(), so a plan 4 bytes short stops the firmware before any run."""
    from dqa_mcu.codegen import tflite as codegen_s8
    from dqa_mcu.device import build as fw
    from dqa_mcu.targets import get_target
    planned = codegen_s8.scratch_bytes
    monkeypatch.setattr(codegen_s8, "scratch_bytes", lambda g, op: max(0, planned(g, op) - 4))
    out = tmp_path / "short"
    api.export(shared_file("models/mlperf_tiny_kws_dscnn_int8.tflite"), out, "host", log=lambda *a: None)
    with pytest.raises(fw.BuildError, match="needs more scratch memory than the plan gives it"):
        fw.run(fw.build(out, get_target("host")), get_target("host"))
