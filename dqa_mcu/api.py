"""The Python API the command line is a thin layer over: load a model file, quantize it, export a C
project, run it (host, QEMU or a board) against the reference.

    from dqa_mcu import api
    graph = api.load("resnet32.pt2", (32, 32, 3))
    model = api.quantize_model(graph, calib_images, QuantConfig(bits=4, extra_bits=3))
    api.export(model, "out/", "cortex-m7")
    report = api.run("out/", test_images, test_labels)   # report["bit_exact"], report["accuracy"]

Every function takes and returns plain data (arrays, paths, QModel, dicts); nothing reads
command-line arguments or prints unless given a `log`.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from dqa_mcu.codegen import dqa as codegen, planner
from dqa_mcu.device import build as fw
from dqa_mcu.frontends import passes
from dqa_mcu.qmodel import QModel
from dqa_mcu.quantize import budget
from dqa_mcu.quantize.calibrate import DataError, calibrate
from dqa_mcu.quantize.quantizer import QuantConfig, QuantizationError, quantize
from dqa_mcu.reference import evaluate, dqa as reference
from dqa_mcu.targets import get_target

__all__ = ["load", "quantize_model", "export", "run", "export_project", "export_s8_project", "run_project",
           "check_output_dir", "constant_bytes", "load_graph", "load_tflite_int8", "model_kind", "exported_tflite",
           "QMODEL_FILE", "TFLITE_MODEL_FILE", "TFLITE_INT8_MODE", "EXPORT_INFO_FILE", "HARNESS_IMAGES_FILE"]

# the files an export writes
QMODEL_FILE = "model.dqa.npz"
TFLITE_MODEL_FILE = "model.tflite"  # TFLite-exact int8 exports keep the model file itself
TFLITE_INT8_MODE = "tflite-int8"
EXPORT_INFO_FILE = "dqa_export.json"
HARNESS_IMAGES_FILE = "harness_images.npz"


# -- model files ----------------------------------------------------------------------

def model_kind(path: str) -> str:
    """Which importer reads a model file: 'keras', 'tflite' or 'torch', from its first bytes
    (the extension decides only when they say nothing, so the importer can name the problem)."""
    from dqa_mcu.frontends.keras_import import HDF5_SIGNATURE
    p = Path(path)
    if not p.is_file():
        return "torch"  # its loader names the missing file
    with p.open("rb") as f:
        head = f.read(8)
    if head[4:8] == b"TFL3" or p.suffix == ".tflite":
        return "tflite"
    if head == HDF5_SIGNATURE or p.suffix in (".h5", ".hdf5", ".keras"):
        return "keras"
    if zipfile.is_zipfile(p):
        with zipfile.ZipFile(p) as z:
            if {"config.json", "model.weights.h5"} <= set(z.namelist()):  # a Keras 3 .keras archive
                return "keras"
        return "torch"  # torch.save, TorchScript and .pt2 files are zip archives
    if head[:1] == b"\x80":  # a pickle (protocol 2+): a legacy torch.save file
        return "torch"
    raise DataError(f"{p.name}: not a model file dqa-mcu reads (PyTorch .pt/.th/.pt2, Keras .h5/.keras, "
                    "TFLite .tflite)")


def load_tflite_int8(path: str):
    """The int8 TFLiteGraph of a full-integer .tflite file, or None for any other model file."""
    if model_kind(path) != "tflite":
        return None
    from dqa_mcu.frontends.tflite_import import load_tflite
    graph = load_tflite(path)
    return graph if graph.quantized else None


def load_graph(path: str, arch: str | None, trust_pickle: bool, input_shape, normalization=None):
    """Any float model file (PyTorch, Keras .h5/.keras, float .tflite) -> the optimized float IR;
    `input_shape` is (H, W, C) for images, (N,) for feature vectors."""
    kind = model_kind(path)
    if kind == "torch":
        from dqa_mcu.frontends.torch_import import import_module, load_torch_model
        module, norm = load_torch_model(path, arch=arch, trust_pickle=trust_pickle)
        return passes.optimize(import_module(module, input_shape, normalization or norm))
    if kind == "keras":
        from dqa_mcu.frontends.keras_import import load_keras
        graph = load_keras(path, normalization)  # raw 0..255 pixels unless --pixel-scale/--mean/--std
    else:
        from dqa_mcu.frontends.tflite_float import tflite_to_ir
        from dqa_mcu.frontends.tflite_import import load_tflite
        tgraph = load_tflite(path)
        if tgraph.quantized:
            raise DataError(f"{Path(path).name} is an int8 model: it keeps its own quantization, DQA needs a float "
                            f"model (.h5, .keras, float .tflite); export it as it is with "
                            f"dqa-mcu export {path} --target TARGET")
        graph = tflite_to_ir(tgraph, normalization)  # raw 0..255 pixels unless overridden, as Keras
    expected = (1, 1, int(input_shape[0])) if len(input_shape) == 1 else tuple(input_shape)
    if graph.shapes[graph.input] != expected:
        raise DataError(f"{Path(path).name} takes inputs of shape {graph.shapes[graph.input]} (H, W, C); "
                        f"the data has {tuple(input_shape)}")
    return passes.optimize(graph)


# -- projects ---------------------------------------------------------------------------

def check_output_dir(out: Path, force: bool = False) -> None:
    """Refuse an export into `out` when it holds anything but an earlier export (whose EXPORT_INFO_FILE
    says so): the export replaces the whole folder. `force` replaces whatever is there."""
    out = Path(out)
    if force or not (out.exists() or out.is_symlink()):
        return
    if not out.is_dir():
        raise DataError(f"{out} exists and is not a folder: choose another output folder, or replace it "
                        "with --force")
    if any(out.iterdir()) and not (out / EXPORT_INFO_FILE).is_file():
        raise DataError(f"{out} is not a dqa-mcu export (no {EXPORT_INFO_FILE}) and the export would replace "
                        "all its files: choose another output folder, or replace it with --force")


@contextmanager
def _staged_output(out: Path, force: bool):
    """Yields a new folder beside `out` to write an export into; when the block ends without an error,
    it takes the place of `out` by rename (an earlier output is removed whole). An export that fails or
    is interrupted leaves `out` as it was and removes the staged folder."""
    check_output_dir(out, force)
    if out.is_symlink():  # write where the link points, and keep the link
        out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        staged.chmod(0o777 & ~umask)  # mkdtemp's folder is private; an export gets the user's usual mode
        yield staged
        _replace(out, staged)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise


def _replace(out: Path, staged: Path) -> None:
    """Rename `staged` to `out`, moving an existing `out` aside first and deleting it after."""
    if not (out.exists() or out.is_symlink()):
        staged.rename(out)
        return
    retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    retired.rmdir()  # only its unique name is needed: `out` is renamed to it
    out.rename(retired)
    try:
        staged.rename(out)
    except BaseException:
        retired.rename(out)
        raise
    if retired.is_dir() and not retired.is_symlink():
        shutil.rmtree(retired)
    else:
        retired.unlink()


def export_project(model: QModel, out: Path, target_name: str, source: str, images: np.ndarray,
                   ram_bytes: int | None, flash_bytes: int | None, log=print, force: bool = False,
                   schedule: str = planner.DEFAULT_SCHEDULE) -> planner.MemoryPlan:
    """Write the C project of a DQA model into `out` (replaced whole: see `check_output_dir`), run with
    `schedule` (planner.SCHEDULES)."""
    out = Path(out)
    target = get_target(target_name)
    plan = planner.plan(model, schedule)
    const_bytes = _model_constant_bytes(model)
    _check_fits(target, plan.arena_bytes, const_bytes + images.nbytes, ram_bytes, flash_bytes)
    with _staged_output(out, force) as staged:
        codegen.generate(model, plan, staged, target.name, source=source, images=images)
        model.save(staged / QMODEL_FILE)
        np.savez_compressed(staged / HARNESS_IMAGES_FILE, x=images)
        (staged / EXPORT_INFO_FILE).write_text(json.dumps({"target": target.name, "source": source}, indent=1)
                                               + "\n")
    log(plan.describe(model))
    log(f"wrote {out}/ for {target.name}: arena {plan.arena_bytes} bytes ({schedule} schedule, "
        f"{len(plan.segments)} row-streamed segments), constants {const_bytes} bytes "
        f"(memory plan also in {out / 'memory_plan.txt'})")
    return plan


def _model_constant_bytes(model) -> int:
    """The weights and tables of a QModel, or the constant tensors of an int8 TFLiteGraph."""
    if isinstance(model, QModel):
        return sum(a.nbytes for n in model.nodes for a in n.arrays.values())
    return sum(t.data.nbytes for t in model.tensors if t.is_const)


def constant_bytes(out: Path) -> int:
    """What an export's fit check counted against flash beside the code: weights, tables, test inputs."""
    out = Path(out)
    tgraph = exported_tflite(out)
    model = tgraph if tgraph is not None else QModel.load(out / QMODEL_FILE)
    return _model_constant_bytes(model) + np.load(out / HARNESS_IMAGES_FILE)["x"].nbytes


