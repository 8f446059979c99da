"""The Python API the CLI is a layer over: load a model file, quantize, export, run; plain results."""
import numpy as np
import pytest
import torch

import dqa_mcu
from dqa_mcu import api, demo
from dqa_mcu.codegen import planner
from dqa_mcu.quantize.quantizer import QuantConfig

from conftest import shared_file

TAYLOR4 = QuantConfig(bits=4, rank="taylor")


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    """The demo's CNN saved as TorchScript, loaded back through the API, and the digits data."""
    train_x, train_y, test_x, test_y = demo.digits_dataset()
    torch.manual_seed(0)
    module = demo.train_digits_model(train_x, train_y, epochs=2)
    path = tmp_path_factory.mktemp("digits") / "digits.pt"
    torch.jit.save(torch.jit.script(module), path)
    return dqa_mcu.load(path, train_x.shape[1:], demo.DEMO_NORMALIZATION), train_x[:300], test_x, test_y


def test_the_package_exposes_the_api_lazily():
    assert [dqa_mcu.load, dqa_mcu.quantize_model, dqa_mcu.export, dqa_mcu.run] == [
        api.load, api.quantize_model, api.export, api.run]
    with pytest.raises(AttributeError, match="no attribute 'exprot'"):
        dqa_mcu.exprot


def test_load_quantize_export_run_from_a_model_file(digits, tmp_path):
    graph, calib_x, test_x, test_y = digits
    model = dqa_mcu.quantize_model(graph, calib_x, TAYLOR4)
    assert model.config["rank"] == "taylor" and any(t.important.any() for t in model.tensors.values())
    written = dqa_mcu.export(model, tmp_path / "out", "host", test_x[:4], log=lambda *a: None)
    assert written == {"out": str(tmp_path / "out"), "target": "host", "mode": "dqa",
                       "arena_bytes": planner.plan(model, planner.DEFAULT_SCHEDULE).arena_bytes, "executable": None}
    report = dqa_mcu.run(tmp_path / "out", test_x[:8], test_y[:8], log=lambda *a: None)
    assert report["bit_exact"] and report["images"] == 8 and 0 <= report["accuracy"] <= 100


def test_a_memory_budget_is_met(digits):
    graph, calib_x, _, _ = digits
    whole = planner.plan(dqa_mcu.quantize_model(graph, calib_x, TAYLOR4), planner.DEFAULT_SCHEDULE).arena_bytes
    fitted = dqa_mcu.quantize_model(graph, calib_x, TAYLOR4, memory_budget=whole - 64)
    assert planner.plan(fitted, planner.DEFAULT_SCHEDULE).arena_bytes <= whole - 64


def test_an_int8_tflite_file_exports_in_its_own_arithmetic(tmp_path):
    written = dqa_mcu.export(shared_file("models/mlperf_tiny_ic_resnet8_int8.tflite"), tmp_path / "r8", "host",
                             log=lambda *a: None)
    assert written["mode"] == api.TFLITE_INT8_MODE and written["arena_bytes"] > 0
    report = dqa_mcu.run(tmp_path / "r8", log=lambda *a: None)
    assert report["bit_exact"] and report["images"] == 1
    assert np.load(tmp_path / "r8" / api.HARNESS_IMAGES_FILE)["x"].dtype == np.int8
