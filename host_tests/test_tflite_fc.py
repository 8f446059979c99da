"""Fully connected-only int8 models on a vector input, in the TFLite-exact int8 mode.

A Keras autoencoder of the MLPerf Tiny anomaly-detection shape (ad01: a
640-value input, ReLU hidden layers, a linear bottleneck and a linear
640-value output; narrower layers here), with random weights and biases,
converted to full int8 with a representative dataset. Its input, output and
every intermediate tensor are [1, N] vectors. Checked with np.array_equal:
* reference.tflite against the LiteRT interpreter's reference kernels, every
  tensor of every op;
* the generated C under QEMU cortex-m7, and on the host with the sanitizers,
  against the interpreter;
* what the C backend or the reference does not handle in a vector model (a
  rank-3 tensor, a vector viewed as several rows) is refused in one line that
  names the op and its index.
"""
import shutil
from pathlib import Path

import numpy as np
import pytest

from dqa_mcu import api, cli
from dqa_mcu.frontends.tflite_import import UnsupportedTFLiteOpError, load_tflite
from dqa_mcu.reference import tflite as R
from conftest import int8_inputs, tflite_int8
from test_tflite import assert_bit_exact, tf  # noqa: F401  (tf is a fixture)
from test_tflite_backend import _firmware_outputs

FEATURES = 640
AUTOENCODER_WIDTHS = (64, 64, 8, 64, 64, FEATURES)  # ad01: 128 x 4, 8, 128 x 4, 640
BOTTLENECK = 2                                      # the linear layer of width 8


def _convert_int8(tf, model, rng) -> bytes:
    return tflite_int8(tf, model, rng.normal(0, 1, (64, FEATURES)).astype(np.float32))


def _autoencoder(tf, rng):
    keras, L = tf.keras, tf.keras.layers
    inp = keras.Input((FEATURES,))
    x = inp
    for i, width in enumerate(AUTOENCODER_WIDTHS):
        linear = i in (BOTTLENECK, len(AUTOENCODER_WIDTHS) - 1)
        x = L.Dense(width, activation=None if linear else "relu")(x)
    model = keras.Model(inp, x)
    for layer in model.layers:
        if isinstance(layer, L.Dense):  # random weights and non-zero biases (zero biases are dropped)
            kernel, bias = layer.get_weights()
            layer.set_weights([rng.normal(0, 1 / np.sqrt(kernel.shape[0]), kernel.shape),
                               rng.normal(0, 0.1, bias.shape)])
    return model


def _vector_softmax(tf):
    """A vector model with a rank-3 tensor: a softmax over rows of a [1, 10, 64] view."""
    keras, L = tf.keras, tf.keras.layers
    inp = keras.Input(batch_shape=(1, FEATURES))  # a dynamic batch would compute the Reshape's shape
    x = L.Softmax()(L.Reshape((10, 64))(L.Dense(FEATURES)(inp)))
    return keras.Model(inp, L.Dense(16)(L.Flatten()(x)))


def _dense_on_rows(tf):
    """A Dense applied to a [10, 64] view of the vector: FULLY_CONNECTED over 10 rows, no batch axis."""
    keras, L = tf.keras, tf.keras.layers
    inp = keras.Input(batch_shape=(1, FEATURES))
    x = L.Dense(16, activation="relu")(L.Reshape((10, 64))(inp))
    return keras.Model(inp, L.Dense(FEATURES)(L.Flatten()(x)))


@pytest.fixture(scope="module")
def models(tf, tmp_path_factory):
    out = tmp_path_factory.mktemp("tflite_fc")
    rng = np.random.default_rng(21)
    paths = {}
    for name, model in (("autoencoder", _autoencoder(tf, rng)), ("softmax_rows", _vector_softmax(tf)),
                        ("dense_rows", _dense_on_rows(tf))):
        paths[name] = out / f"{name}.tflite"
        paths[name].write_bytes(_convert_int8(tf, model, rng))
    return paths


def _require(tool: str):
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} not found: ./install.sh installs it")


