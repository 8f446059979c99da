"""Keras and TFLite front ends.

* Keras (.h5) -> float IR: our float executor agrees with Keras' own predict.
* .tflite -> int8 graph -> NumPy reference: bit-exact against the LiteRT
  interpreter running TFLite's reference kernels (OpResolverType.BUILTIN_REF),
  every intermediate tensor included, on the MLPerf Tiny ResNet-8 (CIFAR-10
  images), the DS-CNN keyword spotter (random int8 inputs) and small models
  converted here that use every supported operator.
* Clear errors for a non-model file, a truncated file, a dynamic shape and an
  unsupported operator.
"""
from pathlib import Path

import numpy as np
import pytest

from dqa_mcu import ir
from dqa_mcu.frontends import passes
from dqa_mcu.reference import tflite as R
from dqa_mcu.reference.float_exec import run_float
from conftest import tflite_int8
from dqa_mcu.frontends.tflite_import import (SUPPORTED_OPS, TFLiteFormatError, UnsupportedTFLiteOpError, load_tflite,
                                             parse_tflite)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
RESNET8_H5 = SHARED / "models" / "mlperf_tiny_ic_resnet8.h5"
RESNET8 = SHARED / "models" / "mlperf_tiny_ic_resnet8_int8.tflite"
KWS = SHARED / "models" / "mlperf_tiny_kws_dscnn_int8.tflite"
TEST_NPZ = SHARED / "data" / "cifar10_test.npz"
ZERO_INPUT_OUTPUT = [-48, -128, -127, -108, -48, -127, -71, -125, -116, -127]


def _need(path: Path) -> Path:
    if not path.exists():
        pytest.fail(f"{path} is missing: tests read ../shared beside the project")
    return path


def _litert():
    try:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType
    except ImportError:
        pytest.fail("ai-edge-litert is not installed: pip install ai-edge-litert==2.3.0 (see docs/spec_tflite.md)")
    return Interpreter, OpResolverType


@pytest.fixture(scope="module")
def tf():
    try:
        import tensorflow
    except ImportError:
        pytest.fail("tensorflow is not installed: pip install tensorflow==2.21.0 (see docs/spec_tflite.md)")
    return tensorflow


def interpreter_tensors(path, x):
    """Every tensor of the LiteRT interpreter (reference kernels) after one invoke on batch x."""
    Interpreter, OpResolverType = _litert()
    it = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_REF,
                     experimental_preserve_all_tensors=True)
    inp = it.get_input_details()[0]
    it.resize_tensor_input(inp["index"], list(x.shape))
    it.allocate_tensors()
    it.set_tensor(inp["index"], x)
    it.invoke()
    return lambda i: it.get_tensor(i)


def assert_bit_exact(path, x):
    """Our reference equals the interpreter on every tensor any op produces; returns the output."""
    ref = R.TFLiteReference(path)
    ours: dict[int, np.ndarray] = {}
    out = ref.run(x, batch_size=128, collect=lambda i, a: ours.setdefault(i, []).append(a))
    theirs = interpreter_tensors(path, x)
    for op in ref.graph.ops:
        t = op.outputs[0]
        mine = np.concatenate(ours[t])
        other = theirs(t).reshape(mine.shape)
        bad = int((mine != other).sum())
        assert bad == 0, f"{Path(path).name}: op {op.index} {op.op}: {bad} of {mine.size} values differ"
    assert np.array_equal(out, theirs(ref.graph.outputs[0]))
    return out


# --------------------------------------------------------------------------- integer primitives

