"""The networks users bring (issue 10): MobileNetV2 and the x2 SR network of ../shared, a U-Net
defined here, and dead channels, from the model file to C that matches the reference bit for bit."""
import re

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from dqa_mcu import api, cli, ir
from dqa_mcu.frontends import passes
from dqa_mcu.frontends.torch_import import import_module
from dqa_mcu.frontends.zoo import Normalization
from dqa_mcu.quantize import quantizer as quantize_module
from dqa_mcu.quantize.calibrate import calibrate
from dqa_mcu.quantize.quantizer import QuantConfig, quantize
from dqa_mcu.reference import evaluate, dqa as reference
from dqa_mcu.reference.float_exec import run_float

from conftest import shared_file
from test_backend import export_and_run, require_arm
from test_tflite import tf  # noqa: F401  (a fixture)

MOBILENET_NORMALIZATION = Normalization(1 / 255, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
DQA4 = QuantConfig(bits=4, extra_bits=3)


def _nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(x).permute(0, 3, 1, 2).float() / 255


def _module_outputs(module, x: np.ndarray) -> np.ndarray:
    """NHWC outputs of a batch-1 module (exported programs fix the batch), image by image."""
    with torch.no_grad():
        return np.concatenate([module(_nchw(x[i:i + 1])).permute(0, 2, 3, 1).numpy() for i in range(len(x))])


# -- MobileNetV2 (../shared): ReLU6, linear bottlenecks and their signed residual adds, depthwise ------

@pytest.fixture(scope="module")
def mobilenet(cifar_calib):
    graph = api.load_graph(str(shared_file("models/mobilenetv2_cifar10.pt2")), None, False, (32, 32, 3),
                           MOBILENET_NORMALIZATION)
    calib_x = cifar_calib[::2]
    return quantize(graph, calibrate(graph, calib_x, show_progress=False), DQA4, calib_x)


def test_mobilenetv2_keeps_its_linear_bottlenecks_signed(mobilenet):
    signed = [t for t in mobilenet.tensors.values() if t.signed and t.name != mobilenet.output]
    relu6 = [n for n in mobilenet.nodes if n.attrs.get("act") == "relu6"]
    assert len(signed) >= 17 and len(relu6) == 35  # every block's projection, and each ReLU6 fused


# -- SR x2 (../shared): PixelShuffle, a long skip, a bilinear global residual, an image output ---------

@pytest.fixture(scope="module")
def sr(cifar_calib):
    module = torch.export.load(str(shared_file("models/sr_x2_cifar.pt2"))).module()
    graph = passes.optimize(import_module(module, (16, 16, 3)))
    task = evaluate.task("sr", 2)
    calib_x = task.inputs(cifar_calib[::2])
    calib = calibrate(graph, calib_x, show_progress=False)
    return module, graph, calib, calib_x, task


def test_sr_graph_matches_torch(sr, cifar_test):
    module, graph, _, _, task = sr
    x = task.inputs(cifar_test[0][:8])
    assert {"depth_to_space", "upsample_bilinear"} <= {n.op for n in graph.nodes}
    np.testing.assert_allclose(run_float(graph, x), _module_outputs(module, x), rtol=1e-4, atol=1e-5)


def test_sr_psnr_int8_matches_fp32_and_dqa4_beats_bilinear(sr, cifar_test):
    _, graph, calib, calib_x, task = sr
    x, target = task.pairs(cifar_test[0][::5], None)
    fp32 = task.score(run_float(graph, x), target)
    int8, dqa4 = (evaluate.eval_quantized(label, quantize(graph, calib, config, calib_x), x, target,
                                          show_progress=False, task=task).accuracy
                  for label, config in (("int8", QuantConfig(bits=8, extra_bits=0)), ("dqa4", DQA4)))
    bilinear = evaluate.psnr(F.interpolate(_nchw(x), scale_factor=2, mode="bilinear").permute(0, 2, 3, 1).numpy(),
                             target)
    assert fp32 > 27.5 and abs(int8 - fp32) < 0.2
    assert dqa4 > bilinear + 1.0  # the residual branch still adds detail at 4 bits


def test_sr_cli_reports_psnr(sr, tmp_path):
    _, graph, calib, calib_x, task = sr
    x = np.load(shared_file("data/cifar10_test.npz"))["x"][:2]
    report = api.run_project(*_exported(quantize(graph, calib, DQA4, calib_x), task.inputs(x), tmp_path),
                             x, "host", 600, log=lambda *a: None, task=task)
    assert report["bit_exact"] and 20.0 < report["psnr_db"] < 40.0


def _exported(model, images, tmp_path):
    out = tmp_path / "sr"
    api.export_project(model, out, "host", "sr", images, None, None, log=lambda *a: None)
    return out, images


# -- a U-Net: max-pool downsampling, transposed convolution, nearest upsampling, concat skips ------------

def _block(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class UNet(nn.Module):
    def __init__(self, classes=4):
        super().__init__()
        self.enc1, self.enc2, self.mid = _block(3, 8), _block(8, 16), _block(16, 32)
        self.up2 = nn.ConvTranspose2d(32, 16, 2, stride=2)  # signed, concatenated with a ReLU tensor
        self.dec2 = _block(32, 16)
        self.dec1 = _block(16 + 8, 8)
        self.head = nn.Conv2d(8, classes, 1)  # a per-pixel class map

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        m = self.mid(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(m), e2], dim=1))
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2, mode="nearest"), e1], dim=1))
        return self.head(d1)


