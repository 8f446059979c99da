"""Memory planner invariants, image folders, and one-line CLI errors."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from dqa_mcu.codegen import planner
from dqa_mcu.quantize.calibrate import load_images, subsample
from dqa_mcu.quantize.quantizer import QuantConfig, quantize


@pytest.fixture(scope="module")
def dqa3(resnet20, cifar_calib):
    graph, calib = resnet20
    return quantize(graph, calib, QuantConfig(bits=3), cifar_calib)


def test_live_blocks_never_overlap_and_the_peak_is_tight(dqa3):
    plan = planner.plan(dqa3, "layer")
    blocks = plan.blocks
    for i, a in enumerate(blocks):
        assert a.offset % planner.ALIGN == 0 and a.offset + a.size <= plan.arena_bytes
        for b in blocks[i + 1:]:
            if a.first <= b.last and b.first <= a.last:  # alive at the same step
                assert a.offset + a.size <= b.offset or b.offset + b.size <= a.offset, (a.name, b.name)
    # no plan can beat the largest set of blocks alive at one step
    steps = range(len(dqa3.nodes))
    live = max(sum(b.size for b in blocks if b.first <= s <= b.last) for s in steps)
    assert live <= plan.arena_bytes <= 1.25 * live


def test_every_stored_tensor_and_kernel_scratch_is_planned(dqa3):
    plan = planner.plan(dqa3, "layer")
    names = {b.name for b in plan.blocks}
    stored = {dqa3.storage_of(t).name for t in dqa3.tensors}
    assert stored <= names
    kernels = [n for n in dqa3.nodes if planner.scratch_bytes(n, dqa3)]
    assert {f"{n.name}/scratch" for n in kernels} <= names
    # the DQA error stream lives right after its code plane
    t = dqa3.tensors["layer1_0_conv1"]
    block = plan.block(t.name)
    assert block.size >= block.plane_bytes + t.stream_bytes > block.plane_bytes


def test_images_from_a_folder(tmp_path):
    from PIL import Image
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(3, 8, 6, 3), dtype=np.uint8)
    for i, img in enumerate(pixels):
        Image.fromarray(img).save(tmp_path / f"img{i}.png")
    x, y = load_images(tmp_path, (8, 6, 3))
    assert y is None and np.array_equal(x, pixels)


def test_subsample_keeps_every_class():
    y = np.repeat(np.arange(10), 500)
    (picked,) = subsample(1000, y)
    assert np.array_equal(np.bincount(picked), np.full(10, 100))


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "dqa_mcu.cli", *args], capture_output=True, text=True)


def test_a_pickle_without_trust_is_refused_in_one_line(tmp_path):
    path = tmp_path / "whole.pt"
    torch.save(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3)), path)
    np.savez(tmp_path / "c.npz", x=np.zeros((2, 8, 8, 3), dtype=np.uint8))
    proc = run_cli("export", str(path), "--target", "host", "--calib", str(tmp_path / "c.npz"), "-o", str(tmp_path / "o"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--trust-pickle" in lines[0] and "Traceback" not in proc.stderr


def test_bits_out_of_range_is_refused_in_one_line(tmp_path):
    np.savez(tmp_path / "c.npz", x=np.zeros((2, 8, 8, 3), dtype=np.uint8))
    proc = run_cli("export", "missing.th", "--arch", "resnet20", "--target", "host", "--bits", "9",
                   "--calib", str(tmp_path / "c.npz"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "dqa-mcu: error: --bits 9 is out of range: activations take 2..8 bits"]


def test_a_missing_model_file_is_named(tmp_path):
    np.savez(tmp_path / "c.npz", x=np.zeros((2, 8, 8, 3), dtype=np.uint8))
    proc = run_cli("export", "missing.th", "--arch", "resnet20", "--target", "host", "--calib", str(tmp_path / "c.npz"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == ["dqa-mcu: error: missing.th: no such file"]