def _check_fits(target, arena_bytes: int, const_bytes: int, ram_bytes: int | None, flash_bytes: int | None):
    """The arena against RAM, the constants (weights, tables, the harness's test inputs) and the code
    against flash, before anything is written: a model too big fails here with the numbers, not at
    link time. A target's own RAM also holds its static variables, stack and heap; a `ram_bytes`
    given is what the arena may take."""
    ram = ram_bytes or target.ram_bytes
    reserved = 0 if ram_bytes else target.reserved_ram_bytes
    if arena_bytes > ram - reserved:
        beside = f" less {reserved} for static variables, stack and heap" if reserved else ""
        raise QuantizationError(f"activation arena of {arena_bytes} bytes does not fit {target.name}'s RAM of "
                                f"{ram} bytes{beside}; use fewer bits or a smaller model")
    flash_limit = flash_bytes or target.flash_bytes
    if const_bytes + target.code_bytes > flash_limit:
        raise QuantizationError(f"weights, tables and test inputs need {const_bytes} bytes and code up to "
                                f"{target.code_bytes}: {const_bytes + target.code_bytes} bytes, more than "
                                f"{target.name}'s flash of {flash_limit} bytes; use a smaller model or a larger part")


def export_s8_project(graph, out: Path, target_name: str, source: str, images: np.ndarray,
                      ram_bytes: int | None, flash_bytes: int | None, log=print, force: bool = False,
                      schedule: str | None = None, input_rows: bool = False):
    """TFLite-exact int8 mode: the .tflite's own quantization, TFLite's arithmetic in C (docs/spec_tflite.md);
    ``images`` are int8 model inputs for the harness. `out` is replaced whole, as by `export_project`, run
    with `schedule` (planner.SCHEDULES, default auto); with `input_rows` the application hands the input
    row by row through dqa_model_set_input() (plan_s8)."""
    from dqa_mcu.codegen.tflite import generate_s8, plan_s8
    out = Path(out)
    target = get_target(target_name)
    schedule = schedule or planner.DEFAULT_SCHEDULE
    plan = plan_s8(graph, schedule, input_rows)
    const_bytes = _model_constant_bytes(graph)
    _check_fits(target, plan.memory.arena_bytes, const_bytes + images.nbytes, ram_bytes, flash_bytes)
    with _staged_output(out, force) as staged:
        generate_s8(graph, plan, staged, target.name, source=source, images=images)
        (staged / TFLITE_MODEL_FILE).write_bytes(Path(graph.source).read_bytes())
        np.savez_compressed(staged / HARNESS_IMAGES_FILE, x=images)
        (staged / EXPORT_INFO_FILE).write_text(json.dumps({"target": target.name, "source": source,
                                                           "mode": TFLITE_INT8_MODE}, indent=1) + "\n")
    log(plan.describe())
    log(f"wrote {out}/ for {target.name} (TFLite-exact int8): arena {plan.memory.arena_bytes} bytes ({schedule} "
        f"schedule, {len(plan.memory.segments)} row-streamed segments), constants {const_bytes} bytes (memory plan "
        f"also in {out / 'memory_plan.txt'})")
    return plan