def _with_dead_channels(net: nn.Module) -> nn.Module:
    """BatchNorm statistics as in trained nets, plus dead channels (gamma ~ 0, negative beta: ReLU
    makes them 0) and constant ones (gamma ~ 0, large beta: a bias huge against the weights)."""
    torch.manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.1, 0.3)
            m.weight.data[:2], m.bias.data[:2] = 1e-7, -3.0
            m.weight.data[2], m.bias.data[2] = 1e-9, 4.0
    return net.eval()


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(1)
    net = _with_dead_channels(UNet())
    program = torch.export.export(net, (torch.rand(1, 3, 32, 32),))
    graph = passes.optimize(import_module(program, (32, 32, 3)))
    x = np.random.default_rng(0).integers(0, 256, (96, 32, 32, 3), dtype=np.uint8)
    return program.module(), graph, x, quantize(graph, calibrate(graph, x, show_progress=False), DQA4, x)


def test_unet_graph_matches_torch(unet):
    module, graph, x, _ = unet
    assert {"depth_to_space", "upsample_nearest", "concat", "maxpool"} <= {n.op for n in graph.nodes}
    np.testing.assert_allclose(run_float(graph, x[:4]), _module_outputs(module, x[:4]), rtol=1e-4, atol=1e-5)


# -- dead channels and huge biases: exported, never refused (spec 3.1, 4.1) ---------------------------

def test_dead_channels_and_an_overflowing_bias_are_exported_bit_exact(tmp_path):
    net = _with_dead_channels(nn.Sequential(_block(3, 8), _block(8, 8), nn.Conv2d(8, 4, 1)))
    graph = passes.optimize(import_module(net, (16, 16, 3)))
    x = np.random.default_rng(2).integers(0, 256, (64, 16, 16, 3), dtype=np.uint8)
    model = quantize(graph, calibrate(graph, x, show_progress=False), DQA4, x)
    conv = graph.nodes[2]  # the second block's conv: its channel 2 has a bias ~4 on weights ~1e-9
    in_step = model.tensors[conv.inputs[0]].fine_step
    folded = np.abs(conv.params["weight"] * in_step[None, None, None, :]).reshape(8, -1).max(axis=1)
    naive = np.abs(conv.params["bias"]) / (folded / quantize_module.WEIGHT_MAX)
    assert naive.max() >= 2 ** 31  # the rule of the old quantizer refused this layer
    qconv = next(n for n in model.nodes if n.name == conv.name)
    assert np.abs(qconv.arrays["bias"]).max() <= quantize_module.BIAS_LIMIT
    assert np.all(qconv.arrays["multiplier"] < 2 ** 31)
    report = export_and_run(model, x[:4], "host", tmp_path / "host", sanitize=True)
    assert report["bit_exact"], report["mismatched_images"]
    # the live channels still compute: the quantized model follows the float one
    out = reference.run(model, x[:16]).output * model.tensors[model.output].scale[0]
    fp32 = run_float(graph, x[:16])
    assert np.abs(out - fp32).mean() < 0.05 * np.abs(fp32).mean()


