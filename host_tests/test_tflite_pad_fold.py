"""A PAD folded into the convolution it feeds (docs/spec_tflite.md 3.9, tflite_import.fold_pads): Keras'
ZeroPadding2D before a stride-2 VALID convolution (as in MobileNetV2), symmetric and asymmetric, on the
input (zero point -128) and inside the net, and before a SAME convolution. The folded graph's reference
equals the LiteRT interpreter on every tensor, and so does the C runtime on the host (ASan + UBSan) and
under QEMU cortex-m7, whole-tensor and row-streamed; a PAD that cannot fold (two readers, channel
padding) stays and stays exact, or is refused as before."""
import numpy as np
import pytest

from dqa_mcu import cli
from dqa_mcu.codegen.tflite import plan_s8
from dqa_mcu.frontends import tflite_import
from dqa_mcu.frontends.tflite_import import load_tflite
from dqa_mcu.reference import tflite as R
from conftest import int8_inputs, tflite_int8
from test_backend import require_arm
from test_streaming_s8 import _run
from test_tflite import _repack, assert_bit_exact, tf  # noqa: F401

PAD_OPS = {"PAD"}  # an unfolded PAD, here bit-exact on every tensor and in C (the coverage checks)


def _convert(tf, model, path, seed):  # noqa: F811
    shape = model.input_shape[1:]
    samples = np.random.default_rng(seed).uniform(0, 255, (32,) + shape).astype(np.float32)
    path.write_bytes(tflite_int8(tf, model, samples))
    return path


@pytest.fixture(scope="module")
def models(tf, tmp_path_factory):  # noqa: F811
    keras, L = tf.keras, tf.keras.layers
    out = tmp_path_factory.mktemp("pad_fold")
    # folds: every PAD feeds one convolution. 15 x 13 in: no PAD pads as SAME would (the converter fuses
    # such a PAD into the conv itself); the windows of stride 2 read the bottom padding of the 2nd, 4th and
    # 5th convs, the right padding of the 5th
    inp = keras.Input(batch_shape=(1, 15, 13, 3))
    x = L.Conv2D(8, 3, strides=2, padding="valid")(L.ZeroPadding2D(((0, 1), (0, 1)))(inp))
    x = L.DepthwiseConv2D(3, strides=2, padding="valid", activation="relu")(L.ZeroPadding2D(1)(x))
    x = L.Conv2D(12, 1)(x)  # linear: the next PAD fills with a zero point other than -128
    x = L.DepthwiseConv2D(3, strides=2, padding="valid", depth_multiplier=2)(L.ZeroPadding2D(((0, 1), (0, 1)))(x))
    x = L.Conv2D(16, 3, strides=2, padding="same", activation="relu6")(L.ZeroPadding2D(((1, 2), (0, 1)))(x))
    folds = keras.Model(inp, L.Dense(5)(L.GlobalAveragePooling2D()(x)))
    # two readers: the PAD stays
    inp = keras.Input(batch_shape=(1, 11, 9, 4))
    x = L.Conv2D(6, 3, padding="same")(inp)
    padded = L.ZeroPadding2D(((0, 1), (1, 0)))(x)
    x = L.Add()([L.DepthwiseConv2D(3, strides=2, padding="valid")(padded),
                 L.Conv2D(6, 3, strides=2, padding="valid")(padded)])
    two_readers = keras.Model(inp, L.Conv2D(3, 1, activation="relu")(x))
    # a PAD feeding a PAD feeding a depthwise conv: both fold
    inp = keras.Input(batch_shape=(1, 9, 9, 3))
    x = L.ZeroPadding2D(((0, 1), (0, 1)))(L.Conv2D(4, 3, padding="same")(inp))
    chain = keras.Model(inp, L.DepthwiseConv2D(3, strides=2)(
        L.Lambda(lambda t: tf.pad(t, [[0, 0], [1, 0], [2, 0], [0, 0]]))(x)))
    # a channel pad: the PAD stays (the C backend refuses it); a constant other than zero: PADV2
    inp = keras.Input(batch_shape=(1, 8, 8, 3))
    channels = keras.Model(inp, L.Conv2D(4, 3)(L.Lambda(lambda t: tf.pad(t, [[0, 0], [1, 1], [1, 1], [0, 1]]))(inp)))
    padv2 = keras.Model(inp, L.Conv2D(4, 3)(L.Lambda(
        lambda t: tf.pad(t, [[0, 0], [1, 1], [1, 1], [0, 0]], constant_values=50.0))(inp)))
    return {name: _convert(tf, model, out / f"{name}.tflite", seed) for seed, (name, model) in enumerate(
        (("folds", folds), ("two_readers", two_readers), ("chain", chain), ("channels", channels),
         ("padv2", padv2)))}


def test_every_zero_padding_folds_into_its_convolution_exactly(models):
    g = load_tflite(models["folds"])
    assert "PAD" not in [op.op for op in g.ops]
    # (top, bottom, left, right): the PAD's, plus SAME's own on the padded 5 x 2 input for the last conv
    assert [op.options["padding"] for op in g.ops if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D")] == [
        (0, 1, 0, 1), (1, 1, 1, 1), "VALID", (0, 1, 0, 1), (1 + 1, 2 + 1, 0 + 0, 1 + 1)]
    assert int(g.input.zero_point[0]) == -128  # the first PAD fills with the input's zero point
    assert_bit_exact(models["folds"], int8_inputs(g, 200, 81))