def test_fixed_point_primitives():
    srdhm = R.saturating_rounding_doubling_high_mul
    assert srdhm(R.INT32_MIN, R.INT32_MIN) == R.INT32_MAX          # the one saturating case
    assert srdhm(1 << 30, 1 << 30) == 1 << 29                       # 0.5 * 0.5 = 0.25
    assert srdhm(3, 1 << 30) == 2 and srdhm(-3, 1 << 30) == -1      # ties: 1.5 -> 2 but -1.5 -> -1
    assert srdhm(5, 1 << 29) == 1 and srdhm(-5, 1 << 29) == -1      # 1.25 -> 1
    rdbpot = R.rounding_divide_by_pot
    assert [int(rdbpot(v, 1)) for v in (3, -3, 1, -1, 2)] == [2, -2, 1, -1, 1]
    assert [int(rdbpot(v, 2)) for v in (5, -5, 6, -6, 7)] == [1, -1, 2, -2, 2]
    assert R.quantize_multiplier(0.5) == (1 << 30, 0)
    assert R.quantize_multiplier(1.0) == (1 << 30, 1)
    assert R.quantize_multiplier(0.75) == (3 << 29, 0)
    assert R.quantize_multiplier(1e-12) == (0, 0)                   # below 2^-31: flushed to zero
    m, s = R.quantize_multiplier(0.1)
    assert m == 1717986918 and s == -3
    x = np.array([-1000, -7, 0, 7, 1000, 2 ** 31 - 1])
    assert np.array_equal(R.multiply_by_quantized_multiplier(x, m, s), [-100, -1, 0, 1, 100, 214748365])
    assert np.array_equal(R.round_half_away(np.array([-2.5, -1.5, -0.5, 0.49999999999999994, 0.5, 2.5])),
                          [-3, -2, -1, 0, 1, 3])
    assert R.tf_same_padding(32, 3, 2) == (16, 0, 1)                 # the extra pixel goes after
    assert R.tf_same_padding(49, 10, 2) == (25, 4, 5)
    assert R.activation_range("RELU", 0.05, -128) == (-128, 127)
    assert R.activation_range("RELU6", 0.05, -10) == (-10, 110)


def test_softmax_against_float():
    """The fixed-point softmax stays within 1/256 of the real one (and sums to ~1)."""
    rng = np.random.default_rng(3)
    logits = rng.integers(-128, 128, (2000, 10))
    m, s, dmin = R.softmax_params(1.0, 0.17185351)
    q = R.softmax_int8(logits, m, s, dmin)
    z = logits * np.float64(np.float32(0.17185351))
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert np.abs((q + 128) / 256.0 - p).max() <= 1.5 / 256


# --------------------------------------------------------------------------- bit-exactness on the shared models

def test_resnet8_int8_bit_exact_on_cifar():
    _need(RESNET8)
    d = np.load(_need(TEST_NPZ))
    x = (d["x"][::20].astype(np.int16) - 128).astype(np.int8)   # 250 images, 25 per class
    out = assert_bit_exact(RESNET8, x)
    assert (out.argmax(1) == d["y"][::20]).mean() > 0.6


def test_resnet8_all_zero_input_cross_check():
    x = np.full((1, 32, 32, 3), -128, np.int8)  # pixel 0 everywhere
    ours = R.TFLiteReference(_need(RESNET8)).run(x)
    assert ours.tolist() == [ZERO_INPUT_OUTPUT]
    assert R.run_litert_interpreter(RESNET8, x).tolist() == [ZERO_INPUT_OUTPUT]


def resnet8_with_fc_ties(path: Path):
    """ResNet-8 whose classifier has s_w = 2^-5 and s_out = s_in / 4: its FULLY_CONNECTED scale is exactly
    1/8, so an eighth of the accumulators sit on a rounding tie. Returns the FULLY_CONNECTED op."""
    fc = next(op for op in load_tflite(_need(RESNET8)).ops if op.op == "FULLY_CONNECTED")

    def exact_scales(model, s):
        tensors = model.subgraphs[0].tensors
        s_in = np.float32(tensors[fc.inputs[0]].quantization.scale[0])
        tensors[fc.inputs[1]].quantization.scale = np.array([2.0 ** -5], np.float32)
        tensors[fc.outputs[0]].quantization.scale = np.array([s_in / 4], np.float32)

    path.write_bytes(_repack(RESNET8.read_bytes(), exact_scales))
    return fc


def test_fully_connected_ties_round_half_away(tmp_path):
    """FULLY_CONNECTED rescales in double; the interpreter rounds the ties away from zero."""
    path = tmp_path / "resnet8_ties.tflite"
    fc = resnet8_with_fc_ties(path)
    d = np.load(_need(TEST_NPZ))
    x = (d["x"][5::50].astype(np.int16) - 128).astype(np.int8)
    ref = R.TFLiteReference(path)
    p = ref.params[fc.index].values
    assert p["effective_scale"][0] == 0.125
    acc = {}
    ref.run(x, collect=lambda i, a: acc.setdefault(i, a))
    xs = acc[fc.inputs[0]].astype(np.int64) + p["input_offset"]
    ties = ((xs @ p["weight"].T + p["bias"]) % 8 == 4).sum()
    assert ties > 50
    assert_bit_exact(path, x)