# -- what is refused, in one line naming the layer and the alternative -------------------------------

@pytest.mark.parametrize("layer, words", [
    (nn.ConvTranspose2d(3, 4, 3, stride=2, padding=1, output_padding=1), "nn.Upsample + Conv2d"),
    (nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True), "align_corners=False"),
    (nn.Upsample(scale_factor=1.5, mode="nearest"), "integer scale"),
    (nn.GELU(), "has no table yet; supported: sigmoid"),
    (nn.PReLU(), "the nearest supported are ReLU and LeakyReLU"),
])
def test_unsupported_resampling_is_refused_naming_the_alternative(layer, words):
    with pytest.raises(ir.GraphError, match=re.escape(words)):
        import_module(nn.Sequential(nn.Conv2d(3, 3, 1), layer), (8, 8, 3))


def test_downscale_rounds_block_means_half_up():
    x = np.array([[1, 2], [2, 2]], np.uint8).reshape(1, 2, 2, 1)  # mean 1.75 -> 2
    y = np.array([[1, 1], [1, 2]], np.uint8).reshape(1, 2, 2, 1)  # mean 1.25 -> 1; 1.5 would give 2
    z = np.array([[1, 1], [2, 2]], np.uint8).reshape(1, 2, 2, 1)
    assert [int(evaluate.downscale(a, 2)[0, 0, 0, 0]) for a in (x, y, z)] == [2, 1, 2]
    assert evaluate.psnr(x / 255.0, x) > 100 and abs(evaluate.psnr(np.zeros((1, 4)), np.full((1, 4), 255)) - 0) < 1e-9


def _random_net_case(make_net, size: int, count: int, seed: int, config: QuantConfig = DQA4):
    """(net, optimized graph, random size x size images, quantized model) of a net built after
    torch.manual_seed(0), calibrated on the same images."""
    torch.manual_seed(0)
    net = make_net()
    graph = passes.optimize(import_module(net, (size, size, 3)))
    x = np.random.default_rng(seed).integers(0, 256, (count, size, size, 3), dtype=np.uint8)
    return net, graph, x, quantize(graph, calibrate(graph, x, show_progress=False), config, x)


# -- LeakyReLU: a second set of multipliers for negative sums (spec 4) ---------------------------------

class LeakyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.c3 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        a = F.leaky_relu(self.c1(x), 0.1)
        b = F.leaky_relu(self.c2(a) + a, 0.2)  # fused into the conv with its residual
        c = nn.LeakyReLU(0.05)(F.max_pool2d(self.c3(b), 2))  # moved before the pooling, then fused
        return self.fc(c.mean((2, 3)))


@pytest.fixture(scope="module")
def leaky():
    return _random_net_case(lambda: LeakyNet().eval(), 12, 64, seed=3, config=QuantConfig(bits=6, extra_bits=2))


def test_leaky_relu_is_fused_and_follows_torch(leaky):
    net, graph, x, model = leaky
    assert [n.attrs.get("negative_slope") for n in graph.nodes if n.attrs.get("act") == "leaky_relu"] == [
        0.1, 0.2, 0.05]
    with torch.no_grad():
        ref = net(_nchw(x)).numpy()
    np.testing.assert_allclose(run_float(graph, x), ref, rtol=1e-4, atol=1e-5)
    out = reference.run(model, x).output * model.tensors[model.output].scale[0]
    assert np.abs(out - ref).mean() < 0.02 * np.abs(ref).mean()
    assert all(model.tensors[n.output].signed for n in model.nodes if n.attrs.get("act") == "leaky_relu")


# -- clamps other than ReLU / ReLU6: hardtanh(-1, 1), clamp(0, 3), a clamp after a ReLU ----------------

class ClampNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.c2, self.c3 = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        a = F.hardtanh(self.c1(x), -1.0, 1.0)  # signed, fused into the conv
        b = torch.clamp(self.c2(a) + a, 0.0, 3.0)  # fused into the conv with its residual
        c = torch.clamp(F.relu(self.c3(b)), max=0.5)  # two clamps become one
        return self.fc(F.max_pool2d(c, 2).mean((2, 3)))


@pytest.fixture(scope="module")
def clamped():
    return _random_net_case(lambda: ClampNet().eval(), 12, 64, seed=6)


def test_clamps_are_fused_with_their_ranges_and_follow_torch(clamped):
    net, graph, x, model = clamped
    assert [(n.attrs.get("act"), n.attrs.get("clamp_min"), n.attrs.get("clamp_max")) for n in graph.nodes
            if n.op == "conv2d"] == [("clamp", -1.0, 1.0), ("clamp", 0.0, 3.0), ("clamp", 0.0, 0.5)]
    with torch.no_grad():
        ref = net(_nchw(x)).numpy()
    np.testing.assert_allclose(run_float(graph, x), ref, rtol=1e-4, atol=1e-5)
    signed = {n.name: model.tensors[n.output].signed for n in model.nodes if n.op == "conv2d"}
    assert list(signed.values()) == [True, False, False]
    first = next(n for n in model.nodes if n.op == "conv2d")
    t = model.tensors[first.output]
    lo, hi = t.range_of(t.storage_bits)  # spec 4: the storage range, narrowed to the clamp's
    assert np.array_equal(first.arrays["out_min"], np.maximum(lo, np.rint(-1.0 / t.storage_step)))
    assert np.array_equal(first.arrays["out_max"], np.minimum(hi, np.rint(1.0 / t.storage_step)))


# -- the same layers from Keras: Conv2DTranspose, UpSampling2D (nearest, bilinear), LeakyReLU ----------

def test_keras_unet_layers_match_keras_and_are_bit_exact(tf, tmp_path):
    from dqa_mcu.frontends.keras_import import load_keras
    layers = tf.keras.layers
    tf.keras.utils.set_random_seed(0)
    inp = tf.keras.Input((16, 16, 3))
    e1 = layers.LeakyReLU(0.1)(layers.Conv2D(8, 3, padding="same")(inp))
    e2 = layers.Conv2D(16, 3, padding="same", activation="relu")(layers.MaxPooling2D()(e1))
    up = layers.Conv2DTranspose(8, 2, strides=2, activation="relu")(e2)
    d = layers.ReLU()(layers.BatchNormalization()(layers.Conv2D(8, 3, padding="same")(
        layers.Concatenate()([up, e1]))))
    d = layers.UpSampling2D(2, interpolation="bilinear")(layers.UpSampling2D(1)(d))
    model = tf.keras.Model(inp, layers.Conv2D(3, 1)(d))
    model.save(tmp_path / "unet.keras")
    graph = passes.optimize(load_keras(tmp_path / "unet.keras", None))
    assert {"depth_to_space", "upsample_bilinear", "concat"} <= {n.op for n in graph.nodes}
    x = np.random.default_rng(4).integers(0, 256, (48, 16, 16, 3), dtype=np.uint8)
    ref = model.predict(x[:8].astype(np.float32), verbose=0)
    np.testing.assert_allclose(run_float(graph, x[:8]), ref, rtol=1e-4, atol=1e-3 * np.abs(ref).max())
    quantized = quantize(graph, calibrate(graph, x, show_progress=False), DQA4, x)
    report = export_and_run(quantized, x[:3], "host", tmp_path / "host", sanitize=True)
    assert report["bit_exact"], report["mismatched_images"]


def test_keras_transposed_conv_with_overlap_is_refused(tf, tmp_path):
    from dqa_mcu.frontends.keras_import import load_keras
    inp = tf.keras.Input((8, 8, 3))
    model = tf.keras.Model(inp, tf.keras.layers.Conv2DTranspose(4, 3, strides=2, padding="same")(inp))
    model.save(tmp_path / "t.keras")
    with pytest.raises(ir.GraphError, match=re.escape("UpSampling2D + Conv2D")):
        load_keras(tmp_path / "t.keras", None)


