"""dqa-mcu command line: arguments and data files in, the Python API (api.py) and reports out.

    dqa-mcu eval   MODEL --arch resnet32 --data test.npz --calib calib.npz
    dqa-mcu table  MODEL [MODEL ...] --arch ... --data test.npz --calib calib.npz -o tables/
    dqa-mcu export MODEL --target cortex-m7 --calib calib.npz -o out/
    dqa-mcu recommend MODEL --calib calib.npz --bits-budget 4.2 [--data test.npz]
    dqa-mcu run    out/ [--data test.npz] [-n 20]
    dqa-mcu report out/ [--data test.npz]
    dqa-mcu demo
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from dqa_mcu.codegen import planner
from dqa_mcu.device import build as fw
from dqa_mcu.frontends import passes
from dqa_mcu.quantize import budget, recommend
from dqa_mcu.reference import evaluate
from dqa_mcu.api import (EXPORT_INFO_FILE, QMODEL_FILE, check_output_dir, export_project, export_s8_project,
                         exported_tflite, load_graph, load_tflite_int8, model_kind, run_project)
from dqa_mcu.ir import GraphError
from dqa_mcu.qmodel import QModel
from dqa_mcu.quantize.calibrate import DataError, calibrate, load_images, subsample
from dqa_mcu.quantize.features import (feature_codes, feature_normalization, is_feature_file, load_features,
                                       model_normalization)
from dqa_mcu.quantize.quantizer import CLIP_METHODS, QuantConfig, QuantizationError, quantize
from dqa_mcu.quantize.ranking import GLOBAL_RANKINGS, RANKERS
from dqa_mcu.targets import TARGETS, get_target

DEFAULT_CALIB_IMAGES = 2000


# -- stages wired together -----------------------------------------------------

def _normalization_override(args):
    if args.mean is None and args.std is None and args.pixel_scale is None:
        return None
    from dqa_mcu.frontends.zoo import Normalization
    return Normalization(args.pixel_scale if args.pixel_scale is not None else 1 / 255,
                         tuple(args.mean or (0.0,)), tuple(args.std or (1.0,)))


def _config(args, **overrides) -> QuantConfig:
    bits = args.bits if args.bits is not None else QuantConfig.bits
    config = QuantConfig(bits=bits, extra_bits=args.extra_bits, important_ratio=args.important_ratio,
                         clip=args.clip, rank=_rank(args), seed=args.seed)
    config = replace(config, **overrides)
    config.validate()
    return config


def _rank(args) -> str:
    """--rank; with --rankings FILE alone, the method that made the file; with a memory budget, taylor
    (budgets allocate channels across tensors, by whole-network scores)."""
    if args.rank or not args.rankings:
        return args.rank or ("taylor" if _budget(args) else QuantConfig.rank)
    from dqa_mcu.quantize.greedy import load_rankings
    method = load_rankings(args.rankings).meta.get("method")
    if method not in GLOBAL_RANKINGS:
        raise DataError(f"{args.rankings}: the file does not say which method made it: "
                        f"pass --rank {' or --rank '.join(GLOBAL_RANKINGS)}")
    return method


def _rankings(args, config: QuantConfig, graph, calib, calib_x, calib_y):
    """The whole-network ranking config.rank needs (None for a local criterion), from
    --rankings FILE or computed on --rank-images calibration images (labels if the file has them)."""
    result = _ranking_result(args, config, graph, calib, calib_x, calib_y)
    return None if result is None else result.rankings


def _ranking_result(args, config: QuantConfig, graph, calib, calib_x, calib_y, show_progress: bool = True):
    from dqa_mcu.quantize.greedy import rankings_for
    images, labels = subsample(args.rank_images, calib_x, calib_y)
    result = rankings_for(config, graph, calib, images, labels, path=args.rankings,
                          save=args.save_rankings, show_progress=show_progress, regress=_regress(args))
    if result is not None and args.rankings and result.meta.get("bits") not in (None, config.bits):
        print(f"note: {args.rankings} was computed for n = {result.meta['bits']}, used here for n = {config.bits}")
    return result


def _regress(args) -> bool:
    """The task's output is not class scores: rankings and recommendations follow the output error."""
    return getattr(args, "task", "classify") != "classify"


def _schedule_arg(p, note: str) -> None:
    p.add_argument("--schedule", choices=planner.SCHEDULES, default=None,
                   help="layer: each layer over whole tensors; stream: runs of consecutive layers as row "
                        "pipelines (docs/spec.md 2.4); auto: stream where it lowers the arena (default: "
                        f"{planner.DEFAULT_SCHEDULE}){note}")


