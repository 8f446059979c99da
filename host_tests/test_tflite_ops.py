"""The int8 operators of the U-Net / super-resolution / MobileNetV3 kinds in the TFLite-exact mode.

SUB, MUL, LEAKY_RELU, RESIZE_NEAREST_NEIGHBOR, DEPTH_TO_SPACE, TRANSPOSE_CONV,
RESIZE_BILINEAR, LOGISTIC, HARD_SWISH, TANH, RELU and RELU6, in Keras models
built here (random weights and biases) and converted to full int8. Checked
with np.array_equal:
* reference.tflite against the LiteRT interpreter's reference kernels
  (BUILTIN_REF), every tensor of every op, on a few hundred random inputs;
* each element-wise activation exhaustively (all 256 int8 inputs) under many
  random input and output quantizations written into the file;
* both resizes in every mode (align_corners, half_pixel_centers, neither;
  non-integer and downscaling sizes);
* ADD, SUB and MUL broadcasting every way (a [1, 1, 1, C] or [1, H, W, 1]
  operand, either side, a constant), TRANSPOSE_CONV with a VALID overlap and
  with kernel < stride (outputs no input reaches);
* the generated C on the host with AddressSanitizer and UBSan (the decoder,
  the network of variants, HARD_SWISH on every input),
  and (slow) the decoder under QEMU cortex-m7, against the reference and the
  interpreter.

LiteRT 2.3.0 registers DEPTH_TO_SPACE version 1 only (TILE up to 2), while
TensorFlow 2.21 writes version 2 (TILE 3) for int8 (the same byte movement):
the interpreter runs a copy of the model with the registered version.
"""
import shutil
from pathlib import Path

import numpy as np
import pytest

from dqa_mcu import api
from dqa_mcu.device import build as fw
from dqa_mcu.frontends.tflite_import import load_tflite
from dqa_mcu.reference import tflite as R
from dqa_mcu.targets import get_target
from conftest import int8_inputs, tflite_int8
from test_tflite import _repack, tf  # noqa: F401  (tf is a fixture)

NEW_OPS = {"SUB", "MUL", "LEAKY_RELU", "RESIZE_NEAREST_NEIGHBOR", "DEPTH_TO_SPACE", "TRANSPOSE_CONV",
           "RESIZE_BILINEAR", "LOGISTIC", "HARD_SWISH", "TANH", "RELU", "RELU6"}


def _with_random_biases(model, rng):
    for layer in model.layers:
        weights = layer.get_weights()
        if len(weights) == 2 and weights[1].ndim == 1:  # zero biases would be dropped by the converter
            layer.set_weights([weights[0], rng.normal(0, 0.2, weights[1].shape)])
    return model


def _decoder(tf, rng):
    """Every new op in one small U-Net / SR-style network (8x8x3 in, 16x16x4 out)."""
    keras, L = tf.keras, tf.keras.layers
    inp = keras.Input(batch_shape=(1, 8, 8, 3))  # a fixed batch: TRANSPOSE_CONV's output shape is a constant
    skip = L.LeakyReLU(0.2)(L.Conv2D(8, 3, padding="same")(inp))                       # LEAKY_RELU
    x = L.Activation("hard_swish")(L.Conv2D(16, 3, padding="same")(L.MaxPooling2D()(skip)))  # HARD_SWISH
    gate = L.Conv2D(16, 1, activation="sigmoid")(L.GlobalAveragePooling2D(keepdims=True)(x))  # LOGISTIC
    x = L.Multiply()([x, gate])                                                          # MUL, squeeze-excite
    x = L.Conv2DTranspose(8, 2, strides=2, activation="relu")(x)                         # TRANSPOSE_CONV + RELU
    x = L.Activation("tanh")(L.Subtract()([x, skip]))                                    # SUB, TANH
    shuffled = L.Lambda(lambda t: tf.nn.depth_to_space(t, 2))(L.Conv2D(12, 1)(x))        # DEPTH_TO_SPACE
    overlapping = L.Conv2DTranspose(3, 3, strides=2, padding="same")(x)                  # general TRANSPOSE_CONV
    smooth = L.ReLU(6.0)(L.UpSampling2D(2, interpolation="bilinear")(skip))              # RESIZE_BILINEAR, RELU6
    nearest = L.ReLU()(L.Lambda(lambda t: tf.image.resize(t, (16, 16), method="nearest"))(x))  # RESIZE_NEAREST.., RELU
    # summed, not concatenated: branches with different scales would make the converter add a QUANTIZE
    heads = [L.Conv2D(4, 1)(branch) for branch in (shuffled, overlapping, smooth, nearest)]
    out = L.Add()([L.Add()(heads[:2]), L.Add()(heads[2:])])
    return _with_random_biases(keras.Model(inp, out), rng)