def test_task_metrics_on_known_values():
    masks = np.array([[[0, 0], [1, 2]]])  # one 2x2 mask
    scores = np.zeros((1, 2, 2, 3))
    scores[0, 0, 0, 0] = scores[0, 0, 1, 1] = scores[0, 1, 0, 1] = scores[0, 1, 1, 2] = 1.0  # predicts 0 1 / 1 2
    # class 0: 1/2, class 1: 1/2, class 2: 1/1
    assert evaluate.task("seg").score(scores.reshape(1, -1), masks) == pytest.approx(100 * (0.5 + 0.5 + 1) / 3)
    with pytest.raises(ValueError, match="one mask per image"):
        evaluate.task("seg").pairs(np.zeros((1, 2, 2, 3), np.uint8), np.zeros(1))
    images = np.full((2, 2, 2, 1), 51, np.uint8)
    assert evaluate.task("ae").score(np.full(8, 0.3), images) == pytest.approx((0.3 * 255 - 51) ** 2)
    assert evaluate.task("ae").pairs(images, None)[1] is images
    assert evaluate.task("sr", 3).scale == 3 and evaluate.task("classify").needs_labels
    assert evaluate.task("sr", 2).image_shape((16, 16, 3)) == (32, 32, 3)
    assert evaluate.task("seg").image_shape((16, 16, 3)) == (16, 16, 3)


def test_run_scores_a_segmentation_map_with_mean_iou(unet, tmp_path, capsys):
    _, _, x, model = unet
    out = tmp_path / "unet"
    api.export_project(model, out, "host", "unet", x[:2], None, None, log=lambda *a: None)
    masks = np.random.default_rng(5).integers(0, 4, (2, 32, 32), dtype=np.int64)
    np.savez(tmp_path / "seg.npz", x=x[:2], y=masks)
    assert cli.main(["run", str(out), "--task", "seg", "--data", str(tmp_path / "seg.npz")]) == 0
    assert "mean IoU % on these images" in capsys.readouterr().out


# -- squeeze-excite and table activations: mul, hardswish, hardsigmoid, sigmoid, tanh, SiLU ----------

