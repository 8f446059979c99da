"""Reliability of exports (docs/reliability.md): an export replaces its output folder whole or not at
all, never a folder of the user's own files, and the same inputs give byte-identical projects."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dqa_mcu import api, cli
from dqa_mcu.codegen import dqa as codegen
from dqa_mcu.device import build as fw
from dqa_mcu.frontends import passes
from dqa_mcu.frontends.torch_import import import_module
from dqa_mcu.quantize.calibrate import DataError, calibrate
from dqa_mcu.quantize.quantizer import QuantConfig, quantize
from dqa_mcu.targets import get_target

from conftest import shared_file
from test_library import Residual
from test_tflite_ops import models, tf  # noqa: F401 (fixtures: the int8 networks of every op)

ROOT = Path(__file__).resolve().parents[1]
INT8_TFLITE = "models/mlperf_tiny_ic_resnet8_int8.tflite"
QUIET = {"log": lambda *a: None}


def small_dqa_model():
    """(a DQA 4-bit QModel with Huffman-coded tensors, uint8 harness images), the same on every call."""
    torch.manual_seed(0)
    images = np.random.default_rng(0).integers(0, 256, (20, 12, 12, 3), dtype=np.uint8)
    graph = passes.optimize(import_module(Residual().eval(), images.shape[1:]))
    model = quantize(graph, calibrate(graph, images[:16], show_progress=False), QuantConfig(bits=4), images[:16])
    return model, images[16:]


@pytest.fixture(scope="module")
def dqa_model():
    return small_dqa_model()


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _export_dqa(model_and_images, out: Path, **kwargs):
    model, images = model_and_images
    return api.export_project(model, out, "host", "small residual", images, None, None, **QUIET, **kwargs)


# -- atomic, clean output ---------------------------------------------------------------

def test_a_failure_late_in_an_export_leaves_the_earlier_output_intact(dqa_model, tmp_path, monkeypatch):
    out = tmp_path / "out"
    _export_dqa(dqa_model, out)
    before = _files(out)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt  # as Ctrl-C would, after the C sources are written

    monkeypatch.setattr(api.np, "savez_compressed", interrupted)  # the harness images: a late write
    with pytest.raises(KeyboardInterrupt):
        _export_dqa(dqa_model, out)
    assert _files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # the staged folder is gone too


def test_an_int8_export_over_a_dqa_export_leaves_no_file_of_it(dqa_model, tmp_path):
    out = tmp_path / "out"
    _export_dqa(dqa_model, out)
    (out / "build").mkdir()
    (out / "build" / "leftover.o").write_bytes(b"\0")
    dqa_files = set(_files(out))
    api.export(shared_file(INT8_TFLITE), out, "host", **QUIET)
    s8_files = set(_files(out))
    assert json.loads((out / api.EXPORT_INFO_FILE).read_text())["mode"] == api.TFLITE_INT8_MODE
    assert api.QMODEL_FILE in dqa_files - s8_files and "build/leftover.o" not in s8_files
    api.export(shared_file(INT8_TFLITE), tmp_path / "fresh", "host", **QUIET)
    assert _files(out) == _files(tmp_path / "fresh")  # as if the folder had been empty
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh", "out"]


def test_a_folder_of_the_users_files_is_refused_and_kept(dqa_model, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match=r"not a dqa-mcu export \(no dqa_export.json\).*--force"):
        _export_dqa(dqa_model, out)
    assert _files(out) == {"notes.txt": b"mine"}
    file_in_the_way = tmp_path / "a_file"
    file_in_the_way.write_text("mine")
    with pytest.raises(DataError, match="is not a folder"):
        _export_dqa(dqa_model, file_in_the_way)
    _export_dqa(dqa_model, out, force=True)
    assert "notes.txt" not in _files(out) and (out / api.EXPORT_INFO_FILE).is_file()


def test_an_empty_or_new_folder_is_written(dqa_model, tmp_path):
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "empty", tmp_path / "new" / "nested"):
        _export_dqa(dqa_model, out)
        assert (out / api.EXPORT_INFO_FILE).is_file() and (out / "model.c").is_file()


def test_the_cli_refuses_a_users_folder_before_any_work_in_one_line(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    argv = ["export", str(shared_file(INT8_TFLITE)), "--target", "host", "-o", str(out), "--no-build"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--force" in err and (out / "notes.txt").exists()
    assert cli.main(argv + ["--force"]) == 0
    assert not (out / "notes.txt").exists() and (out / codegen.LAYOUT_FILE).is_file()


# -- determinism -------------------------------------------------------------------------

EXPORT_BOTH = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_reliability import INT8_TFLITE, QUIET, _export_dqa, shared_file, small_dqa_model
from dqa_mcu import api
out = Path(sys.argv[1])
_export_dqa(small_dqa_model(), out / "dqa")
api.export(shared_file(INT8_TFLITE), out / "s8", "host", **QUIET)
"""