def test_kws_dscnn_bit_exact_on_random_inputs():
    g = load_tflite(_need(KWS))
    assert {op.op for op in g.ops} >= {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "FULLY_CONNECTED",
                                       "SOFTMAX"}
    rng = np.random.default_rng(0)
    shape = g.input.shape[1:]
    x = np.concatenate([rng.integers(-128, 128, (254,) + shape),
                        np.full((1,) + shape, -128), np.full((1,) + shape, 127)]).astype(np.int8)
    assert_bit_exact(KWS, x)


def test_imported_graph_keeps_quantization():
    g = load_tflite(_need(RESNET8))
    assert [op.op for op in g.ops].count("CONV_2D") == 9
    assert float(g.input.scale[0]) == 1.0 and int(g.input.zero_point[0]) == -128
    assert float(g.output.scale[0]) == 1 / 256 and int(g.output.zero_point[0]) == -128
    conv = g.ops[0]
    w, b = g.tensor(conv.inputs[1]), g.tensor(conv.inputs[2])
    assert w.data.dtype == np.int8 and w.data.shape == (16, 3, 3, 3) and w.scale.size == 16
    assert b.data.dtype == np.int32 and b.data.shape == (16,)
    assert conv.options == dict(stride=(1, 1), padding="SAME", dilation=(1, 1), activation="RELU")


# --------------------------------------------------------------------------- models converted here

def _synthetic_models(tf, out_dir: Path) -> dict[str, Path]:
    keras, L = tf.keras, tf.keras.layers
    rng = np.random.default_rng(1)

    def set_bn(model):
        for layer in model.layers:
            if isinstance(layer, L.BatchNormalization):
                w = layer.get_weights()
                layer.set_weights([rng.uniform(0.5, 1.5, w[0].shape), rng.normal(0, 0.2, w[1].shape),
                                   rng.normal(0, 0.2, w[2].shape), rng.uniform(0.5, 2, w[3].shape)])

    # A: every supported op but the pooling variants (and importable as Keras)
    inp = keras.Input((15, 13, 3))
    x = L.ZeroPadding2D(((1, 2), (0, 1)))(inp)                      # -> PAD
    x = L.Conv2D(8, 3, strides=2, padding="same", activation="relu6")(x)
    a = L.DepthwiseConv2D(3, padding="same", depth_multiplier=2)(x)
    a = L.ReLU()(L.BatchNormalization()(a))
    b = L.Conv2D(16, 1)(x)
    c = L.MaxPooling2D(3, strides=2, padding="same")(L.Concatenate()([a, b]))
    d = L.Conv2D(32, 3, padding="valid", activation="relu")(L.ZeroPadding2D(1)(c))
    f = L.Activation("relu")(L.Add()([d, L.Conv2D(32, 1)(c)]))
    g = L.GlobalAveragePooling2D()(L.AveragePooling2D(2)(f))        # -> MEAN
    out = L.Dense(7, activation="softmax")(L.Dropout(0.3)(g))
    model_a = keras.Model(inp, out)
    set_bn(model_a)

    # B: AVERAGE_POOL_2D with SAME padding (count excludes the padding), MEAN keeping dims
    inp = keras.Input((9, 11, 4))
    x = L.Conv2D(12, 3, strides=2, padding="same")(inp)
    x = L.AveragePooling2D(3, strides=2, padding="same")(x)
    x = L.GlobalAveragePooling2D(keepdims=True)(x)
    model_b = keras.Model(inp, L.Conv2D(5, 1)(x))

    # C: a dilated convolution converts to SPACE_TO_BATCH_ND, which we do not support
    inp = keras.Input((12, 12, 2))
    model_c = keras.Model(inp, L.Conv2D(4, 3, dilation_rate=2)(inp))

    paths = {}
    for name, model in (("a", model_a), ("b", model_b), ("c", model_c)):
        shape = model.input_shape[1:]
        paths[name] = out_dir / f"synthetic_{name}.tflite"
        paths[name].write_bytes(tflite_int8(tf, model, rng.uniform(0, 255, (48,) + shape).astype(np.float32)))
        if name == "a":
            paths["a.keras"] = out_dir / "synthetic_a.keras"
            model.save(str(paths["a.keras"]))
    return paths