def _schedule(args) -> str:
    """--schedule, or export's default."""
    return args.schedule or planner.DEFAULT_SCHEDULE


def _budget(args) -> recommend.Budget | None:
    """--memory-budget / --bits-budget, checked; None without either."""
    arena, bits = getattr(args, "memory_budget", None), getattr(args, "bits_budget", None)
    return None if arena is None and bits is None else recommend.Budget(arena, bits)


def _fit_budget(args, limit: recommend.Budget, graph, calib, calib_x, calib_y) -> QModel:
    """The model for a memory budget: with --bits, n and m as given and the important channels fitted;
    without, the recommended configuration (n, m and channels searched)."""
    config = _config(args)
    if args.bits is None:
        return _recommend(args, limit, config, graph, calib, calib_x, calib_y).model
    ranked = _ranking_result(args, config, graph, calib, calib_x, calib_y) if config.uses_dqa else None
    rankings = None if ranked is None else ranked.rankings
    if limit.arena_bytes is not None:
        return budget.fit_arena(graph, calib, config, calib_x, limit.arena_bytes, rankings, schedule=_schedule(args))
    if config.uses_dqa and ranked is None:
        raise DataError(f"--bits-budget allocates important channels across tensors by whole-network scores: "
                        f"--rank {' or --rank '.join(GLOBAL_RANKINGS)}, not {config.rank}")
    return budget.fit_bits(graph, calib, config, calib_x, limit.bits, rankings, ranked and ranked.scores)


def _recommend(args, limit: recommend.Budget, base: QuantConfig, graph, calib, calib_x, calib_y):
    """Search n, m and the important channels; print every candidate; the winner."""
    def rank(config):
        return _ranking_result(args, config, graph, calib, calib_x, calib_y, show_progress=False)

    score_x, score_y = subsample(args.score_images, calib_x, calib_y)
    regress = _regress(args)
    best, found = recommend.recommend(graph, calib, base, calib_x, limit, rank, score_x, score_y,
                                      args.extra_bits_list, regress=regress, schedule=_schedule(args))
    print(f"\ncandidates for {limit} ({len(score_x)} calibration images score them; the least "
          f"{'output error' if regress else 'KL divergence'} from FP32 wins):")
    print(recommend.format_candidates(found, best, score_y is not None and not regress, regress))
    print(f"recommended: {best.label}, {100 * best.important_share:.1f} % of activations important, "
          f"{best.bits:.2f} bits per activation, arena {best.arena_bytes} bytes; export fixes it with "
          f"--bits {best.config.bits} --extra-bits {best.config.extra_bits} {limit.flag}"
          + (f" --schedule {args.schedule}" if args.schedule else ""))
    return best


# -- commands --------------------------------------------------------------------

def _eval_data(args, task: evaluate.Task = evaluate.CLASSIFY):
    """Test inputs and targets (labels; for --task sr the full-size images; for --task ae the images or
    feature vectors themselves), calibration inputs (with labels if the file has them), subsampled, and
    the model's input shape and normalization (a feature file's comes from its calibration vectors)."""
    calib_x, calib_y, input_shape, normalization = _calibration_data(args, task)
    test_x, test_y = _model_data(args.data, task, calib_x.shape[1:], normalization, args.test_count)
    if test_y is None and task.needs_labels:
        raise DataError(f"{args.data}: evaluation needs labels (an array 'y': classes, or masks for --task seg)")
    return test_x, test_y, calib_x, calib_y, input_shape, normalization


def _model_data(path: str, task: evaluate.Task, input_shape, normalization, count: int | None):
    """(model inputs, the task's targets) of a data file, `count` of them evenly spaced: images, or real-valued
    feature vectors (count, N) turned into the model's uint8 codes with `normalization` (features.py)."""
    if is_feature_file(path):
        if normalization is None:
            raise DataError(f"{path}: feature vectors, but the model does not record how to quantize them "
                            "(exported by an older dqa-mcu): export it again")
        raw, y = subsample(count, *load_features(path, input_shape[-1]))
        return feature_codes(raw, normalization), (raw if task.name == "ae" else y)
    x, y = load_images(path, task.image_shape(input_shape))
    return task.pairs(*subsample(count, x, y))


