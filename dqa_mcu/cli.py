"""dqa-mcu command line: the one place that wires the stages together.

    dqa-mcu eval   MODEL --arch resnet32 --data test.npz --calib calib.npz
    dqa-mcu export MODEL --target cortex-m7 --calib calib.npz -o out/
    dqa-mcu run    out/ [--data test.npz] [-n 20]
    dqa-mcu demo
"""
from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import build as fw
from . import codegen, evaluate, passes, planner, reference
from .calibrate import DataError, calibrate, load_images, subsample
from .ir import GraphError
from .qmodel import QModel
from .quantize import CLIP_METHODS, QuantConfig, QuantizationError, quantize
from .ranking import RANKERS
from .targets import TARGETS, get_target

QMODEL_FILE = "model.dqa.npz"
EXPORT_INFO_FILE = "dqa_export.json"
HARNESS_IMAGES_FILE = "harness_images.npz"
DEFAULT_CALIB_IMAGES = 2000


# -- stages wired together -----------------------------------------------------

def load_graph(path: str, arch: str | None, trust_pickle: bool, input_shape, normalization=None):
    from .torch_import import import_module, load_torch_model
    module, norm = load_torch_model(path, arch=arch, trust_pickle=trust_pickle)
    return passes.optimize(import_module(module, input_shape, normalization or norm))


def _normalization_override(args):
    if args.mean is None and args.std is None and args.pixel_scale is None:
        return None
    from .zoo import Normalization
    return Normalization(args.pixel_scale if args.pixel_scale is not None else 1 / 255,
                         tuple(args.mean or (0.0,)), tuple(args.std or (1.0,)))


def _config(args, **overrides) -> QuantConfig:
    config = QuantConfig(bits=args.bits, extra_bits=args.extra_bits, important_ratio=args.important_ratio,
                         clip=args.clip, rank=args.rank, seed=args.seed)
    config = replace(config, **overrides)
    config.validate()
    return config


def export_project(model: QModel, out: Path, target_name: str, source: str, images: np.ndarray,
                   ram_bytes: int | None, flash_bytes: int | None, log=print) -> planner.MemoryPlan:
    target = get_target(target_name)
    plan = planner.plan(model)
    ram_limit = ram_bytes or target.ram_bytes
    if plan.arena_bytes > ram_limit:
        raise QuantizationError(f"activation arena of {plan.arena_bytes} bytes does not fit {target.name}'s "
                                f"RAM of {ram_limit} bytes; use fewer bits or a smaller model")
    const_bytes = sum(a.nbytes for n in model.nodes for a in n.arrays.values())
    flash_limit = flash_bytes or target.flash_bytes
    if const_bytes > flash_limit:
        raise QuantizationError(f"weights and tables need {const_bytes} bytes, more than {target.name}'s "
                                f"flash of {flash_limit} bytes")
    codegen.generate(model, plan, out, target.name, source=source, images=images)
    model.save(out / QMODEL_FILE)
    np.savez_compressed(out / HARNESS_IMAGES_FILE, x=images)
    (out / EXPORT_INFO_FILE).write_text(json.dumps({"target": target.name, "source": source}, indent=1) + "\n")
    log(plan.describe(model))
    log(f"wrote {out}/ for {target.name}: arena {plan.arena_bytes} bytes, constants {const_bytes} bytes "
        f"(memory plan also in {out / 'memory_plan.txt'})")
    return plan


def run_project(out: Path, images: np.ndarray | None, labels: np.ndarray | None, target_name: str | None,
                timeout: float, sanitize: bool = False, log=print) -> dict:
    info = json.loads((out / EXPORT_INFO_FILE).read_text())
    target = get_target(target_name or info["target"])
    model = QModel.load(out / QMODEL_FILE)
    if images is None:
        images = np.load(out / HARNESS_IMAGES_FILE)["x"]
    codegen.write_harness_inputs(out, images)
    exe = fw.build(out, target, sanitize=sanitize)
    result = fw.run(exe, target, timeout=timeout)
    expected = reference.run(model, images)
    if result.outputs.shape == expected.output.shape:
        # outputs and the overflow status (spec 2.3) must both match, image by image
        differs = (result.outputs != expected.output).any(axis=1) | (result.overflowed != expected.overflowed_tensors)
    else:
        differs = np.ones(len(images), dtype=bool)
    exact = not differs.any()
    report = {"target": target.name, "board": result.board, "images": len(images), "bit_exact": bool(exact),
              "mismatched_images": [int(i) for i in np.flatnonzero(differs)],
              "instructions_per_inference": float(result.instructions.mean()),
              "overflowed_tensors": int(result.overflowed.sum()), "layers": result.layers}
    if target.qemu_machine:
        report.update(fw.sizes(exe))
        report.pop("sections", None)
    if labels is not None:
        report["accuracy"] = evaluate.top1(result.outputs, labels)
    log(f"{target.name} ({result.board}): {len(images)} images, "
        f"{'bit-exact with the reference' if exact else 'MISMATCH with the reference on images ' + str(report['mismatched_images'][:10])}")
    if target.qemu_machine:
        log(f"  instructions per inference {report['instructions_per_inference']:.0f}, "
            f"RAM (.data + .bss) {report['ram']} bytes, flash (.text + .rodata + .data) {report['flash']} bytes")
    if labels is not None:
        log(f"  top-1 on these images: {report['accuracy']:.2f} %")
    if report["overflowed_tensors"]:
        log(f"  error-stream overflows (handled, spec 2.3): {report['overflowed_tensors']}")
    return report