@pytest.fixture(scope="module")
def synthetic(tf, tmp_path_factory):
    return _synthetic_models(tf, tmp_path_factory.mktemp("tflite"))


def test_every_supported_op_bit_exact(synthetic):
    seen = set()
    rng = np.random.default_rng(7)
    for name in ("a", "b"):
        g = load_tflite(synthetic[name])
        seen |= {op.op for op in g.ops}
        x = rng.integers(-128, 128, (300,) + g.input.shape[1:]).astype(np.int8)
        assert_bit_exact(synthetic[name], x)
    for shared in (RESNET8, KWS):  # bit-exact in the tests above
        seen |= {op.op for op in load_tflite(_need(shared)).ops}
    from test_tflite_ops import NEW_OPS  # issue 10's ops: bit-exact in test_tflite_ops
    from test_tflite_unet import UNET_OPS  # and in test_tflite_unet
    from test_tflite_pad_fold import PAD_OPS  # the PADs above fold into their convolutions: one that cannot
    assert seen | NEW_OPS | UNET_OPS | PAD_OPS == set(SUPPORTED_OPS), \
        f"not covered: {set(SUPPORTED_OPS) - seen - NEW_OPS - UNET_OPS - PAD_OPS}"


def test_unsupported_op_from_a_converted_model(synthetic):
    with pytest.raises(UnsupportedTFLiteOpError, match=r"synthetic_c\.tflite: unsupported operator "
                                                        r"SPACE_TO_BATCH_ND at index 0"):
        load_tflite(synthetic["c"])


# --------------------------------------------------------------------------- errors

def _repack(buf: bytes, edit) -> bytes:
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s
    model = s.ModelT.InitFromPackedBuf(buf, 0)
    edit(model, s)
    b = flatbuffers.Builder(0)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    return bytes(b.Output())


def test_unsupported_op_named_with_index():
    buf = _need(KWS).read_bytes()

    def softmax_to_prelu(model, s):
        for oc in model.operatorCodes:
            if max(oc.builtinCode, oc.deprecatedBuiltinCode) == s.BuiltinOperator.SOFTMAX:
                oc.builtinCode = oc.deprecatedBuiltinCode = s.BuiltinOperator.PRELU

    with pytest.raises(UnsupportedTFLiteOpError, match=r"kws\.tflite: unsupported operator PRELU at index 12"):
        parse_tflite(_repack(buf, softmax_to_prelu), "kws.tflite")
    assert isinstance(UnsupportedTFLiteOpError("x"), ir.GraphError)


def test_repacked_model_still_parses():
    buf = _need(KWS).read_bytes()
    g = parse_tflite(_repack(buf, lambda m, s: None), "kws.tflite")
    assert len(g.ops) == 13


def test_dynamic_shape_rejected():
    buf = _need(KWS).read_bytes()

    def dynamic_height(model, s):
        t = model.subgraphs[0].tensors[model.subgraphs[0].inputs[0]]
        t.shapeSignature = np.array([-1, -1, 10, 1], np.int32)

    with pytest.raises(TFLiteFormatError, match=r"^kws\.tflite: tensor 0 .* dynamic shape \[-1, -1, 10, 1\]"):
        parse_tflite(_repack(buf, dynamic_height), "kws.tflite")


def test_non_model_files_rejected(tmp_path):
    for name, data in (("model.h5", _need(RESNET8_H5).read_bytes()[:4096]), ("empty.tflite", b""),
                       ("text.tflite", b"hello, this is not a flatbuffer at all")):
        p = tmp_path / name
        p.write_bytes(data)
        with pytest.raises(TFLiteFormatError, match=rf"^{name}: not a TFLite model"):
            load_tflite(p)
    with pytest.raises(FileNotFoundError):
        load_tflite(tmp_path / "missing.tflite")