def cmd_eval(args) -> int:
    if args.save_rankings and len(args.bits_list) > 1:
        raise DataError("--save-rankings writes one ranking: give one n with --bits-list")
    task = evaluate.task(args.task, args.scale)
    test_x, test_y, calib_x, calib_y, input_shape, normalization = _eval_data(args, task)
    graph = load_graph(args.model, args.arch, args.trust_pickle, input_shape, normalization)
    calib = calibrate(graph, calib_x)
    rows = [evaluate.EvalRow("FP32", task.score(evaluate.float_logits(graph, test_x), test_y), None)]
    configs = [("int8 (all activations 8 bits)", _config(args, bits=8, extra_bits=0), None)]
    for n in args.bits_list:
        dqa = _config(args, bits=n)
        configs.append((f"direct {n}-bit", _config(args, bits=n, extra_bits=0), None))
        configs.append((f"DQA {n}-bit (m={dqa.extra_bits}, r={dqa.important_ratio}, {dqa.rank})", dqa,
                        _rankings(args, dqa, graph, calib, calib_x, calib_y) if dqa.uses_dqa else None))
    for label, config, rankings in configs:
        rows.append(evaluate.eval_quantized(label, quantize(graph, calib, config, calib_x, rankings), test_x,
                                            test_y, task=task))
    fp32_bytes = rows[1].memory.activations * 4
    print(f"{Path(args.model).name}: {len(test_x)} test images, {len(calib_x)} calibration images, "
          f"clip {args.clip}")
    print(evaluate.format_table(rows, fp32_bytes, task.metric))
    if args.tensor_report:
        for row in rows[1:]:
            if row.huffman_bits is not None:
                print(f"\nPer tensor, {row.label} (Huffman measured on the test images):")
                print(row.tensors)
    return 0


def cmd_table(args) -> int:
    from dqa_mcu.frontends.torch_import import load_torch_model
    from dqa_mcu.research import tables as report
    arches = args.arch or [None] * len(args.models)
    if len(arches) != len(args.models):
        raise DataError(f"--arch names {len(arches)} architectures for {len(args.models)} models: one per model")
    names = [arch or Path(path).stem for path, arch in zip(args.models, arches)]
    if len(set(names)) != len(names):
        raise DataError(f"two models share the name {max(names, key=names.count)!r}: give each its own file stem")
    ablate = None if args.no_ablations else args.ablation_model or names[-1]
    if ablate is not None and ablate not in names:
        raise DataError(f"--ablation-model {ablate!r} is none of the models ({', '.join(names)})")
    for path in args.models:
        if model_kind(path) != "torch":
            raise DataError(f"{path}: the table's paper mode runs PyTorch models only")
    base = _config(args)
    test_x, test_y, calib_x, calib_y, *_ = _eval_data(args)
    data = report.Data(test_x, test_y, calib_x, calib_y, args.rank_images)
    results, ablation = [], None
    for path, arch, name in zip(args.models, arches, names):
        module, norm = load_torch_model(path, arch=arch, trust_pickle=args.trust_pickle)
        override = _normalization_override(args)
        graph = load_graph(path, arch, args.trust_pickle, test_x.shape[1:], override)
        ev = report.Evaluator(report.ModelInput(name, graph, module, override or norm), data,
                              args.greedy_rankings if name == ablate else None)
        results.append(report.measure_model(ev, base, args.bits_list, args.paper_importance))
        if name == ablate:
            ablation = report.ablations(ev, base, args.bits, args.ablation_test_count)
    provenance = report.Provenance(args.dataset or Path(args.data).name, "dqa-mcu " + shlex.join(args.argv),
                                   len(test_x), len(calib_x), len(data.rank_images[0]))
    header, ablation_header = report.headers(provenance, names, base, args.paper_importance, ablation)
    for f in report.write_report(args.output, results, args.bits_list, header, ablation, ablation_header):
        print(f"wrote {f}")
    return 0


def cmd_recommend(args) -> int:
    limit = _budget(args)
    task = evaluate.task(args.task, args.scale)
    calib_x, calib_y, input_shape, normalization = _calibration_data(args, task)
    graph = load_graph(args.model, args.arch, args.trust_pickle, input_shape, normalization)
    calib = calibrate(graph, calib_x)
    best = _recommend(args, limit, _config(args), graph, calib, calib_x, None if _regress(args) else calib_y)
    if args.data:
        test_x, test_y = _model_data(args.data, task, calib_x.shape[1:], normalization, args.test_count)
        if test_y is None:
            raise DataError(f"{args.data}: the test accuracy needs labels (an array 'y')")
        rows = [evaluate.EvalRow("FP32", task.score(evaluate.float_logits(graph, test_x), test_y), None),
                evaluate.eval_quantized(f"{best.label} (recommended)", best.model, test_x, test_y, task=task)]
        print(f"\n{len(test_x)} test inputs:")
        print(evaluate.format_table(rows, evaluate.memory(best.model).activations * 4, task.metric))
    if args.output:
        best.model.save(args.output)
        print(f"wrote {args.output}: dqa-mcu export {args.output} --target TARGET")
    return 0