def test_a_fold_on_the_wrong_side_is_not_exact(models):
    """The inputs above tell the sides apart: any asymmetric folded padding mirrored (top <-> bottom,
    left <-> right) changes the output."""
    litert = None
    for position in (0, 3, 4):
        g = load_tflite(models["folds"])
        x = int8_inputs(g, 20, 82)
        litert = R.run_litert_interpreter(models["folds"], x) if litert is None else litert
        top, bottom, left, right = g.ops[position].options["padding"]
        g.ops[position].options["padding"] = (bottom, top, right, left)
        assert not np.array_equal(R.TFLiteReference(g).run(x), litert), position


def test_a_chain_of_pads_folds_whole(models):
    g = load_tflite(models["chain"])
    assert [(op.op, op.options["padding"]) for op in g.ops] == [("CONV_2D", "SAME"),
                                                                ("DEPTHWISE_CONV_2D", (0 + 1, 1 + 0, 0 + 2, 1 + 0))]
    assert_bit_exact(models["chain"], int8_inputs(g, 100, 87))


def test_folded_pads_no_longer_split_the_row_pipeline(models, monkeypatch):
    g = load_tflite(models["folds"])
    assert [(seg.first, seg.last) for seg in plan_s8(g, "stream").memory.segments] == [(0, 4)]  # every conv
    folded = plan_s8(g, "auto").memory.arena_bytes
    monkeypatch.setattr(tflite_import, "fold_pads", lambda graph: None)
    unfolded = load_tflite(models["folds"])
    assert [op.op for op in unfolded.ops].count("PAD") == 4
    # PAD, conv, PAD, depthwise, 1x1, PAD, ...: only the two convs between PADs stream
    assert [(seg.first, seg.last) for seg in plan_s8(unfolded, "stream").memory.segments] == [(3, 4)]
    assert folded < plan_s8(unfolded, "auto").memory.arena_bytes


@pytest.mark.parametrize("target, schedule", [("host", "layer"), ("host", "stream"), ("cortex-m7", "stream")])
def test_folded_convolutions_in_c_equal_litert(models, target, schedule, tmp_path):
    if target != "host":
        require_arm()
    path = models["folds"]
    x = int8_inputs(load_tflite(path), 8, 83)
    report, outputs = _run(path, tmp_path / target, target, x, schedule=schedule)
    assert report["bit_exact"], report["mismatched_images"]
    assert np.array_equal(outputs, R.run_litert_interpreter(path, x).reshape(len(x), -1))
    assert "dqa_pad_s8(" not in (tmp_path / target / "model.c").read_text()


@pytest.mark.parametrize("target", ["host", "cortex-m7"])
def test_a_pad_with_two_readers_stays_and_stays_exact(models, target, tmp_path):
    if target != "host":
        require_arm()
    path = models["two_readers"]
    g = load_tflite(path)
    assert [op.op for op in g.ops].count("PAD") == 1
    x = int8_inputs(g, 8, 84)
    if target == "host":
        assert_bit_exact(path, int8_inputs(g, 200, 85))
    report, outputs = _run(path, tmp_path / target, target, x, schedule="auto")
    assert report["bit_exact"], report["mismatched_images"]
    assert np.array_equal(outputs, R.run_litert_interpreter(path, x).reshape(len(x), -1))
    assert "dqa_pad_s8(" in (tmp_path / target / "model.c").read_text()


def test_a_channel_pad_stays_and_the_c_backend_refuses_it_in_one_line(models, tmp_path, capsys):
    path = models["channels"]
    g = load_tflite(path)
    assert [op.op for op in g.ops] == ["PAD", "CONV_2D"]
    assert_bit_exact(path, int8_inputs(g, 50, 86))
    assert cli.main(["export", str(path), "--target", "host", "--no-build", "-o", str(tmp_path / "o")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "operator PAD at index 0" in line and "pads the height and width of NHWC tensors only" in line


def test_a_pad_with_another_constant_is_refused_in_one_line(models, tmp_path, capsys):
    """PADV2 fills with its constant operand, not the zero point: no fold, and no kernel for it."""
    assert cli.main(["export", str(models["padv2"]), "--target", "host", "--no-build", "-o", str(tmp_path / "o")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "padv2.tflite: unsupported operator PADV2 at index 0" in line and "Traceback" not in line


def test_paddings_that_miss_the_output_shape_are_refused_in_one_line(models):
    """A damaged file: the fold (and the PAD kernel) trust the paddings to give the output's shape."""
    def widen_the_pad(model, s):
        pad_code = next(i for i, oc in enumerate(model.operatorCodes)
                        if max(oc.builtinCode, oc.deprecatedBuiltinCode) == s.BuiltinOperator.PAD)
        (pad,) = [op for op in model.subgraphs[0].operators if op.opcodeIndex == pad_code]
        paddings = model.buffers[model.subgraphs[0].tensors[pad.inputs[1]].buffer]
        paddings.data = np.array([[0, 0], [0, 2], [1, 0], [0, 0]], np.int32).view(np.uint8).reshape(-1)

    buf = _repack(models["two_readers"].read_bytes(), widen_the_pad)
    with pytest.raises(tflite_import.UnsupportedTFLiteOpError,
                       match=r"^two_readers\.tflite: operator PAD at index 1: paddings \[\[0, 0\], \[0, 2\], \[1, 0\], "
                             r"\[0, 0\]\] do not take \[1, 11, 9, 6\] to the output's \[1, 12, 10, 6\]$"):
        tflite_import.parse_tflite(buf, "two_readers.tflite")