# -- commands --------------------------------------------------------------------

def cmd_eval(args) -> int:
    test_x, test_y = load_images(args.data)
    if test_y is None:
        raise DataError(f"{args.data}: evaluation needs labels (an array 'y')")
    calib_x, _ = load_images(args.calib, test_x.shape[1:])
    test_x, test_y = subsample(args.test_count, test_x, test_y)
    (calib_x,) = subsample(args.calib_count, calib_x)
    graph = load_graph(args.model, args.arch, args.trust_pickle, test_x.shape[1:], _normalization_override(args))
    calib = calibrate(graph, calib_x)
    rows = [evaluate.EvalRow("FP32", evaluate.top1(evaluate.float_logits(graph, test_x), test_y), None)]
    configs = [("int8 (all activations 8 bits)", _config(args, bits=8, extra_bits=0))]
    for n in args.bits_list:
        configs.append((f"direct {n}-bit", _config(args, bits=n, extra_bits=0)))
        configs.append((f"DQA {n}-bit (m={args.extra_bits}, r={args.important_ratio}, {args.rank})",
                        _config(args, bits=n)))
    for label, config in configs:
        rows.append(evaluate.eval_quantized(label, quantize(graph, calib, config, calib_x), test_x, test_y))
    fp32_bytes = rows[1].memory.activations * 4
    print(f"{Path(args.model).name}: {len(test_x)} test images, {len(calib_x)} calibration images, "
          f"clip {args.clip}")
    print(evaluate.format_table(rows, fp32_bytes))
    if args.tensor_report:
        for row in rows[1:]:
            if row.huffman_bits is not None:
                print(f"\nPer tensor, {row.label} (Huffman measured on the test images):")
                print(row.tensors)
    return 0


def cmd_export(args) -> int:
    target = get_target(args.target)  # check the arguments before any slow work
    config = _config(args)
    calib_x = None
    if args.model.endswith(".npz"):
        model = QModel.load(args.model)
    else:
        if not args.calib:
            raise DataError("export needs calibration images: --calib FILE (.npz with x, or a folder)")
        calib_x, _ = load_images(args.calib)
        (calib_x,) = subsample(args.calib_count, calib_x)
        graph = load_graph(args.model, args.arch, args.trust_pickle, calib_x.shape[1:],
                           _normalization_override(args))
        model = quantize(graph, calibrate(graph, calib_x), config, calib_x)
    images = _harness_images(args, model, calib_x)
    out = Path(args.output)
    export_project(model, out, target.name, args.model, images, args.ram_bytes, args.flash_bytes)
    if args.no_build:
        return 0
    try:
        exe = fw.build(out, target)
    except fw.BuildError as exc:
        print(f"dqa-mcu: not built: {exc}", file=sys.stderr)
        return 0 if "not found" in str(exc) else 1
    print(f"built {exe}")
    if target.qemu_machine:
        print(f"  flash it with your board's tools (st-flash, openocd, STM32CubeProgrammer) after adding its "
              f"linker script; QEMU: dqa-mcu run {out}")
    return 0


def _harness_images(args, model: QModel, calib_x):
    shape = model.tensors[model.input].shape
    if getattr(args, "data", None):
        x, _ = load_images(args.data, shape)
        return subsample(args.count, x)[0]
    if calib_x is not None:
        return subsample(min(args.count, 4), calib_x)[0]
    return np.zeros((1,) + tuple(shape), dtype=np.uint8)


def cmd_run(args) -> int:
    out = Path(args.project)
    if not (out / EXPORT_INFO_FILE).exists():
        raise DataError(f"{out}: not a dqa-mcu export (no {EXPORT_INFO_FILE}); run dqa-mcu export first")
    images = labels = None
    if args.data:
        model = QModel.load(out / QMODEL_FILE)
        images, labels = load_images(args.data, model.tensors[model.input].shape)
        images, labels = subsample(args.count, images, labels)
    report = run_project(out, images, labels, args.target, args.timeout, args.sanitize)
    if args.layers and report["layers"]:
        total = sum(count for _, count in report["layers"])
        print("instructions per layer (image 0):")
        for name, count in report["layers"]:
            print(f"  {name:32s} {count:12d}  {100 * count / max(total, 1):5.1f} %")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
    return 0 if report["bit_exact"] else 1