def cmd_export(args) -> int:
    target = get_target(args.target)  # check the arguments before any slow work
    check_output_dir(Path(args.output), args.force)
    tgraph = None if args.model.endswith(".npz") else load_tflite_int8(args.model)
    limit = _budget(args)
    if tgraph is not None:  # TFLite-exact int8 mode: the file's own quantization, no calibration
        if limit is not None:
            raise DataError(f"{limit.flag}: {args.model} is an int8 model that keeps its own 8-bit "
                            "quantization; a memory budget needs a float model (.pt/.th, .h5/.keras, "
                            "float .tflite)")
        out = Path(args.output)
        export_s8_project(tgraph, out, target.name, args.model, _s8_harness_images(args, tgraph),
                          args.ram_bytes, args.flash_bytes, force=args.force, schedule=_schedule(args),
                          input_rows=args.input_rows)
        return _build_export(out, target, args.no_build)
    if args.input_rows:
        raise DataError("--input-rows: the input is handed row by row in the TFLite-exact int8 mode only "
                        "(an int8 .tflite); a DQA export takes it whole")
    config = _config(args)
    calib_x = None
    if limit is not None and args.model.endswith(".npz"):
        raise DataError(f"{limit.flag}: {args.model} is already quantized; a memory budget needs a model to "
                        "quantize (PyTorch, Keras or float TFLite)")
    if args.model.endswith(".npz"):
        model = QModel.load(args.model)
    else:
        if not args.calib:
            raise DataError("export needs calibration images: --calib FILE (.npz with x, or a folder)")
        task = evaluate.task(args.task, args.scale)
        calib_x, calib_y, input_shape, normalization = _calibration_data(args, task)
        graph = load_graph(args.model, args.arch, args.trust_pickle, input_shape, normalization)
        calib = calibrate(graph, calib_x)
        if limit is not None:
            model = _fit_budget(args, limit, graph, calib, calib_x, calib_y)
        else:
            rankings = _rankings(args, config, graph, calib, calib_x, calib_y) if config.uses_dqa else None
            model = quantize(graph, calib, config, calib_x, rankings)
    images = _harness_images(args, model, calib_x)
    out = Path(args.output)
    export_project(model, out, target.name, args.model, images, args.ram_bytes, args.flash_bytes, force=args.force,
                   schedule=_schedule(args))
    return _build_export(out, target, args.no_build)


def _calibration_data(args, task: evaluate.Task):
    """(calibration inputs, labels or None, the model's input shape, normalization) from --calib: images
    as the task feeds them, or feature vectors as codes with their own normalization (features.py)."""
    normalization = _normalization_override(args)
    if is_feature_file(args.calib):
        raw, y = subsample(args.calib_count, *load_features(args.calib))
        normalization = normalization or feature_normalization(raw)
        return feature_codes(raw, normalization), y, (raw.shape[1],), normalization
    x, y = subsample(args.calib_count, *load_images(args.calib))
    x = task.inputs(x)
    return x, y, x.shape[1:], normalization


def _build_export(out: Path, target, no_build: bool) -> int:
    if no_build:
        return 0
    try:
        exe = fw.build(out, target)
    except fw.BuildError as exc:
        print(f"dqa-mcu: not built: {exc}", file=sys.stderr)
        return 0 if "not found" in str(exc) else 1
    print(f"built {exe} (and {exe.with_suffix('.bin').name}, {exe.with_suffix('.hex').name})")
    if target.board is not None:
        used = fw.sizes(exe)  # the link has checked them against the board's regions
        print(f"  flash {used['flash']} of {target.flash_bytes} bytes, RAM {used['ram']} of {target.ram_bytes} "
              f"bytes (static; the stack and heap take the rest)")
        print(f"  on the board: dqa-mcu flash {out}"
              + (f"; under QEMU {target.qemu_machine}: dqa-mcu run {out}" if target.qemu_machine else ""))
    elif target.qemu_machine:
        print(f"  QEMU: dqa-mcu run {out}; for a real board, export with its --target (nucleo-f446re, ...)")
    return 0


