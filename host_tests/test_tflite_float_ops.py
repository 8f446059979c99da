"""Float .tflite models with the ops of issue 10 (resampling, transposed conv, depth_to_space,
mul / sub, standalone activations): mapped onto the float IR (tflite_float), the same function as
the LiteRT interpreter, and through DQA to C that matches the reference bit for bit."""
import re

import numpy as np
import pytest

from dqa_mcu.frontends import passes
from dqa_mcu.frontends.keras_import import import_keras_model
from dqa_mcu.frontends.tflite_float import tflite_to_ir
from dqa_mcu.frontends.tflite_import import UnsupportedTFLiteOpError, parse_tflite
from dqa_mcu.quantize.calibrate import calibrate
from dqa_mcu.quantize.quantizer import QuantConfig, quantize
from dqa_mcu.reference.float_exec import run_float

from test_backend import export_and_run, require_arm
from test_tflite import tf  # noqa: F401  (a fixture)


def _float_tflite(tf, model) -> bytes:
    return tf.lite.TFLiteConverter.from_keras_model(model).convert()


def _interpreter_outputs(buf: bytes, x: np.ndarray) -> np.ndarray:
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_content=buf)
    it.allocate_tensors()
    inp, out = it.get_input_details()[0]["index"], it.get_output_details()[0]["index"]
    outputs = []
    for image in x:
        it.set_tensor(inp, image[None].astype(np.float32))
        it.invoke()
        outputs.append(it.get_tensor(out)[0])
    return np.array(outputs)


@pytest.fixture(scope="module")
def decoder_net(tf):
    """A U-Net / SR-style decoder with every op: LeakyReLU, a transposed conv, Subtract, nearest
    (Keras 3: RESHAPE / TILE chains) and bilinear upsampling, a sigmoid gate and a squeeze-excite
    Multiply, tanh, hard-swish, a ReLU6 after the subtraction and a depth_to_space head (TFLite's DCR order)."""
    layers = tf.keras.layers
    tf.keras.utils.set_random_seed(2)
    inp = tf.keras.Input(batch_shape=(1, 16, 16, 3))
    x = layers.LeakyReLU(0.1)(layers.Conv2D(8, 3, padding="same")(inp))
    low = layers.Conv2D(8, 3, strides=2, padding="same", activation="relu")(x)
    up = layers.Conv2DTranspose(8, 2, strides=2, bias_initializer="random_normal")(low)
    diff = layers.ReLU(6.0)(layers.Subtract()([x, up]))
    gate = layers.Activation("sigmoid")(layers.UpSampling2D(2, interpolation="nearest")(low))
    gated = layers.Activation("tanh")(layers.Multiply()([diff, gate]))
    smooth = layers.Activation("hard_swish")(layers.UpSampling2D(2, interpolation="bilinear")(low))
    y = layers.Concatenate()([smooth, gated])
    se = layers.Dense(16, activation="sigmoid")(layers.GlobalAveragePooling2D(keepdims=True)(y))
    y = layers.Multiply()([y, se])
    y = layers.Conv2D(12, 1)(layers.Resizing(16, 16, interpolation="nearest")(y))
    out = layers.Lambda(lambda t: tf.nn.depth_to_space(t, 2))(y)  # ESPCN's head: the output is a copy
    buf = _float_tflite(tf, tf.keras.Model(inp, out))
    return buf, passes.optimize(tflite_to_ir(parse_tflite(buf, "decoder.tflite")))


