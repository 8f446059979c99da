"""Keras (.h5 / .keras) and float .tflite models through the DQA path, from the command line.

* One loader (api.load_graph) picks the importer from the file's content.
* The Keras ResNet-8 of ../shared takes raw 0..255 pixels: its FP32 accuracy
  through our IR is the model's, not chance.
* A float .tflite converted from it gives the same float model.
* `dqa-mcu export model.h5 --bits 4 --target cortex-m7` runs under QEMU
  bit-exact with the integer reference.
* Bad input (a non-model file, a fake .h5 / .keras, a truncated flatbuffer,
  a dynamic batch, a dynamic shape, an int8 model given to eval, images of
  the wrong size) gets one line naming the file and the problem.
"""
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dqa_mcu import api, cli
from dqa_mcu.ir import GraphError
from dqa_mcu.quantize.calibrate import DataError
from dqa_mcu.reference import evaluate
from dqa_mcu.reference.float_exec import run_float

from conftest import shared_file
from test_tflite import tf  # noqa: F401 - the fixture

RESNET8_H5 = "models/mlperf_tiny_ic_resnet8.h5"
RESNET8_INT8 = "models/mlperf_tiny_ic_resnet8_int8.tflite"


@pytest.fixture(scope="module")
def keras_resnet8(tf):
    return tf.keras.models.load_model(str(shared_file(RESNET8_H5)), compile=False)


def _convert(tf, model, path: Path, fixed_batch: bool) -> Path:
    if fixed_batch:  # Keras 3 converts a dynamic batch's Flatten into SHAPE / STRIDED_SLICE / PACK
        inp = tf.keras.Input(batch_shape=(1,) + tuple(model.input_shape[1:]))
        model = tf.keras.Model(inp, model(inp))
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(model).convert())
    return path


@pytest.fixture(scope="module")
def float_tflite(tf, keras_resnet8, tmp_path_factory):
    return _convert(tf, keras_resnet8, tmp_path_factory.mktemp("float") / "resnet8_float.tflite", True)


def _npz(path: Path, x, y=None) -> str:
    np.savez(path, **({"x": x} if y is None else {"x": x, "y": y}))
    return str(path)


def _error(capsys, argv) -> str:
    """Run the CLI expecting a handled error; return its single stderr line."""
    assert cli.main(argv) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dqa-mcu: error: "), lines
    return lines[0][len("dqa-mcu: error: "):]


def test_the_file_content_picks_the_importer(tmp_path, float_tflite):
    for src, name, kind in ((shared_file(RESNET8_H5), "weights.bin", "keras"),
                            (float_tflite, "model.bin", "tflite"),
                            (shared_file("models/resnet20_cifar10.th"), "r20.bin", "torch")):
        shutil.copy(src, tmp_path / name)
        assert api.model_kind(str(tmp_path / name)) == kind
    (tmp_path / "notes.txt").write_text("not a model\n")
    with pytest.raises(DataError, match=r"^notes\.txt: not a model file dqa-mcu reads"):
        api.model_kind(str(tmp_path / "notes.txt"))
    assert api.load_tflite_int8(str(shared_file(RESNET8_INT8))).quantized
    assert api.load_tflite_int8(str(float_tflite)) is None
    assert api.load_tflite_int8(str(shared_file(RESNET8_H5))) is None


def test_keras_resnet8_takes_raw_pixels(keras_resnet8, cifar_test):
    x, y = cifar_test
    graph = api.load_graph(str(shared_file(RESNET8_H5)), None, False, x.shape[1:])
    assert graph.nodes[0].op == "input" and graph.nodes[0].attrs["pixel_scale"] == 1.0
    assert not graph.nodes[0].params["mean"].any() and (graph.nodes[0].params["std"] == 1).all()
    logits = evaluate.float_logits(graph, x, show_progress=False)
    assert (logits.argmax(1) == y).mean() > 0.72            # 75.5 % on all 10,000; 0.1 with x / 255
    probs = keras_resnet8.predict(x.astype(np.float32), batch_size=250, verbose=0)
    assert (logits.argmax(1) == probs.argmax(1)).mean() >= 0.999