def _harness_images(args, model: QModel, calib_x):
    shape = model.tensors[model.input].shape
    if getattr(args, "data", None):
        return _model_data(args.data, evaluate.task(args.task, args.scale), shape, model_normalization(model),
                           args.count)[0]
    if calib_x is not None:
        return subsample(min(args.count, 4), calib_x)[0]
    return np.zeros((1,) + tuple(shape), dtype=np.uint8)


def _s8_inputs(path: str, graph):
    """(int8 model inputs, labels or None) for an int8 .tflite: uint8 NHWC pixels for an image model; for a
    vector model ([1, N] input) an .npz whose x is (count, N), real values or already-quantized int8."""
    from dqa_mcu.reference.tflite import quantize_input
    shape = tuple(graph.input.shape[1:])
    if len(shape) != 1:
        x, y = load_images(path, shape)
        return quantize_input(graph, x), y
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: a vector model reads an .npz with x of shape (count, {shape[0]}) ({exc})") from None
    if "x" not in data or data["x"].ndim != 2 or data["x"].shape[1] != shape[0]:
        raise DataError(f"{path}: a vector model needs x of shape (count, {shape[0]})")
    x = data["x"]
    return (x if x.dtype == np.int8 else quantize_input(graph, x)), (data["y"] if "y" in data else None)


def _s8_harness_images(args, graph):
    """int8 inputs for an int8 .tflite's harness: --data (or --calib) pixels quantized as the model's
    input says, else one image of the input zero point."""
    path = getattr(args, "data", None) or getattr(args, "calib", None)
    if path:
        x, _ = _s8_inputs(path, graph)
        return subsample(args.count if args.data else min(args.count, 4), x)[0]
    return np.full((1,) + tuple(graph.input.shape[1:]), int(graph.input.zero_point[0]), np.int8)


def cmd_run(args) -> int:
    out = Path(args.project)
    if not (out / EXPORT_INFO_FILE).exists():
        raise DataError(f"{out}: not a dqa-mcu export (no {EXPORT_INFO_FILE}); run dqa-mcu export first")
    if getattr(args, "qemu", False):  # (the report command runs this without the flag)
        fw.check_emulated(get_target(args.target or json.loads((out / EXPORT_INFO_FILE).read_text())["target"]))
    images = labels = None
    task = evaluate.task(args.task, args.scale)
    if args.data:
        tgraph = exported_tflite(out)
        if tgraph is None:
            model = QModel.load(out / QMODEL_FILE)
            images, labels = _model_data(args.data, task, model.tensors[model.input].shape,
                                         model_normalization(model), args.count)
        else:
            images, labels = subsample(args.count, *_s8_inputs(args.data, tgraph))
    report = run_project(out, images, labels, args.target, args.timeout, args.sanitize, task=task)
    if args.layers and report["layers"]:
        total = sum(count for _, count in report["layers"])
        print("instructions per layer (image 0):")
        for name, count in report["layers"]:
            print(f"  {name:32s} {count:12d}  {100 * count / max(total, 1):5.1f} %")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0 if report["bit_exact"] else 1


def cmd_flash(args) -> int:
    from dqa_mcu.device import flash
    out = Path(args.project)
    if not (out / EXPORT_INFO_FILE).exists():
        raise DataError(f"{out}: not a dqa-mcu export (no {EXPORT_INFO_FILE}); run dqa-mcu export first")
    target = get_target(json.loads((out / EXPORT_INFO_FILE).read_text())["target"])
    flash.require_board(target)
    if args.dry_run:
        print(flash.dry_run(fw.executable(out, target), target, args.probe, args.port))
        return 0
    probe = flash.choose_probe(args.probe)
    report = run_project(out, None, None, None, args.timeout, execute=lambda exe, target, timeout:
                         flash.flash_and_read(exe, target, probe, args.port, timeout))
    return 0 if report["bit_exact"] else 1


def cmd_report(args) -> int:
    from dqa_mcu import export_report
    out = Path(args.project)
    status = 0
    if args.data:  # run it first, as `dqa-mcu run OUT --data ... --json RUN` does
        args.json = args.run or str(out / export_report.RUN_FILE)
        status = cmd_run(args)
    print(f"wrote {export_report.write(out, args.run, args.output)}")
    return status