def test_truncated_files_rejected(tmp_path):
    buf = _need(RESNET8).read_bytes()
    for n in (12, 100, 1000, len(buf) // 2, len(buf) - 1000, len(buf) - 1):
        p = tmp_path / "cut.tflite"
        p.write_bytes(buf[:n])
        with pytest.raises(TFLiteFormatError, match=r"^cut\.tflite: truncated or corrupt flatbuffer"):
            load_tflite(p)


# --------------------------------------------------------------------------- Keras -> float IR

def test_keras_resnet8_matches_keras_predict(tf, cifar_test):
    from dqa_mcu.frontends.keras_import import import_keras_model, load_keras_model
    x, y = cifar_test                                   # 1,000 images, 100 per class
    model = load_keras_model(_need(RESNET8_H5))
    g = import_keras_model(model)                       # the final softmax is dropped: logits out
    assert g.nodes[-1].op == "linear" and g.shapes[g.output] == (1, 1, 10)
    assert g.nodes[0].attrs["pixel_scale"] == 1.0       # raw 0..255 pixels
    logits = run_float(g, x)
    probs = model.predict(x.astype(np.float32), batch_size=250, verbose=0)
    ours = np.exp(logits - logits.max(1, keepdims=True))
    ours /= ours.sum(1, keepdims=True)
    np.testing.assert_allclose(ours, probs, rtol=1e-4, atol=1e-5)
    features = tf.keras.Model(model.input, model.get_layer("flatten").output).predict(x.astype(np.float32),
                                                                                      verbose=0)
    dense = model.get_layer("dense").get_weights()
    np.testing.assert_allclose(logits, features @ dense[0] + dense[1], rtol=1e-4, atol=1e-3)
    assert (logits.argmax(1) == probs.argmax(1)).mean() >= 0.999
    opt = run_float(passes.optimize(g), x)            # BatchNorm folded, ReLUs fused, residuals fused
    assert (opt.argmax(1) == probs.argmax(1)).mean() >= 0.999
    assert (logits.argmax(1) == y).mean() > 0.7


def test_keras_other_layers_match_keras_predict(tf, synthetic):
    from dqa_mcu.frontends.keras_import import load_keras
    model = tf.keras.models.load_model(str(synthetic["a.keras"]), compile=False)
    g = load_keras(synthetic["a.keras"])
    ops = [n.op for n in g.nodes]
    assert {"conv2d", "batchnorm", "relu", "concat", "maxpool", "add", "avgpool", "global_avgpool",
            "linear"} <= set(ops)
    pads = [n.attrs["padding"] for n in g.nodes if n.op == "conv2d"]
    assert pads[0] == (1 + 0, 2 + 1, 0 + 0, 1 + 1)      # ZeroPadding2D ((1,2),(0,1)) + 'same' (0,1,0,1) on 18x14
    x = np.random.default_rng(5).integers(0, 256, (64, 15, 13, 3)).astype(np.uint8)
    logits = run_float(passes.optimize(g), x)
    probs = model.predict(x.astype(np.float32), verbose=0)
    ours = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(ours / ours.sum(1, keepdims=True), probs, rtol=1e-4, atol=1e-5)


def test_keras_softmax_and_unsupported_layers(tf):
    from dqa_mcu.frontends.keras_import import import_keras_model
    keras, L = tf.keras, tf.keras.layers
    inp = keras.Input((8, 8, 3))
    model = keras.Model(inp, L.Dense(4, activation="softmax")(L.Flatten()(L.Conv2D(2, 3)(inp))))
    assert import_keras_model(model).nodes[-1].op == "linear"
    with pytest.raises(ir.GraphError, match="softmax at the output"):
        import_keras_model(model, final_softmax="error")
    prelu = keras.Model(inp, L.PReLU(name="prelu")(L.Conv2D(2, 3)(inp)))  # LeakyReLU is supported, PReLU not
    with pytest.raises(ir.GraphError, match=r"'prelu' \(PReLU\)"):
        import_keras_model(prelu)
    inner = keras.Model(inp, L.Dense(3)(L.Flatten()(L.Activation("softmax")(L.Conv2D(2, 3)(inp)))))
    with pytest.raises(ir.GraphError, match="is not the last layer"):
        import_keras_model(inner)
    same_avg = keras.Model(inp, L.AveragePooling2D(3, strides=2, padding="same", name="pool")(inp))
    with pytest.raises(ir.GraphError, match=r"'pool' \(AveragePooling2D\)"):
        import_keras_model(same_avg)
