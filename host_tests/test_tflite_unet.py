"""An int8 Keras U-Net in the TFLite-exact mode: TILE chains and QUANTIZE (int8 -> int8).

Keras 3 writes UpSampling2D (nearest) as RESHAPE (to rank 5) / TILE / RESHAPE
/ TILE / RESHAPE, and the converter requantizes (QUANTIZE) a branch whose
scale it cannot move before a CONCATENATION. A small U-Net built here (random
weights and biases: two MaxPooling2D downsamplings, UpSampling2D, Concatenate
skips, a Conv2DTranspose k=s=2 decoder step, a 1x1 head) converted to full
int8, checked with np.array_equal:
* reference.tflite against the LiteRT interpreter's reference kernels
  (BUILTIN_REF) on every tensor, a few hundred random inputs plus all -128
  and all 127;
* QUANTIZE on all 256 inputs under random input and output quantizations;
* tiles that are not upsamplings (a spatial repeat, a [1, 1, 1, C] map spread
  over the image) and one along the channels, in the reference;
* the generated C on the host with AddressSanitizer and UBSan, the chains
  folded into the nearest-resize kernel (no rank-5 tensor in the arena), and
  a channel tile refused in one line; (slow) the U-Net under QEMU cortex-m7.
"""
import numpy as np
import pytest

from dqa_mcu.codegen.tflite import plan_s8
from dqa_mcu.frontends.tflite_import import load_tflite
from dqa_mcu.reference import tflite as R
from conftest import int8_inputs, tflite_int8
from test_tflite import _repack, tf  # noqa: F401  (tf is a fixture)
from test_tflite_ops import (_assert_c_equals_reference_and_litert, _c_outputs, _require,
                             _requantized, _with_random_biases, assert_every_tensor_equal)

UNET_OPS = {"TILE", "QUANTIZE"}  # covered here, for the every-operator tests of test_tflite(_backend)


def _unet(tf, rng):
    """16x16x3 -> 16x16x2. The middle decoder step also takes the first level's features pooled down
    (a multi-scale skip): MaxPooling2D fixes that branch's scale, so the converter requantizes it."""
    keras, L = tf.keras, tf.keras.layers
    inp = keras.Input(batch_shape=(1, 16, 16, 3))  # a fixed batch: TRANSPOSE_CONV's output shape is a constant
    e1 = L.Conv2D(8, 3, padding="same", activation="relu")(inp)
    e2 = L.Conv2D(16, 3, padding="same", activation="relu")(L.MaxPooling2D()(e1))
    bottom = L.Conv2D(16, 3, padding="same", activation="relu")(L.MaxPooling2D()(e2))
    d2 = L.Concatenate()([L.UpSampling2D()(bottom), e2, L.MaxPooling2D()(e1)])   # TILE chain, QUANTIZE
    d2 = L.Conv2D(16, 3, padding="same", activation="relu")(d2)
    d1 = L.Concatenate()([L.Conv2DTranspose(8, 2, strides=2)(d2), e1])
    d1 = L.Conv2D(8, 3, padding="same", activation="relu")(d1)
    return _with_random_biases(keras.Model(inp, L.Conv2D(2, 1)(d1)), rng)


def _tiles(tf, channels: bool):
    """Tiles that are no upsampling: the image repeated 2 x 3 times, a pooled [1, 1, 1, C] spread over it;
    with ``channels``, the channels repeated too (a movement no C kernel makes)."""
    keras, L = tf.keras, tf.keras.layers
    inp = keras.Input(batch_shape=(1, 4, 5, 3))
    x = L.Conv2D(4, 1)(inp)
    repeated = L.Lambda(lambda t: tf.tile(t, [1, 2, 3, 1]))(x)
    spread = L.Lambda(lambda t: tf.tile(t, [1, 8, 15, 1]))(L.GlobalAveragePooling2D(keepdims=True)(x))
    out = L.Concatenate()([repeated, spread])  # not Add: the converter folds a tile into ADD's broadcast
    if channels:
        out = L.Lambda(lambda t: tf.tile(t, [1, 1, 1, 2]))(out)
    return keras.Model(inp, out)


def _quantize(path_relu, out):
    """A copy of a one-RELU vector model with the operator made QUANTIZE (both have no options)."""
    def edit(model, s):
        code = model.operatorCodes[model.subgraphs[0].operators[0].opcodeIndex]
        code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.QUANTIZE
        code.version = 2  # int8

    out.write_bytes(_repack(path_relu.read_bytes(), edit))
    return out


@pytest.fixture(scope="module")
def models(tf, tmp_path_factory):
    out = tmp_path_factory.mktemp("tflite_unet")
    rng = np.random.default_rng(41)
    paths = {name: out / f"{name}.tflite" for name in ("unet", "tiles", "channel_tile", "relu")}
    paths["unet"].write_bytes(tflite_int8(tf, _unet(tf, rng), rng.uniform(-1, 1, (32, 16, 16, 3)).astype(np.float32)))
    for name in ("tiles", "channel_tile"):
        paths[name].write_bytes(tflite_int8(tf, _tiles(tf, name == "channel_tile"),
                                            rng.uniform(-1, 1, (16, 4, 5, 3)).astype(np.float32)))
    vector = tf.keras.Input(batch_shape=(1, 256))
    paths["relu"].write_bytes(tflite_int8(tf, tf.keras.Model(vector, tf.keras.layers.ReLU()(vector)),
                                          rng.uniform(-6, 6, (16, 256)).astype(np.float32)))
    return paths