def cmd_demo(args) -> int:
    from dqa_mcu import demo
    from dqa_mcu.frontends.torch_import import import_module
    print("demo: training a small residual CNN on scikit-learn's digits (8x8 pixels) ...")
    train_x, train_y, test_x, test_y = demo.digits_dataset()
    module = demo.train_digits_model(train_x, train_y)
    graph = passes.optimize(import_module(module, train_x.shape[1:], demo.DEMO_NORMALIZATION))
    calib = calibrate(graph, train_x, show_progress=False)
    fp32 = evaluate.top1(evaluate.float_logits(graph, test_x, show_progress=False), test_y)
    int8 = quantize(graph, calib, QuantConfig(bits=8, extra_bits=0), train_x)
    dqa = quantize(graph, calib, QuantConfig(bits=args.bits), train_x)
    rows = [evaluate.EvalRow("FP32", fp32, None)] + [
        evaluate.eval_quantized(label, m, test_x, test_y, show_progress=False)
        for label, m in (("int8", int8), (f"DQA {args.bits}-bit (m=3, r=0.4)", dqa))]
    print(evaluate.format_table(rows, rows[1].memory.activations * 4))
    out = Path(args.output)
    images, labels = test_x[:args.count], test_y[:args.count]
    plan8 = planner.plan(int8, planner.DEFAULT_SCHEDULE)  # as export_project plans the DQA model
    plan = export_project(dqa, out, args.target, "digits CNN (demo)", images, None, None)
    report = run_project(out, images, labels, None, args.timeout)
    print(f"activation arena: DQA {plan.arena_bytes} bytes vs int8 {plan8.arena_bytes} bytes "
          f"({100 * plan.arena_bytes / plan8.arena_bytes:.0f} %)")
    return 0 if report["bit_exact"] else 1


# -- argument parsing --------------------------------------------------------------

def _model_args(p, many: bool = False) -> None:
    if many:
        p.add_argument("models", nargs="+", help="PyTorch model files (as for eval)")
        p.add_argument("--arch", nargs="+", help="built-in architecture of each state_dict checkpoint, in order")
    else:
        p.add_argument("model", help="model file: state_dict (.th/.pt) with --arch, TorchScript, .pt2, "
                                     "or a pickled nn.Module with --trust-pickle")
        p.add_argument("--arch", help="built-in architecture for a state_dict checkpoint (resnet20, resnet32, ...)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow loading a whole pickled model (pickles run code: only for files you trust)")
    p.add_argument("--pixel-scale", type=float, help="input normalization: x = (pixel * scale - mean) / std")
    p.add_argument("--mean", type=float, nargs="+")
    p.add_argument("--std", type=float, nargs="+")
    p.add_argument("--calib-count", type=int, default=DEFAULT_CALIB_IMAGES, help="calibration images to use (evenly spaced)")


def _quant_args(p) -> None:
    p.add_argument("--bits", type=int, help=f"activation bits n (2..8; default {QuantConfig.bits})")
    _dqa_args(p)
    p.add_argument("--rankings", metavar="FILE",
                   help="reuse a greedy/taylor ranking saved with --save-rankings (checked against the model)")
    p.add_argument("--save-rankings", metavar="FILE", help="write the greedy/taylor ranking computed here (.npz)")


def _dqa_args(p) -> None:
    p.add_argument("--extra-bits", type=int, default=3, help="DQA extra bits m for important channels (0 = direct)")
    p.add_argument("--important-ratio", type=float, default=0.4, help="share of important channels per tensor")
    p.add_argument("--clip", choices=CLIP_METHODS, default="mse", help="activation clipping range")
    p.add_argument("--rank", choices=sorted(RANKERS) + list(GLOBAL_RANKINGS),
                   help="channel ranking: per tensor, instant: noise (default: expected rounding-noise power), "
                        "range, random; whole network: greedy (the paper's search, one network evaluation "
                        "per channel: minutes, about 7 min for ResNet-32 on 1,000 images), taylor (a gradient "
                        "proxy for it: seconds)")
    p.add_argument("--rank-images", type=int, metavar="N",
                   help="calibration images a greedy/taylor ranking is computed on (default: all of --calib-count)")
    p.add_argument("--seed", type=int, default=0)


def _budget_args(p, required: bool) -> None:
    group = p.add_mutually_exclusive_group(required=required)
    group.add_argument("--memory-budget", type=int, metavar="BYTES",
                       help="fit the activation arena (SRAM) in BYTES: important channels leave the tensors "
                            "alive at the peak and fill the rest; without --bits, n and m are searched too")
    group.add_argument("--bits-budget", type=float, metavar="BITS",
                       help="at most BITS average stored bits per activation: important channels allocated "
                            "network-wide by whole-network score; without --bits, n and m are searched too")
    p.add_argument("--score-images", type=int, default=1000, metavar="N",
                   help="calibration images that score the candidates when n and m are searched")
    p.add_argument("--extra-bits-list", type=int, nargs="+", default=list(recommend.EXTRA_BITS), metavar="M",
                   help="DQA extra bits m to try when n and m are searched")