class SqueezeExcite(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.reduce, self.expand = nn.Conv2d(channels, channels // 2, 1), nn.Conv2d(channels // 2, channels, 1)

    def forward(self, x):
        return x * F.hardsigmoid(self.expand(F.relu(self.reduce(F.adaptive_avg_pool2d(x, 1)))))


class MobileNetV3Block(nn.Module):
    """A MobileNetV3-style stem and block: hard-swish, a depthwise conv, squeeze-excite, then the
    other table functions on a linear projection."""

    def __init__(self):
        super().__init__()
        self.stem, self.bn = nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16)
        self.depthwise, self.se = nn.Conv2d(16, 16, 3, padding=1, groups=16), SqueezeExcite(16)
        self.project, self.fc = nn.Conv2d(16, 8, 1), nn.Linear(8, 10)

    def forward(self, x):
        x = self.se(nn.Hardswish()(self.depthwise(F.hardswish(self.bn(self.stem(x))))))
        x = self.project(x)
        x = torch.tanh(x) + F.silu(x) * torch.sigmoid(x)
        return self.fc(x.mean((2, 3)))


@pytest.fixture(scope="module")
def mobilenetv3_block():
    return _random_net_case(lambda: _with_dead_channels(MobileNetV3Block()), 12, 64, seed=6)


def test_table_activations_and_mul_follow_torch(mobilenetv3_block):
    net, graph, x, model = mobilenetv3_block
    functions = sorted(n.attrs["function"] for n in graph.nodes if n.op == "activation")
    assert functions == ["hardsigmoid", "hardswish", "hardswish", "sigmoid", "silu", "tanh"]
    assert sum(n.op == "mul" for n in graph.nodes) == 2
    with torch.no_grad():
        ref = net(_nchw(x)).numpy()
    np.testing.assert_allclose(run_float(graph, x), ref, rtol=1e-4, atol=1e-5)
    int8 = quantize(graph, calibrate(graph, x, show_progress=False), QuantConfig(bits=8, extra_bits=0), x)
    direct4 = quantize(graph, calibrate(graph, x, show_progress=False), QuantConfig(bits=4, extra_bits=0), x)
    for quantized, bound in ((int8, 0.005), (direct4, 0.01), (model, 0.01)):  # within 1 % of FP32 at 4 bits
        out = reference.run(quantized, x).output * quantized.tensors[quantized.output].scale[0]
        assert np.abs(out - ref).mean() < bound * np.abs(ref).mean(), quantized.config
    tables = [n for n in model.nodes if n.op == "activation"]
    # a table serves channels of many scales (spec 5.4.2): its input keeps DQA, its output a scale per channel
    assert any(np.ptp(model.tensors[n.inputs[0]].scale) > 0 and model.tensors[n.inputs[0]].important.any()
               for n in tables)
    assert all(model.tensors[n.output].extra_bits == 0 and np.ptp(model.tensors[n.output].scale) > 0
               for n in tables if n.output != model.output)


def test_multiply_by_a_constant_is_refused():
    class Scaled(nn.Module):
        def forward(self, x):
            return x * 0.5
    with pytest.raises(ir.GraphError, match="multiply by a constant"):
        import_module(nn.Sequential(nn.Conv2d(3, 3, 1), Scaled()), (8, 8, 3))


# -- subtraction: an add with a negative second multiplier (spec 5.4) --------------------------------

class DifferenceNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        d = F.relu(self.a(x) - self.b(x))
        return self.fc((d - self.c(d)).mean((2, 3)))


@pytest.fixture(scope="module")
def difference():
    return _random_net_case(lambda: DifferenceNet().eval(), 10, 48, seed=7)


def test_subtraction_follows_torch(difference):
    net, graph, x, model = difference
    assert [n.attrs.get("b_sign", 1) for n in graph.nodes if n.op == "add"] == [-1, -1]
    with torch.no_grad():
        ref = net(_nchw(x)).numpy()
    np.testing.assert_allclose(run_float(graph, x), ref, rtol=1e-4, atol=1e-5)
    out = reference.run(model, x).output * model.tensors[model.output].scale[0]
    assert np.abs(out - ref).mean() < 0.05 * np.abs(ref).mean()


# -- a fully connected autoencoder on real-valued feature vectors (features.py), as MLPerf Tiny's AD ----

FEATURES = 40


def _mixing() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(8, FEATURES)) * 3.0


def _feature_vectors(count: int, seed: int) -> np.ndarray:
    """Real-valued features on an 8-dimensional subspace, of unequal ranges and offsets, as log-mel
    frames are."""
    return (np.random.default_rng(seed).normal(size=(count, 8)) @ _mixing() - 20.0).astype(np.float32)


class Autoencoder(nn.Module):
    """Encodes onto the features' subspace as ReLU pairs (z = relu(z) - relu(-z)) and decodes: the
    reconstruction is exact in float, so what the test measures is quantization."""

    def __init__(self):
        super().__init__()
        mixing = _mixing()
        encode = np.linalg.pinv(mixing).T  # z = (x + 20) @ pinv(mixing)
        self.encode = nn.Linear(FEATURES, 16)
        self.hidden = nn.Linear(16, 16)
        self.decode = nn.Linear(16, FEATURES)
        with torch.no_grad():
            self.encode.weight.copy_(torch.from_numpy(np.concatenate([encode, -encode]).T.T))
            self.encode.bias.copy_(torch.from_numpy(20.0 * np.concatenate([encode, -encode]).sum(1)))
            self.hidden.weight.copy_(torch.eye(16))
            self.hidden.bias.zero_()
            self.decode.weight.copy_(torch.from_numpy(np.concatenate([mixing, -mixing]).T))
            self.decode.bias.fill_(-20.0)

    def forward(self, x):
        return self.decode(F.relu(self.hidden(F.relu(self.encode(x)))))