def cmd_demo(args) -> int:
    from . import demo
    from .torch_import import import_module
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
    plan8 = planner.plan(int8)
    plan = export_project(dqa, out, args.target, "digits CNN (demo)", images, None, None)
    report = run_project(out, images, labels, None, args.timeout)
    print(f"activation arena: DQA {plan.arena_bytes} bytes vs int8 {plan8.arena_bytes} bytes "
          f"({100 * plan.arena_bytes / plan8.arena_bytes:.0f} %)")
    return 0 if report["bit_exact"] else 1


# -- argument parsing --------------------------------------------------------------

def _model_args(p) -> None:
    p.add_argument("model", help="model file: state_dict (.th/.pt) with --arch, TorchScript, .pt2, "
                                 "or a pickled nn.Module with --trust-pickle")
    p.add_argument("--arch", help="built-in architecture for a state_dict checkpoint (resnet20, resnet32, ...)")
    p.add_argument("--trust-pickle", action="store_true",
                   help="allow loading a whole pickled model (pickles run code: only for files you trust)")
    p.add_argument("--pixel-scale", type=float, help="input normalization: x = (pixel * scale - mean) / std")
    p.add_argument("--mean", type=float, nargs="+")
    p.add_argument("--std", type=float, nargs="+")
    p.add_argument("--calib-count", type=int, default=DEFAULT_CALIB_IMAGES, help="calibration images to use (evenly spaced)")


def _quant_args(p, bits_default: int = 4) -> None:
    p.add_argument("--bits", type=int, default=bits_default, help="activation bits n (2..8)")
    p.add_argument("--extra-bits", type=int, default=3, help="DQA extra bits m for important channels (0 = direct)")
    p.add_argument("--important-ratio", type=float, default=0.4, help="share of important channels per tensor")
    p.add_argument("--clip", choices=CLIP_METHODS, default="mse", help="activation clipping range")
    p.add_argument("--rank", choices=sorted(RANKERS), default="noise", help="channel ranking criterion")
    p.add_argument("--seed", type=int, default=0)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dqa-mcu", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("eval", help="accuracy and activation memory: FP32, int8, direct and DQA n-bit")
    _model_args(p)
    _quant_args(p)
    p.add_argument("--data", required=True, help="test images with labels (.npz with x, y)")
    p.add_argument("--calib", required=True, help="calibration images (.npz with x, or a folder)")
    p.add_argument("--bits-list", type=int, nargs="+", default=[3, 4, 5], help="n values to tabulate")
    p.add_argument("--test-count", type=int, default=None, help="use N evenly spaced test images")
    p.add_argument("--tensor-report", action="store_true",
                   help="also print, per DQA configuration, each tensor's Huffman compression and bytes")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("export", help="quantize and write a C project (and build it if the toolchain is there)")
    _model_args(p)
    _quant_args(p)
    p.add_argument("--target", required=True, help=f"one of: {', '.join(TARGETS)}")
    p.add_argument("--calib", help="calibration images (.npz with x, or a folder)")
    p.add_argument("-o", "--output", default="dqa_out", help="output directory")
    p.add_argument("--data", help="images for the test harness (default: a few calibration images)")
    p.add_argument("-n", "--count", type=int, default=20, help="harness images")
    p.add_argument("--ram-bytes", type=int, help="the device's RAM, to check the arena fits")
    p.add_argument("--flash-bytes", type=int, help="the device's flash, to check the weights fit")
    p.add_argument("--no-build", action="store_true")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("run", help="build and run an exported project (QEMU for Cortex-M), compare bit for bit")
    p.add_argument("project")
    p.add_argument("--data", help="images (and labels) to run (.npz); default: the export's harness images")
    p.add_argument("-n", "--count", type=int, default=20)
    p.add_argument("--target", help="override the export's target")
    p.add_argument("--timeout", type=float, default=fw.DEFAULT_TIMEOUT_S, help="seconds before the run is stopped")
    p.add_argument("--sanitize", action="store_true", help="host target: build with ASan + UBSan")
    p.add_argument("--layers", action="store_true", help="print instructions per layer")
    p.add_argument("--json", help="also write the report to this file")
    p.set_defaults(func=cmd_run)

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
    try:
        return args.func(args)
    except (GraphError, QuantizationError, DataError, fw.BuildError, ValueError, FileNotFoundError) as exc:
        print(f"dqa-mcu: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