def exported_tflite(out: Path):
    """The int8 TFLiteGraph of a TFLite-exact export; None for a DQA export."""
    if json.loads((out / EXPORT_INFO_FILE).read_text()).get("mode") != TFLITE_INT8_MODE:
        return None
    from dqa_mcu.frontends.tflite_import import load_tflite
    return load_tflite(out / TFLITE_MODEL_FILE)


def _expected(out: Path, images: np.ndarray):
    """(outputs, overflowed tensors) the reference gives for an export, image by image."""
    tgraph = exported_tflite(out)
    if tgraph is not None:
        from dqa_mcu.reference.tflite import TFLiteReference
        outputs = TFLiteReference(tgraph).run(images)
        return outputs.reshape(len(images), -1).astype(np.int64), np.zeros(len(images), np.int64)
    streamed = json.loads((out / codegen.LAYOUT_FILE).read_text()).get("streamed", [])  # spec 2.4
    expected = reference.run(QModel.load(out / QMODEL_FILE), images, streamed=streamed)
    return expected.output.reshape(len(images), -1), expected.overflowed_tensors  # as the harness prints them


def _output_scale(out: Path) -> float:
    """Real value of one step of an export's output (1 for an int8 .tflite: only its argmax is scored)."""
    if exported_tflite(out) is not None:
        return 1.0
    model = QModel.load(out / QMODEL_FILE)
    return float(model.tensors[model.output].scale[0])