def test_every_op_maps_onto_the_ir_and_computes_what_the_interpreter_does(decoder_net):
    buf, graph = decoder_net
    ops = {n.op for n in graph.nodes}
    assert {"depth_to_space", "upsample_nearest", "upsample_bilinear", "mul", "activation", "concat"} <= ops
    assert any(n.attrs.get("b_sign") == -1 for n in graph.nodes)
    assert any(n.attrs.get("act") == "leaky_relu" for n in graph.nodes)
    x = np.random.default_rng(0).integers(0, 256, (6, 16, 16, 3), dtype=np.uint8)
    ref = _interpreter_outputs(buf, x)
    np.testing.assert_allclose(run_float(graph, x), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


@pytest.fixture(scope="module")
def decoder_dqa4(decoder_net):
    _, graph = decoder_net
    x = np.random.default_rng(1).integers(0, 256, (32, 16, 16, 3), dtype=np.uint8)
    return quantize(graph, calibrate(graph, x, show_progress=False), QuantConfig(bits=4, extra_bits=3), x), x[:3]


def test_the_decoder_through_dqa_is_bit_exact_on_the_host_with_sanitizers(decoder_dqa4, tmp_path):
    model, x = decoder_dqa4
    feeding = [t for t in model.tensors.values() if model.consumers(t.name) and
               any(n.op == "depth_to_space" and n.output == model.output for n in model.consumers(t.name))]
    assert [(t.bits, t.signed, np.ptp(t.scale)) for t in feeding] == [(16, True, 0.0)]  # spec 5.7
    report = export_and_run(model, x, "host", tmp_path / "host", sanitize=True)
    assert report["bit_exact"], report["mismatched_images"]


@pytest.mark.slow
def test_the_decoder_through_dqa_is_bit_exact_on_cortex_m7(decoder_dqa4, tmp_path):
    require_arm()
    model, x = decoder_dqa4
    report = export_and_run(model, x, "cortex-m7", tmp_path / "m7")
    assert report["bit_exact"], report["mismatched_images"]


@pytest.mark.parametrize("case, words", [
    ("d2s_of_an_add", "depth-column-row order"),
    ("align_corners", "align_corners"),
    ("overlapping_transpose_conv", "RESIZE_NEAREST_NEIGHBOR + CONV_2D"),
    ("mul_by_a_constant", "fold the constant into the preceding convolution"),
])
def test_what_has_no_ir_form_is_refused_in_one_line(tf, case, words):
    layers = tf.keras.layers
    inp = tf.keras.Input(batch_shape=(1, 8, 8, 8))
    conv = layers.Conv2D(8, 3, padding="same")(inp)
    out = {
        "d2s_of_an_add": lambda: layers.Lambda(lambda t: tf.nn.depth_to_space(t, 2))(layers.Add()([conv, inp])),
        "align_corners": lambda: layers.Lambda(
            lambda t: tf.compat.v1.image.resize_bilinear(t, (16, 16), align_corners=True))(conv),
        "overlapping_transpose_conv": lambda: layers.Conv2DTranspose(4, 3, strides=2, padding="same")(conv),
        "mul_by_a_constant": lambda: layers.Lambda(lambda t: t * tf.range(1.0, 9.0))(inp),
    }[case]()
    buf = _float_tflite(tf, tf.keras.Model(inp, out))
    with pytest.raises(UnsupportedTFLiteOpError, match=re.escape(words)) as err:
        tflite_to_ir(parse_tflite(buf, "m.tflite"))
    assert "\n" not in str(err.value) and str(err.value).startswith("m.tflite: operator ")


def test_keras_subtract_is_an_add_with_a_negative_b(tf):
    layers = tf.keras.layers
    tf.keras.utils.set_random_seed(3)
    inp = tf.keras.Input((8, 8, 3))
    model = tf.keras.Model(inp, layers.Subtract()([layers.Conv2D(3, 3, padding="same")(inp), inp]))
    graph = import_keras_model(model)
    assert [n.attrs.get("b_sign") for n in graph.nodes if n.op == "add"] == [-1]
    x = np.random.default_rng(3).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    ref = model.predict(x.astype(np.float32), verbose=0)
    np.testing.assert_allclose(run_float(graph, x), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())


def test_keras_relu_with_a_maximum_is_a_clamp(tf):
    layers = tf.keras.layers
    tf.keras.utils.set_random_seed(4)
    inp = tf.keras.Input((8, 8, 3))
    model = tf.keras.Model(inp, layers.ReLU(max_value=2.0)(layers.Conv2D(4, 3, padding="same")(inp)))
    graph = passes.optimize(import_keras_model(model))
    assert [(n.attrs["act"], n.attrs.get("clamp_min"), n.attrs.get("clamp_max")) for n in graph.nodes
            if n.op == "conv2d"] == [("clamp", 0.0, 2.0)]
    x = np.random.default_rng(4).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    np.testing.assert_allclose(run_float(graph, x), model.predict(x.astype(np.float32), verbose=0), rtol=1e-4,
                               atol=1e-4)