def test_unet_converts_to_tile_chains_and_a_requantization(models):
    g = load_tflite(models["unet"])
    ops = [op.op for op in g.ops]
    assert {"TILE", "QUANTIZE", "CONCATENATION", "TRANSPOSE_CONV", "MAX_POOL_2D"} <= set(ops)
    assert "RESIZE_NEAREST_NEIGHBOR" not in ops
    assert ops.count("TILE") == 2 and any(len(g.tensors[op.outputs[0]].shape) == 5 for op in g.ops)
    (quantize,) = [op for op in g.ops if op.op == "QUANTIZE"]
    x, y = g.tensors[quantize.inputs[0]], g.tensors[quantize.outputs[0]]
    assert (float(x.scale[0]), int(x.zero_point[0])) != (float(y.scale[0]), int(y.zero_point[0]))


def test_unet_every_tensor_equals_litert(models):
    g = load_tflite(models["unet"])
    out = assert_every_tensor_equal(models["unet"], int8_inputs(g, 300, 42))
    assert len(np.unique(out)) > 100  # a real spread, not saturated


def test_tiles_every_tensor_equals_litert(models):
    for name in ("tiles", "channel_tile"):
        g = load_tflite(models[name])
        assert [op.op for op in g.ops].count("TILE") == 2 + (name == "channel_tile")
        assert_every_tensor_equal(models[name], int8_inputs(g, 100, 43))


def test_quantize_exhaustive_under_random_quantizations(models, tmp_path):
    """Every int8 input under 60 random input and output quantizations (ratios from ~1/300 to ~300)."""
    path = _quantize(models["relu"], tmp_path / "quantize.tflite")
    rng = np.random.default_rng(44)
    x = np.arange(-128, 128, dtype=np.int8)[None]
    shifts = set()
    for k in range(60):
        requantized = _requantized(path, tmp_path / f"quantize_{k}.tflite", rng, keep_output=False)
        ref = R.TFLiteReference(requantized)
        assert [op.op for op in ref.graph.ops] == ["QUANTIZE"]
        shifts.add(int(ref.params[0].values["shift"]) > 0)
        assert np.array_equal(ref.run(x), R.run_litert_interpreter(requantized, x)), f"quantization {k}"
    assert shifts == {True, False}  # scales up and down


def test_unet_on_the_host_with_sanitizers(models, tmp_path):
    _require("gcc")
    g = load_tflite(models["unet"])
    plan = plan_s8(g, "layer")
    rank5 = {t.index for t in g.tensors if len(t.shape) == 5}
    assert rank5 and rank5 <= plan.folded
    stored = {plan.storage[t] for t in plan.storage if t not in plan.folded}
    assert {b.name for b in plan.memory.blocks} == stored  # no block of its own for a folded tensor
    _assert_c_equals_reference_and_litert(models["unet"], tmp_path / "unet", "host", int8_inputs(g, 12, 45),
                                          sanitize=True)
    model_c = (tmp_path / "unet" / "model.c").read_text()
    assert model_c.count("dqa_resize_nearest_s8(&") == 1  # the UpSampling2D chain, as one kernel call


def test_tiles_on_the_host_with_sanitizers(models, tmp_path):
    _require("gcc")
    _assert_c_equals_reference_and_litert(models["tiles"], tmp_path / "tiles", "host",
                                          int8_inputs(load_tflite(models["tiles"]), 8, 46), sanitize=True)


def test_channel_tile_refused_in_c_in_one_line(models, tmp_path):
    g = load_tflite(models["channel_tile"])
    (op,) = [op for op in g.ops if op.op == "TILE" and g.tensors[op.outputs[0]].shape[3] == 16]
    with pytest.raises(R.UnsupportedTFLiteOpError, match=rf"^channel_tile\.tflite: operator TILE at index "
                                                         rf"{op.index}: the C backend moves data as a reshape "
                                                         r"or as copies of whole NHWC pixels only \(not "
                                                         r"\[1, 8, 15, 8\] -> \[1, 8, 15, 16\] this way\)$"):
        _c_outputs(models["channel_tile"], tmp_path / "ct", "host", int8_inputs(g, 1, 47))
    assert not (tmp_path / "ct").exists()


@pytest.mark.slow
def test_unet_on_cortex_m7_equals_reference_and_litert(models, tmp_path):
    _require("arm-none-eabi-gcc")
    _assert_c_equals_reference_and_litert(models["unet"], tmp_path / "unet", "cortex-m7",
                                          int8_inputs(load_tflite(models["unet"]), 6, 48), sanitize=False)
