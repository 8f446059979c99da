"""PyTorch import -> graph passes -> float executor, checked against torch itself."""
import os
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from dqa_mcu import ir
from dqa_mcu.frontends import passes, torch_import, zoo
from dqa_mcu.frontends.torch_import import import_module, load_torch_model
from dqa_mcu.reference.float_exec import run_float

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MODELS = SHARED / "models"
TEST_NPZ = SHARED / "data" / "cifar10_test.npz"
# blocks per model and (stride, channel offset) of the two option-A shortcuts
BLOCKS = {"resnet20": 9, "resnet32": 15}


@pytest.fixture(scope="module")
def images():
    if not TEST_NPZ.exists():
        pytest.fail(f"{TEST_NPZ} is missing: tests read ../shared beside the project")
    x = np.load(TEST_NPZ)["x"]
    return x[::5]  # 1,000 images, 100 per class (rows are grouped by class)


def torch_logits(model, pixels, norm):
    x = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() * norm.pixel_scale
    x = (x - torch.tensor(norm.mean).view(1, -1, 1, 1)) / torch.tensor(norm.std).view(1, -1, 1, 1)
    with torch.no_grad():
        return model(x).numpy()


def checkpoint(arch):
    path = MODELS / f"{arch}_cifar10.th"
    if not path.exists():
        pytest.fail(f"{path} is missing: tests read ../shared beside the project")
    return path


@pytest.fixture(scope="module")
def all_images():
    return np.load(TEST_NPZ)["x"]


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["resnet20", "resnet32"])
def test_pretrained_resnet_float_matches_torch(arch, all_images):
    """All 5,000 test images: the same argmax as torch on at least 99.9 %."""
    images = all_images
    model, norm = load_torch_model(checkpoint(arch), arch=arch)
    assert norm == zoo.CIFAR_NORMALIZATION
    graph = import_module(model, (32, 32, 3), norm)
    opt = passes.optimize(graph)

    # the passes leave only convs (BN folded, ReLU fused, shortcuts fused), pooling and linear
    ops = [n.op for n in opt.nodes]
    assert set(ops) == {"input", "conv2d", "global_avgpool", "linear"}
    fused = [n for n in opt.nodes if n.op == "conv2d" and len(n.inputs) == 2]
    assert len(fused) == BLOCKS[arch]
    assert all(n.attrs["act"] == "relu" for n in opt.nodes if n.op == "conv2d")
    views = sorted((n.attrs["residual_stride"], n.attrs["residual_channel_offset"]) for n in fused)
    assert views[-2:] == [(2, 8), (2, 16)] and views[0] == (1, 0)
    assert "layer1_0_conv1" in [n.name for n in opt.nodes]
    assert opt.shapes["layer3_0_conv2"] == (8, 8, 64)

    ref = torch_logits(model, images, norm)
    out = run_float(opt, images)
    assert out.shape == (len(images), 10)
    assert np.mean(out.argmax(1) == ref.argmax(1)) >= 0.999
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=2e-4)
    # the unoptimized graph (batchnorm, relu, add, slice, pad_channels nodes) agrees too
    np.testing.assert_allclose(run_float(graph, images[:16]), ref[:16], rtol=1e-4, atol=2e-4)


def test_collect_sees_every_tensor(images):
    model, norm = load_torch_model(checkpoint("resnet20"), arch="resnet20")
    opt = passes.optimize(import_module(model, (32, 32, 3), norm))
    seen = {}
    run_float(opt, images[:10], collect=lambda name, a: seen.setdefault(name, []).append(a.shape), batch_size=4)
    assert set(seen) == {n.output for n in opt.nodes}
    assert [s[0] for s in seen["conv1"]] == [4, 4, 2]
    assert seen["conv1"][0][1:] == opt.shapes["conv1"]


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.jit is deprecated in torch 2.13
def test_torchscript_and_export_match_state_dict(tmp_path, images):
    model, norm = load_torch_model(checkpoint("resnet20"), arch="resnet20")
    ref_graph = passes.optimize(import_module(model, (32, 32, 3), norm))
    x = images[::100]
    ref = run_float(ref_graph, x)
    example = torch.randn(2, 3, 32, 32)
    torch.jit.trace(model, example, check_trace=False).save(tmp_path / "traced.pt")
    torch.jit.script(model).save(tmp_path / "scripted.pt")
    torch.export.save(torch.export.export(model, (example[:1],)), tmp_path / "model.pt2")
    for name in ("traced.pt", "scripted.pt", "model.pt2"):
        m, n = load_torch_model(tmp_path / name, arch="resnet20")
        g = passes.optimize(import_module(m, (32, 32, 3), n))
        assert [(nd.name, nd.op) for nd in g.nodes] == [(nd.name, nd.op) for nd in ref_graph.nodes], name
        np.testing.assert_allclose(run_float(g, x), ref, rtol=1e-5, atol=1e-5, err_msg=name)
    # without arch the normalization is the documented default
    _, n = load_torch_model(tmp_path / "model.pt2")
    assert n.pixel_scale == pytest.approx(1 / 255) and n.mean == (0.0,) and n.std == (1.0,)


