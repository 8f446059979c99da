"""C backend end to end: export -> build -> run (QEMU / host) == reference, bit for bit."""
import filecmp
import shutil
from dataclasses import replace

import numpy as np
import pytest

from dqa_mcu import api, cli
from dqa_mcu.codegen import planner
from dqa_mcu.device import build as fw
from dqa_mcu.frontends import passes
from dqa_mcu.quantize.calibrate import calibrate
from dqa_mcu.quantize.quantizer import QuantConfig, quantize
from dqa_mcu.targets import get_target

from conftest import load_resnet

QEMU_TARGETS = ["cortex-m3", "cortex-m4", "cortex-m33", "cortex-m55"]


def require_arm():
    for tool in ("arm-none-eabi-gcc", "qemu-system-arm", "cmake"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: ./install.sh installs the Arm toolchain and QEMU")


@pytest.fixture(scope="module")
def digits_model():
    """The demo's small residual CNN (conv, fused residual, stride 2, maxpool, GAP, linear), DQA 4-bit."""
    from dqa_mcu import demo
    from dqa_mcu.frontends.torch_import import import_module
    train_x, train_y, test_x, test_y = demo.digits_dataset()
    module = demo.train_digits_model(train_x, train_y, epochs=5)
    graph = passes.optimize(import_module(module, train_x.shape[1:], demo.DEMO_NORMALIZATION))
    model = quantize(graph, calibrate(graph, train_x, show_progress=False), QuantConfig(bits=4), train_x)
    return model, test_x[:16], test_y[:16]


def export_and_run(model, images, target, out, **run_args):
    api.export_project(model, out, target, "test model", images, None, None, log=lambda *a: None)
    return api.run_project(out, images, None, None, timeout=600, log=lambda *a: None, **run_args)


@pytest.mark.slow
@pytest.mark.parametrize("target", QEMU_TARGETS)
def test_small_model_is_bit_exact_on_each_core(digits_model, target, tmp_path):
    require_arm()
    model, images, _ = digits_model
    report = export_and_run(model, images, target, tmp_path / target)
    assert report["bit_exact"], report["mismatched_images"]
    assert report["instructions_per_inference"] > 0
    assert 0 < report["ram"] < 64 * 1024 and report["flash"] > 0


def test_small_model_is_bit_exact_on_the_host_with_sanitizers(digits_model, tmp_path):
    model, images, _ = digits_model
    report = export_and_run(model, images, "host", tmp_path / "host", sanitize=True)
    assert report["bit_exact"], report["mismatched_images"]


@pytest.mark.slow
def test_resnet20_dqa3_is_bit_exact_on_cortex_m7(cifar_test, cifar_calib, tmp_path):
    require_arm()
    graph = load_resnet("resnet20")
    calib_x = cifar_calib[::2]
    model = quantize(graph, calibrate(graph, calib_x, show_progress=False),
                     QuantConfig(bits=3, extra_bits=3, important_ratio=0.4), calib_x)
    images = cifar_test[0][::50]  # 20 images, 2 per class
    report = export_and_run(model, images, "cortex-m7", tmp_path / "r20")
    assert report["images"] == 20
    assert report["bit_exact"], report["mismatched_images"]
    # a per-layer profile came back for every kernel
    assert len(report["layers"]) == len([n for n in model.nodes if n.op != "input"])


def test_exports_are_byte_identical(digits_model, tmp_path):
    model, images, _ = digits_model
    for name in ("a", "b"):
        api.export_project(model, tmp_path / name, "cortex-m7", "test model", images, None, None,
                           log=lambda *a: None)
    cmp = filecmp.dircmp(tmp_path / "a", tmp_path / "b")

    def differences(c):
        found = c.diff_files + c.left_only + c.right_only + c.funny_files
        return found + [f for sub in c.subdirs.values() for f in differences(sub)]
    assert differences(cmp) == []
    generated = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert {"model.c", "model.h", "model_weights.c", "CMakeLists.txt", "main.c", "dqa"} <= set(generated)


# -- bad input ---------------------------------------------------------------------------

def test_unknown_target_lists_the_valid_ones(capsys):
    code = cli.main(["export", "x.th", "--arch", "resnet20", "--target", "cortex-m0", "--calib", "c.npz"])
    err = capsys.readouterr().err
    assert code == 2
    assert "unknown target 'cortex-m0'" in err and "cortex-m7" in err and "host" in err


def test_model_too_big_for_the_part_fails_at_export_with_numbers(digits_model, tmp_path):
    model, images, _ = digits_model
    with pytest.raises(cli.QuantizationError, match=r"activation arena of \d+ bytes does not fit cortex-m4's RAM of "
                                                    r"1000 bytes; use fewer bits"):
        api.export_project(model, tmp_path, "cortex-m4", "m", images, ram_bytes=1000, flash_bytes=None)
    with pytest.raises(cli.QuantizationError, match=r"weights, tables and test inputs need \d+ bytes and code up to "
                                                    r"57344: \d+ bytes, more than cortex-m4's flash of 2000"):
        api.export_project(model, tmp_path, "cortex-m4", "m", images, ram_bytes=None, flash_bytes=2000)


def test_the_fit_check_counts_code_stack_and_heap_to_the_byte(digits_model, tmp_path, monkeypatch):
    """Flash holds the constants and the code allowance, a board's RAM the arena and what its image keeps
    beside it: one byte less than needed is refused, exactly enough is written."""
    model, images, _ = digits_model
    board = get_target("nucleo-f446re")
    arena = planner.plan(model, planner.DEFAULT_SCHEDULE).arena_bytes  # as export plans it
    flash = sum(a.nbytes for n in model.nodes for a in n.arrays.values()) + images.nbytes + board.code_bytes
    with pytest.raises(cli.QuantizationError, match=f"more than nucleo-f446re's flash of {flash - 1} bytes"):
        api.export_project(model, tmp_path / "a", board.name, "m", images, ram_bytes=None, flash_bytes=flash - 1)
    api.export_project(model, tmp_path / "b", board.name, "m", images, ram_bytes=None, flash_bytes=flash)
    ram = arena + board.reserved_ram_bytes
    monkeypatch.setattr(api, "get_target", lambda name: replace(board, ram_bytes=ram - 1))
    with pytest.raises(cli.QuantizationError, match=f"nucleo-f446re's RAM of {ram - 1} bytes less "
                                                    f"{board.reserved_ram_bytes} for static variables, stack and heap"):
        api.export_project(model, tmp_path / "c", board.name, "m", images, ram_bytes=None, flash_bytes=None)
    monkeypatch.setattr(api, "get_target", lambda name: replace(board, ram_bytes=ram))
    api.export_project(model, tmp_path / "d", board.name, "m", images, ram_bytes=None, flash_bytes=None)


def test_missing_toolchain_names_the_debian_package(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(fw.BuildError, match="install the Debian package gcc-arm-none-eabi"):
        fw.require_tool("arm-none-eabi-gcc")
    with pytest.raises(fw.BuildError, match="apt-get install qemu-system-arm"):
        fw.require_tool("qemu-system-arm")


@pytest.mark.slow
def test_a_run_that_does_not_finish_is_stopped(digits_model, tmp_path):
    require_arm()
    model, images, _ = digits_model
    out = tmp_path / "slow"
    # 6,400 inferences: several seconds under QEMU however fast the kernels get
    api.export_project(model, out, "cortex-m7", "m", np.repeat(images, 400, axis=0), None, None, log=lambda *a: None)
    with pytest.raises(fw.BuildError, match=r"timed out after 1 s and was stopped"):
        api.run_project(out, None, None, None, timeout=1, log=lambda *a: None)