def _variants(tf):
    """Both resizes with align_corners, half_pixel_centers or neither, to a non-integer scale and down; then
    element-wise ops broadcasting every way a network does: a per-channel mean subtracted from its map, a
    spatial gate ([1, H, W, 1]), the mean added back as the first operand, a constant operand; then two
    more kinds of TRANSPOSE_CONV."""
    keras, L, v1 = tf.keras, tf.keras.layers, tf.compat.v1.image
    inp = keras.Input(batch_shape=(1, 7, 5, 4))
    x = L.Conv2D(4, 1)(inp)
    size = (13, 9)
    resizes = [lambda t: v1.resize_bilinear(t, size, align_corners=True), lambda t: v1.resize_bilinear(t, size),
               lambda t: tf.image.resize(t, size), lambda t: v1.resize_nearest_neighbor(t, size, align_corners=True),
               lambda t: v1.resize_nearest_neighbor(t, size), lambda t: tf.image.resize(t, size, method="nearest"),
               lambda t: tf.image.resize(tf.image.resize(t, (3, 2)), size, method="nearest")]
    branches = [L.Lambda(resize)(x) for resize in resizes]
    x = branches[0]
    for branch in branches[1:]:
        x = L.Add()([x, branch])
    mean = L.GlobalAveragePooling2D(keepdims=True)(x)
    centred = L.Subtract()([x, mean])                                            # [1, 13, 9, 4] - [1, 1, 1, 4]
    gated = L.Multiply()([centred, L.Conv2D(1, 1, activation="sigmoid")(x)])   # [1, 13, 9, 4] * [1, 13, 9, 1]
    x = L.Add()([mean, gated])                                                   # [1, 1, 1, 4] + [1, 13, 9, 4]
    x = L.Lambda(lambda t: t * tf.constant([0.5, -1.0, 2.0, 0.25]))(x)
    # transposed convolutions with overlapping taps (13x9 -> 27x19) and with gaps no input reaches
    # (kernel < stride: 27x19 -> 81x57, every third row and column is the bias alone)
    x = L.Conv2DTranspose(3, 3, strides=2, padding="valid")(x)
    return keras.Model(inp, L.Conv2DTranspose(2, 2, strides=3, padding="valid")(x))


def _activation(tf, op: str):
    """One element-wise activation on a 256-value vector input."""
    keras, L = tf.keras, tf.keras.layers
    inp = keras.Input(batch_shape=(1, 256))
    layer = {"RELU": L.ReLU(), "RELU6": L.ReLU(6.0), "LEAKY_RELU": L.LeakyReLU(0.3),
             "LOGISTIC": L.Activation("sigmoid"), "TANH": L.Activation("tanh"),
             "HARD_SWISH": L.Activation("hard_swish")}[op]
    return keras.Model(inp, layer(inp))


@pytest.fixture(scope="module")
def models(tf, tmp_path_factory):
    out = tmp_path_factory.mktemp("tflite_ops")
    rng = np.random.default_rng(31)
    paths = {"decoder": out / "decoder.tflite"}
    paths["decoder"].write_bytes(tflite_int8(tf, _decoder(tf, rng), rng.uniform(-1, 1, (48, 8, 8, 3))
                                             .astype(np.float32)))
    paths["variants"] = out / "variants.tflite"
    paths["variants"].write_bytes(tflite_int8(tf, _variants(tf), rng.uniform(-1, 1, (32, 7, 5, 4)).astype(np.float32)))
    for op in ("RELU", "RELU6", "LEAKY_RELU", "LOGISTIC", "TANH", "HARD_SWISH"):
        paths[op] = out / f"{op.lower()}.tflite"
        paths[op].write_bytes(tflite_int8(tf, _activation(tf, op), rng.uniform(-6, 6, (32, 256))
                                          .astype(np.float32)))
    return paths