def _segfault():
    os.kill(os.getpid(), signal.SIGSEGV)


def _raise():
    raise KeyError("damaged")


def test_the_converter_probe_survives_a_crash_in_its_child():
    """What runs torch's TorchScript converter first (docs/reliability.md): a crash in the child is named,
    this process goes on; an exception there is left to the caller's own run."""
    assert torch_import.probe_in_a_child(_segfault) == "it crashed (SIGSEGV)"
    assert torch_import.probe_in_a_child(_raise) is None


def test_a_crash_in_torchs_torchscript_converter_is_one_line(tmp_path, monkeypatch):
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU()).eval()
    torch.jit.script(model).save(tmp_path / "model.ts.pt")
    loaded, norm = load_torch_model(tmp_path / "model.ts.pt")
    monkeypatch.setattr(torch_import, "probe_in_a_child", lambda work, *args: "it crashed (SIGSEGV)")
    with pytest.raises(ir.GraphError, match=r"^torch's TorchScript converter failed on this archive: it crashed "
                                            r"\(SIGSEGV\); the archive is probably damaged\. Export the model"):
        import_module(loaded, (8, 8, 3), norm)


def test_whole_pickle_needs_trust(tmp_path, images):
    model, norm = load_torch_model(checkpoint("resnet20"), arch="resnet20")
    path = tmp_path / "whole.pt"
    torch.save(model, path)
    with pytest.raises(ValueError, match="pickle that runs code.*--trust-pickle"):
        load_torch_model(path)
    m, n = load_torch_model(path, trust_pickle=True)
    assert n == zoo.CIFAR_NORMALIZATION
    x = images[:4]
    np.testing.assert_allclose(run_float(passes.optimize(import_module(m, (32, 32, 3), n)), x),
                               torch_logits(model, x, norm), rtol=1e-4, atol=2e-4)


def test_state_dict_errors(tmp_path):
    with pytest.raises(ValueError, match="resnet20.*resnet32.*resnet44.*resnet56"):
        load_torch_model(checkpoint("resnet20"), arch="resnet99")
    with pytest.raises(ValueError, match="--arch"):
        load_torch_model(checkpoint("resnet20"))
    sd = zoo.build("resnet20").state_dict()
    del sd["layer2.1.conv1.weight"]
    sd["head.fc.weight"] = torch.zeros(3)
    path = tmp_path / "sd.pt"
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}}, path)
    with pytest.raises(ValueError) as e:
        load_torch_model(path, arch="resnet20")
    msg = str(e.value)
    assert "missing" in msg and "layer2.1.conv1.weight" in msg
    assert "unexpected" in msg and "head.fc.weight" in msg
    # a raw state_dict with prefixes loads
    good = zoo.build("resnet20").state_dict()
    torch.save({"module." + k: v for k, v in good.items()}, path)
    m, _ = load_torch_model(path, arch="resnet20")
    assert torch.equal(m.linear.weight, good["linear.weight"])


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 1)

    def forward(self, x):
        return torch.erf(self.conv(x))  # no integer kernel


class WithErf(nn.Module):
    def __init__(self):
        super().__init__()
        self.layer1 = nn.Sequential(Block())

    def forward(self, x):
        return self.layer1(x).mean((2, 3))


def test_unsupported_op_names_node_and_op():
    with pytest.raises(ir.GraphError, match=r"unsupported op at node 'erf' \(call_function torch\.erf\)"):
        import_module(WithErf().eval(), (8, 8, 3))
    ep = torch.export.export(WithErf().eval(), (torch.randn(1, 3, 8, 8),))
    with pytest.raises(ir.GraphError, match=r"'.*erf.*' \(call_function aten\.erf\.default\)"):
        import_module(ep, (8, 8, 3))


class Mixed(nn.Module):
    """Depthwise, dilation, BN, relu6, maxpool, concat, upsample, avgpool, flatten (spatial) + linear."""

    def __init__(self):
        super().__init__()
        self.c = nn.Conv2d(3, 8, 3, padding=2, dilation=2)
        self.bn = nn.BatchNorm2d(8)
        self.dw = nn.Conv2d(8, 8, 3, groups=8, padding=1, bias=False)
        self.pw = nn.Conv2d(16, 12, 1)
        self.e = nn.Conv2d(12, 12, (3, 1), stride=(2, 1), padding=(1, 0))
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(12 * 4 * 8, 5)

    def forward(self, x):
        y = F.relu6(self.bn(self.c(x)))
        y = self.dw(y)
        y = torch.cat([y, F.max_pool2d(y, 3, 1, 1)], 1)
        y = self.relu(self.pw(y))
        y = F.interpolate(y, scale_factor=2, mode="nearest")
        y = self.pool(y)
        y = F.avg_pool2d(y, 3, stride=1, padding=1)
        y = torch.relu(self.e(y))
        return self.fc(torch.flatten(y, 1))