@pytest.fixture(scope="module")
def autoencoder():
    """The autoencoder, its optimized graph, calibration feature codes and DQA n = 4 model."""
    from dqa_mcu.quantize.features import feature_codes, feature_normalization
    net, calib = Autoencoder().eval(), _feature_vectors(500, 1)
    normalization = feature_normalization(calib)
    graph = passes.optimize(import_module(net, (FEATURES,), normalization))
    codes = feature_codes(calib, normalization)
    return net, graph, normalization, codes, quantize(graph, calibrate(graph, codes, show_progress=False), DQA4,
                                                       codes)


def test_a_vector_autoencoder_is_a_graph_of_linear_layers_on_feature_codes(autoencoder):
    from dqa_mcu.quantize.features import feature_codes
    net, graph, normalization, _, model = autoencoder
    assert graph.shapes[graph.input] == (1, 1, FEATURES) and [n.op for n in graph.nodes[1:]] == ["linear"] * 3
    x = _feature_vectors(200, 2)
    codes = feature_codes(x, normalization)
    assert codes.shape == (200, 1, 1, FEATURES) and codes.dtype == np.uint8
    span = 1 / np.asarray(normalization.std)
    lo = -np.asarray(normalization.mean) * span
    dequantized = lo + codes.reshape(len(x), -1) * span / 255
    inside = (x >= lo) & (x <= lo + span)  # the calibration range; beyond it codes saturate
    assert inside.mean() > 0.95
    assert (np.abs(dequantized - x) <= span / 255 / 2 + 1e-5)[inside].all()  # half a step
    with torch.no_grad():  # the float graph is the module on the dequantized codes
        ref = net(torch.from_numpy(dequantized.astype(np.float32))).numpy()
    np.testing.assert_allclose(run_float(graph, codes), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    fp32 = evaluate.reconstruction_mse(run_float(graph, codes), x)
    int8, dqa4 = (evaluate.eval_quantized(label, m, codes, x, show_progress=False, task=evaluate.task("ae")).accuracy
                  for label, m in (("int8", quantize(graph, calibrate(graph, codes, show_progress=False),
                                                     QuantConfig(bits=8, extra_bits=0), codes)), ("dqa4", model)))
    assert fp32 < 0.01 * x.var() and int8 < 2 * fp32 and dqa4 < 0.1 * x.var(), (fp32, int8, dqa4, x.var())


def test_the_cli_scores_exports_and_runs_an_autoencoder_on_feature_files(autoencoder, tmp_path, capsys):
    net = autoencoder[0]
    torch.jit.save(torch.jit.script(net), tmp_path / "ae.pt")
    np.savez(tmp_path / "calib.npz", x=_feature_vectors(500, 1))
    np.savez(tmp_path / "test.npz", x=_feature_vectors(100, 2))
    common = ["--task", "ae", "--calib", str(tmp_path / "calib.npz")]
    assert cli.main(["eval", str(tmp_path / "ae.pt"), "--data", str(tmp_path / "test.npz"), "--bits-list", "4",
                     *common]) == 0
    table = capsys.readouterr().out
    assert "reconstruction MSE" in table and "DQA 4-bit" in table
    out = tmp_path / "ae"
    assert cli.main(["export", str(tmp_path / "ae.pt"), "--bits", "4", "--target", "host", "--no-build", "-o",
                     str(out), *common]) == 0
    assert cli.main(["run", str(out), "--task", "ae", "--data", str(tmp_path / "test.npz"), "-n", "5"]) == 0
    assert "reconstruction MSE" in capsys.readouterr().out


def test_rankings_and_recommend_follow_the_output_error_of_a_regression_model(autoencoder, tmp_path, capsys):
    from dqa_mcu.quantize.greedy import RankingError, greedy_search, taylor_search
    net, graph, _, codes, _ = autoencoder
    calib = calibrate(graph, codes, show_progress=False)
    ranked = taylor_search(graph, calib, DQA4, codes[:100], show_progress=False, regress=True)
    assert ranked.meta["scoring"] == "fp32-outputs" and all(np.isfinite(s).all() for s in ranked.scores.values())
    with pytest.raises(RankingError, match="--rank taylor"):
        greedy_search(graph, calib, DQA4, codes[:100], show_progress=False, regress=True)
    torch.jit.save(torch.jit.script(net), tmp_path / "ae.pt")
    np.savez(tmp_path / "calib.npz", x=_feature_vectors(300, 1))
    assert cli.main(["recommend", str(tmp_path / "ae.pt"), "--task", "ae", "--calib", str(tmp_path / "calib.npz"),
                     "--bits-budget", "4.5", "--extra-bits-list", "2"]) == 0
    printed = capsys.readouterr().out
    assert "output error / FP32 power" in printed and "recommended:" in printed


# -- every network above in C: bit-exact under ASan + UBSan on the host and under QEMU cortex-m7 ------

NETWORKS = ("mobilenetv2", "sr", "unet", "leaky_relu", "clamp", "squeeze_excite", "subtraction", "autoencoder")


def _network_case(name: str, request) -> tuple:
    """(quantized model, a few of its inputs) of one network above: DQA n = 4, m = 3 (the LeakyReLU
    net: n = 6, m = 2)."""
    test_x = request.getfixturevalue("cifar_test")[0][::400]
    if name == "mobilenetv2":
        return request.getfixturevalue("mobilenet"), test_x
    if name == "sr":
        _, graph, calib, calib_x, task = request.getfixturevalue("sr")
        return quantize(graph, calib, DQA4, calib_x), task.inputs(test_x)
    fixture = {"unet": "unet", "leaky_relu": "leaky", "clamp": "clamped", "squeeze_excite": "mobilenetv3_block",
               "subtraction": "difference", "autoencoder": "autoencoder"}[name]
    *_, x, model = request.getfixturevalue(fixture)
    return model, x[:3]


@pytest.mark.parametrize("name", NETWORKS)
def test_network_is_bit_exact_on_the_host_with_sanitizers(name, request, tmp_path):
    model, images = _network_case(name, request)
    report = export_and_run(model, images, "host", tmp_path / "host", sanitize=True)
    assert report["bit_exact"], report["mismatched_images"]


@pytest.mark.slow
@pytest.mark.parametrize("name", NETWORKS)
def test_network_is_bit_exact_on_cortex_m7(name, request, tmp_path):
    require_arm()
    model, images = _network_case(name, request)
    report = export_and_run(model, images, "cortex-m7", tmp_path / "m7")
    assert report["bit_exact"], report["mismatched_images"]


def test_keras_squeeze_excite_and_table_activations_match_keras_and_are_bit_exact(tf, tmp_path):
    from dqa_mcu.frontends.keras_import import load_keras
    layers = tf.keras.layers
    tf.keras.utils.set_random_seed(1)
    inp = tf.keras.Input((12, 12, 3))
    x = layers.Activation("hard_swish")(layers.Conv2D(16, 3, padding="same")(inp))
    gate = layers.Reshape((1, 1, 16))(layers.GlobalAveragePooling2D()(x))
    gate = layers.Dense(16, activation="hard_sigmoid")(layers.Dense(8, activation="relu")(gate))
    x = layers.Multiply()([x, gate])
    x = layers.Conv2D(8, 1, activation="swish")(x)
    x = layers.Activation("tanh")(layers.Conv2D(8, 1, activation="sigmoid")(x))
    model = tf.keras.Model(inp, layers.Dense(4)(layers.GlobalAveragePooling2D()(x)))
    model.save(tmp_path / "se.keras")
    graph = passes.optimize(load_keras(tmp_path / "se.keras", None))
    assert sorted(n.attrs["function"] for n in graph.nodes if n.op == "activation") == [
        "hardsigmoid", "hardswish", "sigmoid", "silu", "tanh"]
    x = np.random.default_rng(8).integers(0, 256, (48, 12, 12, 3), dtype=np.uint8)
    ref = model.predict(x[:8].astype(np.float32), verbose=0)
    np.testing.assert_allclose(run_float(graph, x[:8]), ref, rtol=1e-4, atol=1e-4 * np.abs(ref).max())
    quantized = quantize(graph, calibrate(graph, x, show_progress=False), DQA4, x)
    report = export_and_run(quantized, x[:3], "host", tmp_path / "host", sanitize=True)
    assert report["bit_exact"], report["mismatched_images"]