def _task_args(p) -> None:
    p.add_argument("--task", choices=evaluate.TASKS, default="classify",
                   help="what the output is: classify (logits, top-1); sr (an image in [0, 1], PSNR against "
                        "the image, whose --scale-fold downscale is the input); seg (per-pixel class scores, "
                        "mean IoU against the masks in y); ae (an image in [0, 1] or feature vectors, MSE "
                        "against the input). Whole-network rankings and recommend follow the output error "
                        "for every task but classify")
    p.add_argument("--scale", type=int, default=2, help="--task sr: the upscaling factor")


def _eval_args(p) -> None:
    p.add_argument("--data", required=True, help="test images with labels (.npz with x, y)")
    p.add_argument("--calib", required=True, help="calibration images (.npz with x, or a folder)")
    p.add_argument("--bits-list", type=int, nargs="+", default=[3, 4, 5], help="n values to tabulate")
    p.add_argument("--test-count", type=int, default=None, help="use N evenly spaced test images")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dqa-mcu", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("eval", help="accuracy and activation memory: FP32, int8, direct and DQA n-bit")
    _model_args(p)
    _quant_args(p)
    _eval_args(p)
    _task_args(p)
    p.add_argument("--tensor-report", action="store_true",
                   help="also print, per DQA configuration, each tensor's Huffman compression and bytes")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("table", help="accuracy / memory report of one or more PyTorch models: Markdown tables and "
                                     "PNG plots (FP32, the paper's setting, deployable direct and DQA, ablations)")
    _model_args(p, many=True)
    _dqa_args(p)
    _eval_args(p)
    p.add_argument("-o", "--output", required=True, help="directory for table.md, ablations.md and the PNG plots")
    p.add_argument("--bits", type=int, default=3, help="activation bits n of the ablations")
    p.add_argument("--ablation-model", help="name of the model to ablate (its --arch, or file stem; default: the last)")
    p.add_argument("--ablation-test-count", type=int, help="test images for the ablations (default: --test-count)")
    p.add_argument("--no-ablations", action="store_true")
    p.add_argument("--greedy-rankings", metavar="FILE",
                   help="the ablated model's greedy ranking: read if FILE exists, else computed and written there")
    p.add_argument("--paper-importance", choices=("greedy", "range", "random"), default="greedy",
                   help="paper-mode DQA's important channels: greedy (the paper's search, in its setting, on "
                        "--rank-images images: minutes), range, random")
    p.add_argument("--dataset", help="name of the test data in the tables (default: the --data file name)")
    p.set_defaults(func=cmd_table, rankings=None)

    p = sub.add_parser("export", help="quantize and write a C project (and build it if the toolchain is there)")
    _model_args(p)
    _quant_args(p)
    p.add_argument("--target", required=True, help=f"one of: {', '.join(TARGETS)}")
    p.add_argument("--calib", help="calibration images (.npz with x, or a folder)")
    p.add_argument("-o", "--output", default="dqa_out", help="output directory")
    p.add_argument("--force", action="store_true",
                   help="replace the output directory even if it is not an earlier export")
    p.add_argument("--data", help="images for the test harness (default: a few calibration images)")
    p.add_argument("-n", "--count", type=int, default=20, help="harness images")
    _task_args(p)
    p.add_argument("--ram-bytes", type=int, help="the RAM the activation arena may take (default: the "
                   "target's, less its static variables, stack and heap)")
    p.add_argument("--flash-bytes", type=int, help="the device's flash, to check that the constants and the "
                   "code fit (default: the target's)")
    _budget_args(p, required=False)
    p.add_argument("--no-build", action="store_true")
    _schedule_arg(p, "; the int8 mode of an int8 .tflite too (docs/spec_tflite.md 5.1)")
    p.add_argument("--input-rows", action="store_true",
                   help="int8 mode: the application hands the input row by row (dqa_model_set_input()), "
                        "streamed into a ring of rows when the schedule streams its readers")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("recommend", help="the configuration (n, m, important channels) that wins at a memory "
                                         "budget: every candidate fitted and scored on calibration images")
    _model_args(p)
    p.add_argument("--calib", required=True, help="calibration images (.npz with x and, best, y; or a folder)")
    _budget_args(p, required=True)
    p.add_argument("--clip", choices=CLIP_METHODS, default="mse", help="activation clipping range")
    p.add_argument("--rank", choices=GLOBAL_RANKINGS, default="taylor",
                   help="whole-network channel scores: taylor (seconds per candidate) or greedy (minutes each)")
    p.add_argument("--rankings", metavar="FILE", help="reuse one saved ranking for every candidate")
    p.add_argument("--rank-images", type=int, metavar="N",
                   help="calibration images the rankings are computed on (default: all of --calib-count)")
    p.add_argument("--data", help="test images with labels (or the task's targets): also print the winner's "
                                  "test score")
    p.add_argument("--test-count", type=int, default=None, help="use N evenly spaced test images")
    _task_args(p)
    p.add_argument("-o", "--output", metavar="FILE.dqa.npz", help="write the recommended model (export takes it)")
    p.add_argument("--seed", type=int, default=0)
    _schedule_arg(p, ": the arenas are planned as export will run them")
    p.set_defaults(func=cmd_recommend, bits=None, extra_bits=QuantConfig.extra_bits,
                   important_ratio=QuantConfig.important_ratio, save_rankings=None)

    p = sub.add_parser("run", help="build and run an exported project (QEMU for Cortex-M), compare bit for bit")
    p.add_argument("project")
    p.add_argument("--data", help="images (and labels) to run (.npz); default: the export's harness images")
    p.add_argument("-n", "--count", type=int, default=20)
    p.add_argument("--target", help="override the export's target")
    p.add_argument("--timeout", type=float, default=fw.DEFAULT_TIMEOUT_S, help="seconds before the run is stopped")
    p.add_argument("--sanitize", action="store_true", help="host target: build with ASan + UBSan")
    p.add_argument("--qemu", action="store_true", help="run under QEMU (the default for the cores and for "
                                                       "nucleo-f446re, whose image runs on netduinoplus2)")
    _task_args(p)
    p.add_argument("--layers", action="store_true", help="print instructions per layer")
    p.add_argument("--json", help="also write the report to this file")
    p.set_defaults(func=cmd_run)

    from dqa_mcu.device.flash import DEFAULT_PORT, PROBES
    p = sub.add_parser("flash", help="flash a board's export (openocd, st-flash or pyocd), read its serial "
                                     "output, compare bit for bit")
    p.add_argument("project")
    p.add_argument("--probe", choices=PROBES, help="the flasher (default: the first installed, in this order)")
    p.add_argument("--port", default=DEFAULT_PORT, help="the board's virtual COM port")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--timeout", type=float, default=fw.DEFAULT_TIMEOUT_S,
                   help="seconds to wait for the board's output")
    p.set_defaults(func=cmd_flash)

    p = sub.add_parser("report", help="one self-contained HTML page about an export: layers, arena, RAM and flash "
                                      "against all-8-bit, the run's instructions and accuracy")
    p.add_argument("project")
    p.add_argument("--run", metavar="FILE.json", help="the run to show (dqa-mcu run --json); default: "
                                                     "OUT/run.json if there is one")
    p.add_argument("--data", help="build and run the export on these images (.npz, labels for the accuracy) "
                                  "first, writing the run to --run or OUT/run.json")
    p.add_argument("-n", "--count", type=int, default=20, help="images to run with --data")
    p.add_argument("--timeout", type=float, default=fw.DEFAULT_TIMEOUT_S, help="seconds before the run is stopped")
    _task_args(p)
    p.add_argument("-o", "--output", metavar="FILE.html", help="the page (default: OUT/report.html)")
    p.set_defaults(func=cmd_report, target=None, sanitize=False, layers=False)

    p = sub.add_parser("demo", help="train a small CNN on scikit-learn digits, export with DQA, run under QEMU")
    p.add_argument("--target", default="cortex-m7", help=f"one of: {', '.join(TARGETS)}")
    p.add_argument("--bits", type=int, default=4)
    p.add_argument("-o", "--output", default="dqa_demo")
    p.add_argument("-n", "--count", type=int, default=50, help="test images to run on the target")
    p.add_argument("--timeout", type=float, default=fw.DEFAULT_TIMEOUT_S)
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # reports quote their command
    try:
        return args.func(args)
    except (GraphError, QuantizationError, DataError, fw.BuildError, ValueError, FileNotFoundError) as exc:
        print(f"dqa-mcu: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