@pytest.mark.parametrize("hash_seed", ["0", "4242"])
def test_the_same_inputs_give_byte_identical_projects(dqa_model, tmp_path, hash_seed):
    """This process's export against one from a fresh interpreter with another string-hash seed
    (set and dict orders of strings differ between them), in both modes."""
    _export_dqa(dqa_model, tmp_path / "here" / "dqa")
    api.export(shared_file(INT8_TFLITE), tmp_path / "here" / "s8", "host", **QUIET)
    script = EXPORT_BOTH.format(tests=str(Path(__file__).parent))
    env = dict(os.environ, PYTHONHASHSEED=hash_seed)
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "there")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for mode in ("dqa", "s8"):
        here, there = _files(tmp_path / "here" / mode), _files(tmp_path / "there" / mode)
        assert sorted(here) == sorted(there)
        assert [name for name in here if here[name] != there[name]] == []


# -- firmware fuzzing --------------------------------------------------------------------------

FUZZ_SECONDS_PER_TARGET = 60


@pytest.mark.slow
def test_the_firmware_fuzz_targets_find_no_crash(tmp_path):
    """fuzz/run.sh: the Huffman decoder and code-plane reader, the writer, the int8 kernels, a minute
    each under ASan + UBSan from seeds of real exports (docs/reliability.md)."""
    proc = subprocess.run(["bash", str(ROOT / "fuzz" / "run.sh"), str(FUZZ_SECONDS_PER_TARGET), str(tmp_path)],
                          capture_output=True, text=True, timeout=3 * FUZZ_SECONDS_PER_TARGET + 600)
    print(proc.stdout)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert proc.stdout.count("crashes 0") == 3


# -- fitting the part ----------------------------------------------------------------------------

@pytest.mark.slow
def test_the_code_allowance_covers_every_int8_kernel_on_cortex_m3(models, tmp_path):
    """The export's fit check counts code as an allowance (targets.CORE_CODE_BYTES), so that a model too big
    for the part is refused at export, not at link time: the allowance must hold for the most code an
    export links. The decoder network calls every int8 kernel, and Cortex-M3 runs them in portable C."""
    target = get_target("cortex-m3")
    out = api.export(models["decoder"], tmp_path / "decoder", target.name, build=True, **QUIET)
    code = fw.sizes(Path(out["executable"]))["flash"] - api.constant_bytes(tmp_path / "decoder")
    print(f"decoder on cortex-m3: code {code} bytes, allowance {target.code_bytes}")
    assert 0 < code <= target.code_bytes


# -- static checks -----------------------------------------------------------------------------

STRICT_WARNINGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-Wconversion"]


@pytest.fixture(scope="module")
def projects(dqa_model, tmp_path_factory):
    """A DQA export and an int8 .tflite export, not built."""
    root = tmp_path_factory.mktemp("projects")
    _export_dqa(dqa_model, root / "dqa")
    api.export(shared_file(INT8_TFLITE), root / "s8", "host", **QUIET)
    return root


@pytest.mark.parametrize("mode", ["dqa", "s8"])
@pytest.mark.parametrize("compiler", ["gcc", "clang"])
def test_the_generated_c_compiles_without_a_warning(projects, mode, compiler):
    """Every C file of an export (model, weights, harness, the runtime copy) under -Wconversion too."""
    if shutil.which(compiler) is None:
        pytest.fail(f"{compiler} not found: ./install.sh installs it")
    project = projects / mode
    include = [f"-I{project}", f"-I{project / 'dqa' / 'runtime' / 'include'}",
               f"-I{project / 'dqa' / 'board' / 'include'}"]
    sources = sorted(project.glob("*.c")) + sorted((project / "dqa" / "runtime" / "src").glob("*.c"))
    assert len(sources) > 10
    for source in sources:
        proc = subprocess.run([compiler, *STRICT_WARNINGS, *include, "-c", str(source), "-o", os.devnull],
                              capture_output=True, text=True)
        assert proc.returncode == 0, f"{compiler} {source.name}:\n{proc.stderr[-3000:]}"