def _export_and_run(path: Path, out: Path, target: str, x: np.ndarray, sanitize: bool = False) -> np.ndarray:
    api.export_s8_project(load_tflite(path), out, target, str(path), x, None, None, log=lambda *a: None)
    if sanitize:
        report = api.run_project(out, x, None, target, 600, sanitize=True, log=lambda *a: None)
        assert report["bit_exact"], f"differs from reference.tflite on images {report['mismatched_images']}"
    return _firmware_outputs(out, target, x)


def test_autoencoder_is_a_vector_model_bit_exact_with_litert(models):
    g = load_tflite(models["autoencoder"])
    assert [op.op for op in g.ops] == ["FULLY_CONNECTED"] * len(AUTOENCODER_WIDTHS)
    assert [op.options["activation"] for op in g.ops] == ["RELU", "RELU", "NONE", "RELU", "RELU", "NONE"]
    assert all(op.inputs[2] >= 0 for op in g.ops)                      # the biases are kept
    assert g.input.shape == (1, FEATURES) and g.output.shape == (1, FEATURES)
    assert all(len(g.tensors[op.outputs[0]].shape) == 2 for op in g.ops)
    out = assert_bit_exact(models["autoencoder"], int8_inputs(g, 200, 22))
    assert len(np.unique(out)) > 100                                   # a real spread, not saturated


@pytest.mark.slow
def test_autoencoder_on_cortex_m7_equals_litert(models, tmp_path):
    _require("arm-none-eabi-gcc")
    path = models["autoencoder"]
    g = load_tflite(path)
    x = int8_inputs(g, 8, 23)
    fw_out = _export_and_run(path, tmp_path / "ae", "cortex-m7", x)
    assert fw_out.shape == (len(x), FEATURES)
    assert np.array_equal(fw_out, R.run_litert_interpreter(path, x))
    assert np.array_equal(fw_out, R.TFLiteReference(g).run(x))
    header = (tmp_path / "ae" / "model.h").read_text()
    assert f"#define DQA_MODEL_INPUT_LENGTH {FEATURES}\n" in header and "INPUT_HEIGHT" not in header


def test_autoencoder_on_the_host_with_sanitizers(models, tmp_path):
    _require("gcc")
    path = models["autoencoder"]
    x = int8_inputs(load_tflite(path), 8, 24)
    fw_out = _export_and_run(path, tmp_path / "ae", "host", x, sanitize=True)
    assert np.array_equal(fw_out, R.run_litert_interpreter(path, x))


def test_rank3_tensor_refused_in_one_line_naming_the_op(models, tmp_path, capsys):
    path = models["softmax_rows"]
    g = load_tflite(path)
    x = int8_inputs(g, 4, 25)
    litert = np.concatenate([R.run_litert_interpreter(path, x[i:i + 1]) for i in range(len(x))])
    assert np.array_equal(R.TFLiteReference(g).run(x), litert)         # the reference runs it ...
    out = tmp_path / "sm"
    assert cli.main(["export", str(path), "--target", "host", "--no-build", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()                 # ... the C backend refuses it
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert (f"{path.name}: operator RESHAPE at index " in err[0] and "of shape [1, 10, 64]" in err[0]
            and "the C backend handles [1, N] vectors and [1, H, W, C] NHWC tensors only" in err[0]), err[0]
    assert not out.exists()


def test_vector_viewed_as_rows_refused_in_one_line_naming_the_op(models, tmp_path, capsys):
    path = models["dense_rows"]
    with pytest.raises(UnsupportedTFLiteOpError, match=r"dense_rows\.tflite: operator RESHAPE at index 0 writes "
                                                       r"tensor \d+ .* of shape \[10, 64\]; activations must be "
                                                       r"\[1, \.\.\.\] \(a batch of 1"):
        R.TFLiteReference(path)
    assert cli.main(["export", str(path), "--target", "host", "--no-build", "-o", str(tmp_path / "dr")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "operator RESHAPE at index 0" in err[0] and "of shape [10, 64]" in err[0], err
