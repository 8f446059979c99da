"""Quantizer and NumPy integer reference: spec rules, accuracy, file format, errors."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from dqa_mcu.huffman import HuffmanCode
from dqa_mcu.qmodel import QModel, QTensor
from dqa_mcu.quantize.calibrate import DataError, load_images
from dqa_mcu.quantize.quantizer import QuantConfig, QuantizationError, fixed_point, quantize
from dqa_mcu.reference import evaluate, dqa as reference


# -- spec 2 / 2.3: the DQA split and the overflow policy, against a scalar model --

def _store_scalar(t: QTensor, u: np.ndarray):
    """Element by element, exactly as docs/spec.md 2.2-2.3 words it."""
    m = t.extra_bits
    n_img, h, w, c = u.shape
    v = np.zeros_like(u)
    overflowed = np.zeros(n_img, dtype=np.int64)
    for img in range(n_img):
        written, closed = 0, False
        for i in range(h * w * c):
            y, x, ch = i // (w * c), (i // c) % w, i % c
            q = int(u[img, y, x, ch])
            if not t.important[ch]:
                v[img, y, x, ch] = q << m
                continue
            e = q & ((1 << m) - 1)
            length = t.huffman.lengths[e]
            if not closed and written + length <= t.err_capacity_bits:
                written += length
            else:
                closed = True
                e = 1 << (m - 1)
            v[img, y, x, ch] = ((q >> m) << m) + e
        overflowed[img] = closed
    return v, overflowed


@settings(max_examples=40, deadline=None)
@given(data=st.data(), m=st.integers(1, 4), n=st.integers(2, 6), signed=st.booleans())
def test_store_matches_the_spec_element_by_element(data, m, n, signed):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    shape = (3, 2, 3, 5)
    important = rng.random(shape[3]) < 0.5
    bits = n + m * important
    lo = np.where(signed, -(1 << (bits - 1)), 0)
    hi = np.where(signed, (1 << (bits - 1)) - 1, (1 << bits) - 1)
    u = rng.integers(lo, hi + 1, size=shape)
    code = HuffmanCode.from_counts(rng.integers(0, 50, size=1 << m))
    capacity = data.draw(st.integers(0, 200))
    t = QTensor("t", shape[1:], n, signed, m, np.ones(shape[3]), important, code, capacity)
    overflow = np.zeros(shape[0], dtype=np.int64)
    v = reference._store(t, u, {}, overflow)
    expected_v, expected_overflow = _store_scalar(t, u)
    assert np.array_equal(v, expected_v)
    assert np.array_equal(overflow, expected_overflow)


@given(st.lists(st.floats(1e-9, 1e4), min_size=1, max_size=8))
def test_fixed_point_multipliers_approximate_the_real_ones(reals):
    r = np.array(reals)
    (mult,), shift = fixed_point(r)
    assert np.all(mult < 2**31) and np.all(shift <= 62)
    assert np.all(np.abs(mult / 2.0**shift - r) <= r * 2.0**-29 + 2.0**-63)
    (m1, m2), shared = fixed_point(r, r / 3)
    assert np.all(np.maximum(m1, m2) >= 2**30) or np.all(shared == 62)


# -- accuracy on the pretrained ResNet-20 (1,000 test images, 500 calibration) --

@pytest.fixture(scope="module")
def accuracies(resnet20, cifar_test, cifar_calib):
    graph, calib = resnet20
    x, y = cifar_test
    rows = {"fp32": evaluate.top1(evaluate.float_logits(graph, x, show_progress=False), y)}
    for label, config in (("int8", QuantConfig(bits=8, extra_bits=0)),
                          ("direct4", QuantConfig(bits=4, extra_bits=0)),
                          ("dqa4", QuantConfig(bits=4, extra_bits=3, important_ratio=0.4))):
        model = quantize(graph, calib, config, cifar_calib)
        rows[label] = evaluate.eval_quantized(label, model, x, y, show_progress=False)
    return rows


def test_int8_is_within_one_point_of_fp32(accuracies):
    assert abs(accuracies["int8"].accuracy - accuracies["fp32"]) <= 1.0


def test_dqa4_beats_direct4(accuracies):
    assert accuracies["dqa4"].accuracy > accuracies["direct4"].accuracy


def test_dqa_memory_accounting(accuracies):
    direct, dqa = accuracies["direct4"].memory, accuracies["dqa4"].memory
    assert direct.bits_per_activation == pytest.approx(4.0, abs=0.01)
    # 40 % of channels add at most m = 3 bits, Huffman coded into less
    assert 4.0 < dqa.bits_per_activation < 4.0 + 0.4 * 3
    assert 0 < accuracies["dqa4"].huffman_bits < 3


def test_tensors_after_relu_are_unsigned_and_the_output_is_int16(resnet20, cifar_calib):
    graph, calib = resnet20
    model = quantize(graph, calib, QuantConfig(bits=4), cifar_calib)
    relu_outputs = [n.output for n in graph.nodes if n.attrs.get("act") == "relu"]
    assert relu_outputs and all(not model.tensors[t].signed for t in relu_outputs)
    out = model.tensors[model.output]
    assert out.bits == 16 and out.signed and np.all(out.scale == out.scale[0])
    imp = [t for t in model.tensors.values() if t.important.any()]
    assert imp and all(int(t.important.sum()) == round(0.4 * t.channels) for t in imp)


def test_saved_model_runs_identically(resnet20, cifar_calib, cifar_test, tmp_path):
    graph, calib = resnet20
    model = quantize(graph, calib, QuantConfig(bits=3), cifar_calib)
    model.save(tmp_path / "m.dqa.npz")
    loaded = QModel.load(tmp_path / "m.dqa.npz")
    x = cifar_test[0][:50]
    a, b = reference.run(model, x), reference.run(loaded, x)
    assert np.array_equal(a.output, b.output) and np.array_equal(a.overflowed_tensors, b.overflowed_tensors)


def test_ranking_changes_which_channels_are_important(resnet20, cifar_calib):
    graph, calib = resnet20
    by_noise = quantize(graph, calib, QuantConfig(bits=3, rank="noise"), cifar_calib)
    at_random = quantize(graph, calib, QuantConfig(bits=3, rank="random"), cifar_calib)
    name = "layer1_0_conv1"
    assert not np.array_equal(by_noise.tensors[name].important, at_random.tensors[name].important)


# -- bad input ---------------------------------------------------------------------

@pytest.mark.parametrize("config, message", [
    (QuantConfig(bits=9), "--bits 9 is out of range"),
    (QuantConfig(bits=1), "--bits 1 is out of range"),
    (QuantConfig(extra_bits=5), "--extra-bits 5 is out of range"),
    (QuantConfig(important_ratio=1.5), "--important-ratio 1.5"),
    (QuantConfig(clip="median"), "unknown clipping method 'median'"),
])
def test_bad_configuration_is_named(config, message, resnet20, cifar_calib):
    graph, calib = resnet20
    with pytest.raises(QuantizationError, match=message):
        quantize(graph, calib, config, cifar_calib)


def test_bad_calibration_data_is_named(tmp_path):
    np.savez(tmp_path / "float.npz", x=np.zeros((2, 32, 32, 3), dtype=np.float32))
    np.savez(tmp_path / "nchw.npz", x=np.zeros((2, 3, 32, 32), dtype=np.uint8))
    np.savez(tmp_path / "nox.npz", images=np.zeros((2, 32, 32, 3), dtype=np.uint8))
    with pytest.raises(DataError, match="must be uint8 pixels, got float32"):
        load_images(tmp_path / "float.npz", (32, 32, 3))
    with pytest.raises(DataError, match=r"are \(3, 32, 32\) \(H, W, C\) but the model expects \(32, 32, 3\)"):
        load_images(tmp_path / "nchw.npz", (32, 32, 3))
    with pytest.raises(DataError, match="no array named 'x'"):
        load_images(tmp_path / "nox.npz")
    with pytest.raises(ValueError, match="input must be uint8 of shape"):
        reference.run(QModel([], {"in": QTensor("in", (32, 32, 3), 8, False, 0, np.ones(3), np.zeros(3, bool))},
                             "in", "in"), np.zeros((1, 32, 32), dtype=np.uint8))