def run_project(out: Path, images: np.ndarray | None, labels: np.ndarray | None, target_name: str | None,
                timeout: float, sanitize: bool = False, log=print, task: evaluate.Task = evaluate.CLASSIFY,
                execute=None) -> dict:
    """Build and run an export on `images` (model inputs), compare with the reference bit for bit, and
    score the outputs against `labels` (the task's targets) when given. `execute(exe, target, timeout)`
    runs the built image (default: on the host or under QEMU; `dqa-mcu flash`: on the board)."""
    info = json.loads((out / EXPORT_INFO_FILE).read_text())
    target = get_target(target_name or info["target"])
    if execute is None:
        fw.check_runnable(target)  # first: a board QEMU does not emulate runs only on itself
    if images is None:
        images = np.load(out / HARNESS_IMAGES_FILE)["x"]
    expected_output, expected_overflowed = _expected(out, images)
    codegen.write_harness_inputs(out, images.view(np.uint8))  # int8 inputs (TFLite mode) as their bytes
    exe = fw.build(out, target, sanitize=sanitize)
    result = (execute or fw.run)(exe, target, timeout=timeout)
    if result.outputs.shape == expected_output.shape:
        # outputs and the overflow status (spec 2.3) must both match, image by image
        differs = (result.outputs != expected_output).any(axis=1) | (result.overflowed != expected_overflowed)
    else:
        differs = np.ones(len(images), dtype=bool)
    exact = not differs.any()
    report = {"target": target.name, "board": result.board, "images": len(images), "bit_exact": bool(exact),
              "mismatched_images": [int(i) for i in np.flatnonzero(differs)],
              "instructions_per_inference": float(result.instructions.mean()),
              "overflowed_tensors": int(result.overflowed.sum()), "layers": result.layers}
    if not target.is_host:
        report.update(fw.sizes(exe))
        report.pop("sections", None)
    if labels is not None:
        report[task.report_key] = task.score(result.outputs * _output_scale(out), labels)
    log(f"{target.name} ({result.board}): {len(images)} images, "
        f"{'bit-exact with the reference' if exact else 'MISMATCH with the reference on images ' + str(report['mismatched_images'][:10])}")
    if not target.is_host:
        log(f"  {result.counter} per inference {report['instructions_per_inference']:.0f}, "
            f"RAM (.data + .bss) {report['ram']} bytes, flash (.text + .rodata + .data) {report['flash']} bytes")
    if labels is not None:
        log(f"  {task.metric} on these images: {report[task.report_key]:.2f}")
    if report["overflowed_tensors"]:
        log(f"  error-stream overflows (handled, spec 2.3): {report['overflowed_tensors']}")
    return report


# -- the four steps, as the module docstring shows them ----------------------------------

def load(path, input_shape, normalization=None, arch: str | None = None, trust_pickle: bool = False):
    """A float model file as the optimized float IR (`load_graph`); `input_shape` (H, W, C) for
    images, (N,) for feature vectors."""
    return load_graph(str(path), arch, trust_pickle, tuple(input_shape), normalization)


