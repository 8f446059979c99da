"""The paper's own setting (block outputs only, dynamic signed max-abs, FP32 weights)."""
import numpy as np
import pytest
import torch

from dqa_mcu.research import paper_sim
from dqa_mcu.research.paper_sim import PaperScheme, block_points, paper_accuracy, paper_greedy_rankings

from conftest import shared_file


@pytest.fixture(scope="module")
def r20():
    from dqa_mcu.frontends.torch_import import load_torch_model
    return load_torch_model(shared_file("models/resnet20_cifar10.th"), arch="resnet20")


@pytest.fixture(scope="module")
def test_subset():
    data = np.load(shared_file("data/cifar10_test.npz"))
    return data["x"][::10], data["y"][::10]  # 500 images, 50 per class


def test_points_are_the_residual_block_outputs(r20):
    module, _ = r20
    points = block_points(module)
    assert len(points) == 9 and points[0] == "layer1.0" and points[-1] == "layer3.2"


def test_quantizer_is_the_papers():
    x = torch.tensor([[-1.0, -0.26, 0.0, 0.3, 0.74, 1.0]]).view(1, 1, 1, 6)
    s = PaperScheme("direct", bits=3)  # scale = max|x| / 4: levels -4..3
    y = s.quantize("p", x).flatten().tolist()
    assert y == pytest.approx([-1.0, -0.25, 0.0, 0.25, 0.75, 0.75])  # the max itself clips to 3 steps
    dqa = PaperScheme("dqa", bits=3, extra_bits=3, important={"p": torch.tensor([True])})
    fine = dqa.quantize("p", x).flatten()  # 6 bits: scale = 1 / 32
    assert torch.allclose(fine, torch.round(x.flatten() * 32).clamp(-32, 31) / 32)
    # dynamic ranges are per batch slice: two stacked copies keep their own maxima
    two = torch.cat([x, 2 * x])
    assert torch.allclose(s.quantize("p", two, groups=2)[1], 2 * s.quantize("p", x)[0])


def test_direct_8_bit_matches_fp32_and_3_bit_loses(r20, test_subset):
    module, norm = r20
    x, y = test_subset
    fp32 = paper_accuracy(module, norm, x, y, "fp32")
    assert fp32 > 75
    assert abs(paper_accuracy(module, norm, x, y, "direct", 8) - fp32) <= 1.0
    direct3 = paper_accuracy(module, norm, x, y, "direct", 3)
    assert direct3 < fp32 - 10
    calib = np.load(shared_file("data/cifar10_calib.npz"))["x"][::10]
    dqa3 = paper_accuracy(module, norm, x, y, "dqa", 3, importance="range", calib_images=calib)
    assert dqa3 > direct3 + 5  # DQA's extra bits on 40 % of the channels help a lot at 3 bits
    static3 = paper_accuracy(module, norm, x, y, "direct", 3, ranges="static", calib_images=calib)
    assert static3 < fp32 - 10
    noisy = paper_accuracy(module, norm, x, y, "noisyquant", 3, calib_images=calib)
    assert 10 < noisy < fp32


def test_paper_greedy_rankings(r20):
    module, norm = r20
    data = np.load(shared_file("data/cifar10_calib.npz"))
    x, y = data["x"][::100], data["y"][::100]  # 50 images
    rankings = paper_greedy_rankings(module, norm, x, y, 3, batch=25, show_progress=False)
    assert list(rankings) == block_points(module)
    for p, order in rankings.items():
        assert sorted(order.tolist()) == list(range(paper_sim._channels(module, p)))
    # the fused block executor is the module's forward
    net = paper_sim._FusedResNet(module)
    inp = paper_sim._to_input(x, norm)
    with torch.inference_mode():
        np.testing.assert_array_equal(paper_sim._fp32_pred(net, inp), module(inp).argmax(1).numpy())