def _random_bn(model):
    torch.manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
                m.weight.uniform_(0.5, 2)
                m.bias.uniform_(-1, 1)
    return model.eval()


def _pixels(n, h, w):
    return np.random.default_rng(0).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_mixed_ops_match_torch():
    torch.manual_seed(1)
    model = _random_bn(Mixed())
    norm = zoo.Normalization(1 / 255, (0.5, 0.4, 0.3), (0.2, 0.3, 0.25))
    x = _pixels(16, 8, 8)
    ref = torch_logits(model, x, norm)
    for src in (model, torch.export.export(model, (torch.randn(1, 3, 8, 8),))):
        g = import_module(src, (8, 8, 3), norm)
        ops = {n.op for n in g.nodes}
        assert {"batchnorm", "relu6", "maxpool", "avgpool", "concat", "upsample_nearest", "flatten",
                "linear"} <= ops
        assert any(n.op == "conv2d" and n.attrs["groups"] == 8 for n in g.nodes)
        assert any(n.op == "conv2d" and n.attrs["dilation"] == (2, 2) for n in g.nodes)
        assert g.shapes[[n for n in g.nodes if n.op == "flatten"][0].output] == (1, 1, 384)
        opt = passes.optimize(g)
        assert not {"batchnorm", "relu", "relu6"} & {n.op for n in opt.nodes}
        np.testing.assert_allclose(run_float(g, x), ref, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(run_float(opt, x), ref, rtol=1e-4, atol=1e-5)


class SharedView(nn.Module):
    """A shortcut view also read by a conv stays a slice + pad; conv + later-conv residual fusion."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 4, 3, padding=1)
        self.b = nn.Conv2d(8, 8, 3, padding=1)
        self.c1 = nn.Conv2d(8, 8, 1)
        self.c2 = nn.Conv2d(8, 8, 1)

    def forward(self, x):
        y = F.relu(self.a(x))
        s = F.pad(y[:, :, ::2, ::2], (0, 0, 0, 0, 2, 2))
        z = self.b(s) + s
        z = self.c1(z) + F.relu(F.max_pool2d(self.c2(z), 3, 1, 1))
        return z


def test_shared_view_and_residual_order():
    model = SharedView().eval()
    norm = zoo.Normalization(1 / 255, (0.5,), (0.25,))
    x = _pixels(4, 8, 8)
    ref = torch_logits(model, x, norm).transpose(0, 2, 3, 1)
    g = passes.optimize(import_module(model, (8, 8, 3), norm))
    ops = [n.op for n in g.nodes]
    assert "slice" in ops and "pad_channels" in ops and "add" not in ops and "relu" not in ops
    c1 = g.node("c1")  # relu moved through the maxpool into c2; c1 fused at the add's place
    assert len(c1.inputs) == 2 and g.node("c2").attrs["act"] == "relu"
    assert ops.index("conv2d", ops.index("maxpool")) == [n.name for n in g.nodes].index("c1")
    assert len(g.node("b").inputs) == 2
    np.testing.assert_allclose(run_float(g, x), ref, rtol=1e-4, atol=1e-5)


def test_passes_do_not_mutate_and_errors_name_nodes():
    model, norm = load_torch_model(checkpoint("resnet20"), arch="resnet20")
    g = import_module(model, (32, 32, 3), norm)
    before = [(n.name, n.op, list(n.inputs), dict(n.attrs)) for n in g.nodes]
    w = g.node("conv1").params["weight"].copy()
    passes.optimize(g)
    assert [(n.name, n.op, list(n.inputs), dict(n.attrs)) for n in g.nodes] == before
    assert np.array_equal(g.node("conv1").params["weight"], w)

    class BNAfterPool(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 4, 1)
            self.bn = nn.BatchNorm2d(4)

        def forward(self, x):
            return self.bn(F.avg_pool2d(self.c(x), 2))

    with pytest.raises(ir.GraphError, match="batchnorm 'bn'"):
        passes.optimize(import_module(BNAfterPool().eval(), (8, 8, 3)))

    class FlattenNoLinear(nn.Module):
        def forward(self, x):
            return F.relu(torch.flatten(x, 1))

    with pytest.raises(ir.GraphError, match="flatten"):
        import_module(FlattenNoLinear(), (4, 4, 3))

    class AvgNoPad(nn.Module):
        def forward(self, x):
            return F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)

    with pytest.raises(ir.GraphError, match="count_include_pad"):
        import_module(AvgNoPad(), (4, 4, 3))