def quantize_model(graph, calib_inputs: np.ndarray, config: QuantConfig | None = None, *,
                   task: str = "classify", rankings=None, memory_budget: int | None = None,
                   bits_budget: float | None = None, schedule: str = planner.DEFAULT_SCHEDULE) -> QModel:
    """Calibrate `graph` on `calib_inputs` (uint8 model inputs: images, or feature codes from
    ``features.feature_codes``) and quantize it with `config` (default: DQA n = 4). A whole-network
    ranking (``config.rank`` taylor or greedy) is computed on the same inputs unless `rankings`
    gives one; a budget (SRAM bytes of the arena planned under `schedule`, export's, or average
    stored bits) fits the important channels into it."""
    from dqa_mcu.quantize.greedy import rankings_for
    config = config or QuantConfig()
    calib = calibrate(graph, calib_inputs, show_progress=False)
    ranked = None
    if config.uses_dqa and rankings is None:
        ranked = rankings_for(config, graph, calib, calib_inputs, show_progress=False, regress=task != "classify")
        rankings = None if ranked is None else ranked.rankings
    if memory_budget is not None:
        return budget.fit_arena(graph, calib, config, calib_inputs, memory_budget, rankings, log=lambda *a: None,
                                schedule=schedule)
    if bits_budget is not None:
        if ranked is None:
            raise QuantizationError("a bits budget allocates important channels by whole-network scores: "
                                    "quantize with config.rank 'taylor' or 'greedy'")
        return budget.fit_bits(graph, calib, config, calib_inputs, bits_budget, rankings, ranked.scores,
                               log=lambda *a: None)
    return quantize(graph, calib, config, calib_inputs, rankings)


def export(model, out, target: str = "cortex-m7", harness_inputs: np.ndarray | None = None, *,
           ram_bytes: int | None = None, flash_bytes: int | None = None, build: bool = False,
           source: str = "", log=print, force: bool = False, schedule: str | None = None) -> dict:
    """Write the C project for `model` (a QModel, a saved ``.dqa.npz``, or an int8 ``.tflite`` file
    kept in its own arithmetic) into `out`, with `harness_inputs` (model inputs, default one zero
    input) compiled into the test harness; build it too with `build`. `out` is replaced whole if it
    is an earlier export, refused if it holds other files (unless `force`); `schedule`: layer, stream or
    auto (planner.SCHEDULES; default auto).
    Returns what was written: target, mode, arena and constant bytes, and the executable when built."""
    out = Path(out)
    tgraph = None
    if not isinstance(model, QModel):
        source = source or str(model)
        tgraph = load_tflite_int8(str(model))
        model = QModel.load(model) if tgraph is None else None
    if tgraph is not None:
        shape = (1,) + tuple(tgraph.input.shape[1:])
        inputs = harness_inputs if harness_inputs is not None else \
            np.full(shape, int(tgraph.input.zero_point[0]), np.int8)
        plan = export_s8_project(tgraph, out, target, source, inputs, ram_bytes, flash_bytes, log=log,
                                 force=force, schedule=schedule)
        arena, mode = plan.memory.arena_bytes, TFLITE_INT8_MODE
    else:
        inputs = harness_inputs if harness_inputs is not None else \
            np.zeros((1,) + tuple(model.tensors[model.input].shape), np.uint8)
        plan = export_project(model, out, target, source, inputs, ram_bytes, flash_bytes, log=log, force=force,
                              schedule=schedule or planner.DEFAULT_SCHEDULE)
        arena, mode = plan.arena_bytes, "dqa"
    written = {"out": str(out), "target": target, "mode": mode, "arena_bytes": int(arena), "executable": None}
    if build:
        written["executable"] = str(fw.build(out, get_target(target)))
    return written


def run(out, inputs: np.ndarray | None = None, targets: np.ndarray | None = None, *, target: str | None = None,
        task: str = "classify", scale: int = 2, sanitize: bool = False, timeout: float = fw.DEFAULT_TIMEOUT_S,
        log=print) -> dict:
    """Build and run an export on `inputs` (model inputs; default the harness's), compare every output
    with the reference bit for bit and, given the task's `targets`, score them. Returns the run
    report (``bit_exact``, ``mismatched_images``, instructions, RAM / flash, the score)."""
    return run_project(Path(out), inputs, targets, target, timeout, sanitize, log=log,
                       task=evaluate.task(task, scale))