# the newest version LiteRT 2.3.0 registers of ops TensorFlow 2.21 writes newer for int8 (the same bytes)
_LITERT_VERSIONS = {"DEPTH_TO_SPACE": 1, "TILE": 2}


def _runnable_by_litert(path: Path) -> Path:
    """The model itself, or a copy whose ops say the versions LiteRT 2.3.0 registers (``_LITERT_VERSIONS``)."""
    from ai_edge_litert import schema_py_generated as s
    model = s.ModelT.InitFromPackedBuf(path.read_bytes(), 0)
    versions = {getattr(s.BuiltinOperator, op): v for op, v in _LITERT_VERSIONS.items()}

    def too_new(oc) -> bool:
        return oc.version > versions.get(max(oc.builtinCode, oc.deprecatedBuiltinCode), oc.version)

    if not any(too_new(oc) for oc in model.operatorCodes):
        return path

    def registered_versions(model, s):
        for oc in model.operatorCodes:
            if too_new(oc):
                oc.version = versions[max(oc.builtinCode, oc.deprecatedBuiltinCode)]

    copy = path.with_name(path.stem + "_litert.tflite")
    copy.write_bytes(_repack(path.read_bytes(), registered_versions))
    return copy


def litert_tensors(path: Path, x: np.ndarray, indices) -> dict[int, np.ndarray]:
    """The listed tensors of the interpreter (BUILTIN_REF), one input at a time (the batch is fixed at 1)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType
    it = Interpreter(model_path=str(_runnable_by_litert(path)),
                     experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                     experimental_preserve_all_tensors=True)
    it.allocate_tensors()
    inp = it.get_input_details()[0]["index"]
    found: dict[int, list] = {i: [] for i in indices}
    for sample in x:
        it.set_tensor(inp, sample[None])
        it.invoke()
        for i in indices:
            found[i].append(it.get_tensor(i).copy())
    return {i: np.concatenate(v) for i, v in found.items()}


def assert_every_tensor_equal(path: Path, x: np.ndarray) -> np.ndarray:
    """reference.tflite equals the interpreter on every tensor any op writes; returns the output."""
    ref = R.TFLiteReference(path)
    ours: dict[int, list] = {}
    out = ref.run(x, collect=lambda i, a: ours.setdefault(i, []).append(a))
    theirs = litert_tensors(path, x, [op.outputs[0] for op in ref.graph.ops])
    for op in ref.graph.ops:
        mine = np.concatenate(ours[op.outputs[0]])
        other = theirs[op.outputs[0]].reshape(mine.shape)
        bad = int((mine != other).sum())
        assert bad == 0, f"{path.name}: op {op.index} {op.op}: {bad} of {mine.size} values differ"
    return out


def test_decoder_every_tensor_equals_litert(models):
    g = load_tflite(models["decoder"])
    ops = [op.op for op in g.ops]
    assert NEW_OPS <= set(ops), f"not converted to: {NEW_OPS - set(ops)}"
    tconv = [op for op in g.ops if op.op == "TRANSPOSE_CONV"]
    assert {op.options["padding"] for op in tconv} == {"VALID", "SAME"} and all(len(op.inputs) == 4 for op in tconv)
    out = assert_every_tensor_equal(models["decoder"], int8_inputs(g, 300, 32))
    assert len(np.unique(out)) > 100  # a real spread, not saturated


def test_variants_every_tensor_equals_litert(models):
    g = load_tflite(models["variants"])
    resizes = {(op.op, op.options["align_corners"], op.options["half_pixel_centers"]) for op in g.ops
               if op.op.startswith("RESIZE")}
    assert len(resizes) == 6
    assert [tuple(g.tensors[op.outputs[0]].shape) for op in g.ops if op.op == "TRANSPOSE_CONV"] == \
        [(1, 27, 19, 3), (1, 81, 57, 2)]
    broadcasts = {(op.op,) + tuple(tuple(g.tensors[i].shape) for i in op.inputs) for op in g.ops
                  if op.op in ("SUB", "MUL") or op.op == "ADD" and g.tensors[op.inputs[0]].shape[1] == 1}
    assert broadcasts == {("SUB", (1, 13, 9, 4), (1, 1, 1, 4)), ("MUL", (1, 13, 9, 4), (1, 13, 9, 1)),
                          ("ADD", (1, 1, 1, 4), (1, 13, 9, 4)), ("MUL", (1, 13, 9, 4), (4,))}
    assert_every_tensor_equal(models["variants"], int8_inputs(g, 200, 36))


def test_logistic_output_quantization_refused_in_one_line(models, tmp_path):
    path = _requantized(models["LOGISTIC"], tmp_path / "logistic.tflite", np.random.default_rng(39),
                        keep_output=False)
    with pytest.raises(R.UnsupportedTFLiteOpError, match=r"^logistic\.tflite: operator LOGISTIC at index 0: "
                                                          r"the int8 output must have scale 1/256 and zero point -128$"):
        load_tflite(path)


def _requantized(path: Path, out: Path, rng, keep_output: bool) -> Path:
    """A copy of a one-activation model with random input (and output) scales and zero points."""
    def edit(model, s):
        tensors = model.subgraphs[0].tensors
        edited = [model.subgraphs[0].inputs[0]] + ([] if keep_output else [model.subgraphs[0].outputs[0]])
        for i in edited:
            tensors[i].quantization.scale = np.array([10 ** rng.uniform(-3, -0.5)], np.float32)
            tensors[i].quantization.zeroPoint = np.array([rng.integers(-128, 128)], np.int64)

    out.write_bytes(_repack(path.read_bytes(), edit))
    return out


@pytest.mark.parametrize("op", ["RELU", "RELU6", "LEAKY_RELU", "LOGISTIC", "TANH", "HARD_SWISH"])
def test_activation_exhaustive_under_random_quantizations(models, op, tmp_path):
    """Every int8 input under 60 random quantizations; LOGISTIC keeps its fixed 1/256 output."""
    rng = np.random.default_rng(sum(map(ord, op)))
    x = np.arange(-128, 128, dtype=np.int8)[None]
    compared = 0
    for k in range(60):
        path = _requantized(models[op], tmp_path / f"{op}_{k}.tflite", rng, keep_output=op == "LOGISTIC")
        g = load_tflite(path)
        assert [o.op for o in g.ops] == [op]
        try:
            ref = R.TFLiteReference(g)
        except R.UnsupportedTFLiteOpError:  # a HARD_SWISH output scale below input scale / 128
            continue
        assert np.array_equal(ref.run(x), R.run_litert_interpreter(path, x)), f"{op} with quantization {k}"
        compared += 1
    assert compared >= 50


def _with_scales(path: Path, out: Path, in_scale: float, out_scale: float) -> Path:
    """A copy of a one-activation model with the given input and output scales (zero points 0)."""
    def edit(model, s):
        tensors, graph = model.subgraphs[0].tensors, model.subgraphs[0]
        for i, scale in ((graph.inputs[0], in_scale), (graph.outputs[0], out_scale)):
            tensors[i].quantization.scale = np.array([scale], np.float32)
            tensors[i].quantization.zeroPoint = np.array([0], np.int64)

    out.write_bytes(_repack(path.read_bytes(), edit))
    return out


def test_a_bilinear_resize_reading_past_its_input_is_refused_in_one_line(tf, tmp_path):
    """Found by fuzzing the kernel: resizing 1 -> 62 without half-pixel centres rounds the Q10 step 1024 / 62 up
    to 17, so the last source position (61 * 17 = 1037) lies past the only input row; TFLite's integer kernel
    reads there."""
    keras = tf.keras
    inp = keras.Input(batch_shape=(1, 1, 1, 2))
    model = keras.Model(inp, keras.layers.Lambda(lambda t: tf.compat.v1.image.resize_bilinear(t, (62, 62)))(inp))
    path = tmp_path / "resize.tflite"
    path.write_bytes(tflite_int8(tf, model, np.random.default_rng(2).uniform(-1, 1, (8, 1, 1, 2)).astype(np.float32)))
    with pytest.raises(R.UnsupportedTFLiteOpError, match=r"^RESIZE_BILINEAR at index 0: resizing the height from 1 "
                                                          r"to 62 rounds a source position past the input"):
        R.TFLiteReference(load_tflite(path))


def _require(tool: str):
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} not found: ./install.sh installs it")


def _c_outputs(path: Path, out: Path, target: str, x: np.ndarray, sanitize: bool = False) -> np.ndarray:
    """Export an int8 .tflite with `x` as the harness inputs, build (one build) and run it: its outputs."""
    api.export_s8_project(load_tflite(path), out, target, str(path), x, None, None, log=lambda *a: None)
    exe = fw.build(out, get_target(target), sanitize=sanitize)
    return fw.run(exe, get_target(target)).outputs


def _assert_c_equals_reference_and_litert(path: Path, out: Path, target: str, x: np.ndarray, sanitize: bool):
    g = load_tflite(path)
    fw_out = _c_outputs(path, out, target, x, sanitize)
    assert np.array_equal(fw_out, R.TFLiteReference(g).run(x).reshape(len(x), -1))
    litert = litert_tensors(path, x, [g.outputs[0]])[g.outputs[0]]
    assert np.array_equal(fw_out, litert.reshape(len(x), -1))


def test_decoder_on_the_host_with_sanitizers(models, tmp_path):
    _require("gcc")
    _assert_c_equals_reference_and_litert(models["decoder"], tmp_path / "dec", "host",
                                          int8_inputs(load_tflite(models["decoder"]), 12, 33), sanitize=True)


def test_variants_on_the_host_with_sanitizers(models, tmp_path):
    _require("gcc")
    _assert_c_equals_reference_and_litert(models["variants"], tmp_path / "var", "host",
                                          int8_inputs(load_tflite(models["variants"]), 8, 37), sanitize=True)


def test_hard_swish_in_c_on_every_input(models, tmp_path):
    """HARD_SWISH's int16 arithmetic on all 256 int8 inputs, under a random quantization, with the sanitizers
    (the decoder runs every kernel in C; this one has the most branches)."""
    _require("gcc")
    path = _requantized(models["HARD_SWISH"], tmp_path / "hard_swish.tflite", np.random.default_rng(34),
                        keep_output=False)
    _assert_c_equals_reference_and_litert(path, tmp_path / "hs", "host", np.arange(-128, 128, dtype=np.int8)[None],
                                          sanitize=True)


def test_hard_swish_with_a_left_shift_past_int16_saturates_in_c(models, tmp_path):
    """An input scale of 1e4 makes the reluish rescale a left shift by 19 bits: C saturates it as TFLite's
    SaturatingLeftShift does, without the int32 product that overflowed (found by fuzzing; UBSan reports it)."""
    _require("gcc")
    path = _with_scales(models["HARD_SWISH"], tmp_path / "hard_swish_wide.tflite", 1e4, 1e3)
    assert R.TFLiteReference(load_tflite(path)).params[0].values["reluish_exponent"] >= 17
    _assert_c_equals_reference_and_litert(path, tmp_path / "hs", "host", np.arange(-128, 128, dtype=np.int8)[None],
                                          sanitize=True)


@pytest.mark.slow
def test_decoder_on_cortex_m7_equals_reference_and_litert(models, tmp_path):
    _require("arm-none-eabi-gcc")
    _assert_c_equals_reference_and_litert(models["decoder"], tmp_path / "dec", "cortex-m7",
                                          int8_inputs(load_tflite(models["decoder"]), 6, 35), sanitize=False)