def test_float_tflite_is_the_same_model(keras_resnet8, float_tflite, cifar_test):
    x = cifar_test[0][::4]
    graph = api.load_graph(str(float_tflite), None, False, x.shape[1:])
    assert [n.op for n in graph.nodes].count("conv2d") == 9 and graph.nodes[-1].op == "linear"
    logits = run_float(graph, x)
    probs = keras_resnet8.predict(x.astype(np.float32), verbose=0)
    ours = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(ours / ours.sum(1, keepdims=True), probs, rtol=1e-4, atol=1e-5)
    keras_logits = run_float(api.load_graph(str(shared_file(RESNET8_H5)), None, False, x.shape[1:]), x)
    np.testing.assert_allclose(logits, keras_logits, rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("source", ["h5", "float_tflite"])
def test_export_dqa4_and_run_bit_exact_on_cortex_m7(source, float_tflite, cifar_calib, cifar_test, tmp_path):
    model = str(shared_file(RESNET8_H5)) if source == "h5" else str(float_tflite)
    calib = _npz(tmp_path / "calib.npz", cifar_calib[::5])                 # 100 images
    data = _npz(tmp_path / "test.npz", *(a[::250] for a in cifar_test))   # 4 images
    out = tmp_path / "out"
    assert cli.main(["export", model, "--target", "cortex-m7", "--calib", calib, "--bits", "4",
                     "--data", data, "-o", str(out)]) == 0
    report = api.run_project(out, None, None, None, 300)
    assert report["images"] == 4 and report["bit_exact"], report["mismatched_images"]
    assert report["instructions_per_inference"] > 0


def test_bad_model_files_are_named_in_one_line(tmp_path, capsys, tf, keras_resnet8):
    calib = _npz(tmp_path / "c.npz", np.zeros((2, 32, 32, 3), np.uint8))
    labelled = _npz(tmp_path / "t.npz", np.zeros((2, 32, 32, 3), np.uint8), np.zeros(2, np.int64))

    def export(path):
        return _error(capsys, ["export", str(path), "--target", "cortex-m7", "--calib", calib,
                               "-o", str(tmp_path / "o"), "--no-build"])

    (tmp_path / "notes.txt").write_text("hello\n")
    assert export(tmp_path / "notes.txt").startswith("notes.txt: not a model file")
    (tmp_path / "fake.h5").write_text("hello\n")
    assert export(tmp_path / "fake.h5") == "fake.h5: not a Keras model (no HDF5 signature at the start of the file)"
    (tmp_path / "fake.keras").write_text("hello\n")
    assert export(tmp_path / "fake.keras").startswith("fake.keras: not a Keras model (a .keras file is a zip")
    buf = shared_file(RESNET8_INT8).read_bytes()
    (tmp_path / "cut.tflite").write_bytes(buf[:len(buf) // 2])
    assert export(tmp_path / "cut.tflite").startswith("cut.tflite: truncated or corrupt flatbuffer")
    dynamic = _convert(tf, keras_resnet8, tmp_path / "dynamic_batch.tflite", fixed_batch=False)
    msg = export(dynamic)
    assert msg.startswith("dynamic_batch.tflite: unsupported operator SHAPE at index") and "fixed batch size" in msg
    msg = _error(capsys, ["eval", str(shared_file(RESNET8_INT8)), "--data", labelled, "--calib", calib])
    assert msg.startswith("mlperf_tiny_ic_resnet8_int8.tflite is an int8 model") and "dqa-mcu export" in msg
    small = _npz(tmp_path / "small.npz", np.zeros((2, 16, 16, 3), np.uint8))
    msg = _error(capsys, ["export", str(shared_file(RESNET8_H5)), "--target", "cortex-m7", "--calib", small,
                          "-o", str(tmp_path / "o"), "--no-build"])
    assert msg == "mlperf_tiny_ic_resnet8.h5 takes inputs of shape (32, 32, 3) (H, W, C); the data has (16, 16, 3)"


def test_a_dynamic_shape_is_named(tmp_path, capsys):
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s
    model = s.ModelT.InitFromPackedBuf(shared_file(RESNET8_INT8).read_bytes(), 0)
    model.subgraphs[0].tensors[model.subgraphs[0].inputs[0]].shapeSignature = np.array([1, -1, -1, 3], np.int32)
    b = flatbuffers.Builder(0)
    b.Finish(model.Pack(b), file_identifier=b"TFL3")
    path = tmp_path / "dyn.tflite"
    path.write_bytes(bytes(b.Output()))
    with pytest.raises(ValueError, match=r"^dyn\.tflite: tensor \d+ .* dynamic shape \[1, -1, -1, 3\]"):
        api.load_tflite_int8(str(path))


def test_float_tflite_refusals_name_the_op(tf, tmp_path):
    keras, L = tf.keras, tf.keras.layers
    inp = keras.Input(batch_shape=(1, 8, 8, 3))
    model = keras.Model(inp, L.Softmax()(L.Conv2D(4, 3)(inp)))   # a softmax over a feature map, then more
    model = keras.Model(inp, L.Conv2D(2, 1, name="after")(model.output))
    path = _convert(tf, model, tmp_path / "inner_softmax.tflite", fixed_batch=False)
    with pytest.raises(GraphError, match=r"^inner_softmax\.tflite: operator SOFTMAX at index \d+: a softmax that "
                                         r"is not the model's output"):
        api.load_graph(str(path), None, False, (8, 8, 3))
    inp = keras.Input(batch_shape=(1, 9, 9, 3))
    same_avg = keras.Model(inp, L.AveragePooling2D(2, padding="same")(inp))
    path = _convert(tf, same_avg, tmp_path / "same_avg.tflite", fixed_batch=False)
    with pytest.raises(GraphError, match=r"^same_avg\.tflite: operator AVERAGE_POOL_2D at index 0: SAME padding"):
        api.load_graph(str(path), None, False, (9, 9, 3))
