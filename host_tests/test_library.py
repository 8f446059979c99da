"""A generated model linked into an application outside the project, built and run on the host.

The application (APP_MAIN, the README's example with a loop) reads model inputs from stdin and
prints each output; it links an export (a DQA model and an int8 TFLite model) once through CMake
(add_subdirectory + target_link_libraries(app dqa_model)) and once through the Makefile fragment
dqa_model.mk. Its outputs must equal the NumPy reference's (np.array_equal). The top-level
CMakeLists.txt builds the runtime library and runs its C unit tests with CTest.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from dqa_mcu import api
from dqa_mcu.frontends import passes
from dqa_mcu.frontends.tflite_import import load_tflite
from dqa_mcu.frontends.torch_import import import_module
from dqa_mcu.quantize.calibrate import calibrate
from dqa_mcu.quantize.quantizer import QuantConfig, quantize
from dqa_mcu.reference import dqa as reference
from dqa_mcu.reference.tflite import TFLiteReference

from conftest import shared_file

ROOT = Path(__file__).resolve().parents[1]
WARNINGS = "-Wall -Wextra -Werror"  # the generated C and the runtime must be clean in the application's build

APP_MAIN = r"""
#include <stdio.h>

#include "model.h"

int main(void)
{
    dqa_status_t status;
    if (dqa_model_init() != 0) {
        return 2;
    }
    while (fread(dqa_model_input(), 1, DQA_MODEL_INPUT_BYTES, stdin) == DQA_MODEL_INPUT_BYTES) {
        dqa_model_run(&status, NULL);
        for (int i = 0; i < DQA_MODEL_OUTPUT_COUNT; ++i) {
            printf("%d ", dqa_model_output()[i]);
        }
        printf("%lu\n", (unsigned long)status.overflowed_tensors);
    }
    return 0;
}
"""


def _require(*tools: str):
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found: ./install.sh installs it")


def _run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, capture_output=True, **kwargs)
    assert proc.returncode == 0, f"{' '.join(cmd)}:\n{proc.stdout[-3000:]!r}\n{proc.stderr[-3000:]!r}"
    return proc


class Residual(nn.Module):
    """conv-BN-ReLU, a conv with a residual add, max pooling, global pooling, a classifier."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.head = nn.Linear(8, 10)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(self.conv(x) + x)
        x = nn.functional.max_pool2d(x, 2).mean(dim=(2, 3))
        return self.head(x)


@pytest.fixture(scope="module")
def dqa_export(tmp_path_factory):
    """(export folder, uint8 input images, reference outputs) of a small DQA 4-bit model."""
    torch.manual_seed(0)
    module = Residual().eval()
    images = np.random.default_rng(0).integers(0, 256, (24, 12, 12, 3), dtype=np.uint8)
    graph = passes.optimize(import_module(module, images.shape[1:]))
    model = quantize(graph, calibrate(graph, images[:16], show_progress=False), QuantConfig(bits=4), images[:16])
    out = tmp_path_factory.mktemp("library") / "dqa"
    api.export_project(model, out, "host", "test model", images[16:], None, None, log=lambda *a: None)
    expected = reference.run(model, images[16:])
    return out, images[16:], np.column_stack([expected.output.reshape(8, -1), expected.overflowed_tensors])


@pytest.fixture(scope="module")
def s8_export(tmp_path_factory):
    """The same for MLPerf Tiny's int8 ResNet-8 (TFLite-exact mode); int8 inputs."""
    graph = load_tflite(shared_file("models/mlperf_tiny_ic_resnet8_int8.tflite"))
    pixels = np.load(shared_file("data/cifar10_test.npz"))["x"][::625]
    images = (pixels.astype(np.int16) - 128).astype(np.int8)  # the model's input quantization
    out = tmp_path_factory.mktemp("library") / "s8"
    api.export_s8_project(graph, out, "host", str(graph.source), images, None, None, log=lambda *a: None)
    expected = TFLiteReference(graph).run(images).reshape(len(images), -1)
    return out, images, np.column_stack([expected, np.zeros(len(images), np.int64)])


@pytest.fixture(params=["dqa", "s8"])
def export(request):
    return request.getfixturevalue(f"{request.param}_export")


def _app_outputs(exe: Path, images: np.ndarray) -> np.ndarray:
    text = _run([str(exe)], input=images.tobytes()).stdout.decode()
    return np.array([[int(v) for v in line.split()] for line in text.splitlines()], dtype=np.int64)


def test_an_application_links_the_model_with_cmake(export, tmp_path):
    _require("cmake", "gcc")
    out, images, expected = export
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.c").write_text(APP_MAIN)
    (app / "CMakeLists.txt").write_text(
        "cmake_minimum_required(VERSION 3.16)\nproject(app C)\n"
        f'add_subdirectory("{out}" model)\n'  # a folder outside the application: name its build folder
        "add_executable(app main.c)\ntarget_link_libraries(app PRIVATE dqa_model)\n")
    build = tmp_path / "build"
    _run(["cmake", "-S", str(app), "-B", str(build), f"-DCMAKE_C_FLAGS={WARNINGS}"], text=True)
    _run(["cmake", "--build", str(build), "-j", "2"], text=True)
    assert np.array_equal(_app_outputs(build / "app", images), expected)


def _readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    start = text.index("```c\n", text.index("## Call the model from your application")) + len("```c\n")
    return text[start:text.index("```", start)]


def test_an_application_links_the_model_with_the_makefile_fragment(export, tmp_path):
    _require("make", "gcc")
    out, images, expected = export
    app = tmp_path / "app"
    app.mkdir()
    (app / "app.c").write_text(APP_MAIN)
    (app / "readme.c").write_text(_readme_example())  # the README's example builds as it is shown
    (app / "Makefile").write_text(f"include {out}/dqa_model.mk\n"
                                  "all: app readme\n"
                                  "app readme: %: %.c $(DQA_MODEL_SOURCES)\n"
                                  "\t$(CC) $(CFLAGS) $(DQA_MODEL_CFLAGS) $^ -o $@\n")
    _run(["make", "-C", str(app), "-j", "2", "CC=gcc", f"CFLAGS=-O2 {WARNINGS}"], text=True)
    assert np.array_equal(_app_outputs(app / "app", images), expected)
    assert subprocess.run([str(app / "readme")]).returncode in (0, 1)  # 1: a stream overflowed on zeros


def test_the_runtime_library_builds_and_its_unit_tests_pass_with_ctest(tmp_path):
    _require("cmake", "gcc", "ctest")
    _run(["cmake", "-S", str(ROOT), "-B", str(tmp_path)], text=True)
    _run(["cmake", "--build", str(tmp_path), "-j", "2"], text=True)
    assert (tmp_path / "firmware" / "runtime" / "libdqa_runtime.a").exists()
    proc = _run(["ctest", "--test-dir", str(tmp_path), "--output-on-failure"], text=True)
    assert "100% tests passed" in proc.stdout
