"""Arena and instructions per schedule (issue 13): each layer over whole tensors (layer), every run of
row-resumable layers as one row pipeline (stream), or streaming where it lowers the arena (auto).

    python bench/memory.py [--target cortex-m4] [--images 1] [--no-run] [-o memory_out]

Models from ../shared: ResNet-32 (DQA n = 3, m = 3, the goal: an arena of at most 0.25x our all-8-bit
whole-tensor arena, bit-exact; the configuration `recommend` chooses; all 8-bit) and MobileNetV2 (DQA
n = 4, and all 8-bit). Calibration: 200 images. Each schedule is exported, built and run under QEMU
against the reference (instructions per inference, goal <= 1.05x the layer schedule's). Prints Markdown.

The recommended ResNet-32 is `recommend`'s choice at the README's budget, 25,696 arena bytes (half the
all-8-bit layer arena), fitted under the layer schedule as the README's accuracy for it was measured:
the same model, and so the same accuracy, whose arena the other schedules then lower. Its search
(taylor rankings, candidates scored by KL divergence from FP32) runs on the bench's 200 calibration
images instead of the CLI's 2,000 and 1,000 to keep the bench to minutes (about 5 of them on 2 cores),
so its choice is printed, with its score on those images.

The TFLite-exact int8 mode (issue 13, docs/spec_tflite.md 5.1): the MLPerf Tiny ResNet-8 int8 (CIFAR-10
test images), the VWW MobileNetV1 0.25 that bench/perf.py converts (random int8 inputs) and the
MobileNetV2 that bench/mobilenetv2_int8.py converts from PyTorch (CIFAR-10 test images; the .tflite is
kept in the output directory) per schedule, and under auto with the input handed row by row
(`--input-rows`), each run against reference.tflite (which the tests hold equal to the LiteRT
interpreter). ResNet-8 and VWW are set against TFLite Micro's arenas for them (goals <= 0.35x of
54,996 B and <= 0.25x of 100,708 B, at <= 1.05x the layer schedule's instructions); MobileNetV2's is not
known, so its arenas are set against our layer schedule's, with no goal.
`--models int8` runs only these rows, `--models dqa` only the others.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from dqa_mcu import api
from dqa_mcu.codegen import planner
from dqa_mcu.quantize.calibrate import calibrate
from dqa_mcu.quantize.greedy import rankings_for
from dqa_mcu.quantize.quantizer import QuantConfig
from dqa_mcu.quantize.recommend import Budget, recommend

SHARED = Path(__file__).resolve().parents[2] / "shared"
RECOMMEND_BUDGET = Budget(arena_bytes=25_696)  # the README's: half the all-8-bit layer arena
RECOMMEND_SCHEDULE = "layer"  # the README's accuracy for the choice was measured on this fit
MODELS = [  # (label, file, arch, config, or the budget `recommend` chooses one for)
    ("ResNet-32 DQA n=3", "resnet32_cifar10.th", "resnet32", QuantConfig(bits=3, extra_bits=3)),
    ("ResNet-32 recommended", "resnet32_cifar10.th", "resnet32", RECOMMEND_BUDGET),
    ("ResNet-32 all 8-bit", "resnet32_cifar10.th", "resnet32", QuantConfig(bits=8, extra_bits=0)),
    ("MobileNetV2 DQA n=4", "mobilenetv2_cifar10.pt2", None, QuantConfig(bits=4, extra_bits=3)),
    ("MobileNetV2 all 8-bit", "mobilenetv2_cifar10.pt2", None, QuantConfig(bits=8, extra_bits=0)),
]
GOAL_RATIO, GOAL_INSTRUCTIONS = 0.25, 1.05
FLOAT_CHECK_IMAGES = 8  # calibration images MobileNetV2's Keras rebuild is checked on against PyTorch
INT8_MODELS = [  # (label, file stem, TFLite Micro's arena for it (docs/results.md), goal ratio; None: not known)
    ("ResNet-8 int8", "resnet8", 54_996, 0.35),
    ("VWW MobileNetV1 0.25 int8", "vww", 100_708, 0.25),
    ("MobileNetV2 int8", "mobilenetv2", None, None),
]
INT8_SCHEDULES = [("layer", False), ("auto", False), ("stream", False), ("auto", True)]  # (schedule, input rows)


def int8_rows(args, calib: np.ndarray, test: np.ndarray) -> int:
    """The int8 rows and their goal lines; the number of exports that were not bit-exact."""
    failures = 0
    print(f"\n| model | schedule | segments | arena bytes | arena vs | instructions ({args.target}) | "
          "vs layer | bit-exact |\n|---|---|---|---|---|---|---|---|")
    goals = []
    Path(args.output).mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # the conversions _int8_model imports
    for label, stem, tflm, ratio in INT8_MODELS:
        graph, x = _int8_model(args, stem, calib, test)
        bad, goal = _int8_model_rows(args, label, stem, graph, x, tflm, ratio)
        failures += bad
        goals += [goal] if goal else []
    print("\n" + "\n".join(goals))
    return failures


def _int8_model(args, stem: str, calib: np.ndarray, test: np.ndarray) -> tuple:
    """An INT8_MODELS entry's TFLiteGraph and its int8 inputs, one per test image."""
    from dqa_mcu.frontends.tflite_import import load_tflite
    from dqa_mcu.reference.tflite import quantize_input
    import mobilenetv2_int8
    import perf  # its VWW conversion
    if stem == "resnet8":
        graph = load_tflite(SHARED / "models" / "mlperf_tiny_ic_resnet8_int8.tflite")
        return graph, quantize_input(graph, test)
    if stem == "mobilenetv2":
        graph = load_tflite(mobilenetv2_int8.build_mobilenetv2_int8(
            Path(args.output) / f"{stem}_int8.tflite", calib, calib[:FLOAT_CHECK_IMAGES]))
        return graph, quantize_input(graph, mobilenetv2_int8.normalize(test))
    graph = load_tflite(perf.build_int8(stem, Path(args.output) / f"{stem}_int8.tflite"))
    return graph, np.random.default_rng(0).integers(-128, 128, (len(test),) + graph.input.shape[1:]).astype(np.int8)


def _int8_model_rows(args, label: str, stem: str, graph, x: np.ndarray, tflm: int | None,
                     ratio: float | None) -> tuple:
    """One int8 model's rows per schedule: (exports not bit-exact, its goal line: None without `tflm`)."""
    from dqa_mcu.codegen.tflite import plan_s8
    failures, base, best, layer = 0, None, None, None
    for schedule, input_rows in INT8_SCHEDULES:
        plan = plan_s8(graph, schedule, input_rows)
        arena = plan.memory.arena_bytes
        layer = layer or arena  # INT8_SCHEDULES starts with the layer schedule
        versus = f"{arena / tflm:.3f}x of TFLite Micro's {tflm:,}" if tflm else f"{arena / layer:.3f}x of layer's"
        name = schedule + (" + input rows" if input_rows else "")
        instructions, vs_layer, exact = "-", "-", "-"
        if not args.no_run:
            out = Path(args.output) / f"{stem}_int8_{schedule}{'_input_rows' if input_rows else ''}"
            api.export_s8_project(graph, out, args.target, str(graph.source), x, None, None, log=lambda *a: None,
                                  schedule=schedule, input_rows=input_rows)
            report = api.run(out, x, log=lambda *a: None)
            failures += not report["bit_exact"]
            count = report["instructions_per_inference"]
            base = base or count
            instructions, vs_layer, exact = f"{count:,.0f}", f"{count / base:.4f}x", report["bit_exact"]
            if count <= GOAL_INSTRUCTIONS * base and (best is None or arena < best[0]):
                best = (arena, name, count / base)
        elif best is None or arena < best[0]:
            best = (arena, name, None)
        print(f"| {label} | {name} | {len(plan.memory.segments)} | {arena:,} | {versus} | "
              f"{instructions} | {vs_layer} | {exact} |", flush=True)
    if tflm is None:
        return failures, None
    within = "" if best[2] is None else f" at {best[2]:.4f}x the layer schedule's instructions"
    return failures, (f"Goal: {label} arena <= {ratio} x {tflm:,} (TFLite Micro) = {int(ratio * tflm):,} bytes at <= "
                      f"{GOAL_INSTRUCTIONS}x instructions; best {best[0]:,} bytes ({best[1]}) = {best[0] / tflm:.3f}x"
                      f"{within}: {'met' if best[0] <= ratio * tflm else 'NOT met'}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default="cortex-m4")
    p.add_argument("--images", type=int, default=1, help="test images run per export")
    p.add_argument("--no-run", action="store_true", help="plan only: arenas, no build or QEMU run")
    p.add_argument("-o", "--output", default="memory_out")
    p.add_argument("--models", choices=("all", "dqa", "int8"), default="all")
    args = p.parse_args(argv)
    if not 1 <= args.images <= 10:
        p.error(f"--images {args.images}: give 1 to 10 (one test image per class)")
    calib_set = np.load(SHARED / "data" / "cifar10_calib.npz")
    calib, calib_labels = calib_set["x"][::25][:200], calib_set["y"][::25][:200]
    test = np.load(SHARED / "data" / "cifar10_test.npz")["x"][::500][:args.images]
    failures = 0 if args.models == "int8" else dqa_rows(args, calib, calib_labels, test)
    if args.models != "dqa":
        failures += int8_rows(args, calib, test)
    return 1 if failures else 0


def recommended(graph, calib: np.ndarray, calib_labels: np.ndarray, limit: Budget) -> tuple:
    """`recommend`'s model for `limit` (taylor rankings; rankings, fit and scores on `calib`) and a line
    naming its choice."""
    calibration = calibrate(graph, calib, show_progress=False)

    def rank(config):
        return rankings_for(config, graph, calibration, calib, calib_labels, show_progress=False)

    best, _ = recommend(graph, calibration, QuantConfig(rank="taylor"), calib, limit, rank, calib, calib_labels,
                        log=lambda *a: None, schedule=RECOMMEND_SCHEDULE)
    return best.model, (f"recommend at {limit} ({RECOMMEND_SCHEDULE} schedule): {best.label}, "
                        f"{100 * best.important_share:.1f} % of activations important, {best.bits:.2f} bits per "
                        f"activation, KL {best.divergence:.4f} to FP32 and top-1 {best.top1:.2f} % on the "
                        f"{len(calib)} calibration images that scored it")


def dqa_rows(args, calib: np.ndarray, calib_labels: np.ndarray, test: np.ndarray) -> int:
    """The DQA path's rows and their goal line; the number of exports that were not bit-exact."""
    graphs, arenas, failures = {}, {}, 0
    print(f"| model | schedule | segments | arena bytes | vs layer | instructions ({args.target}) | vs layer | "
          "bit-exact |\n|---|---|---|---|---|---|---|---|")
    for label, file, arch, config in MODELS:
        if file not in graphs:
            graphs[file] = api.load(SHARED / "models" / file, (32, 32, 3), arch=arch)
        choice = None
        if isinstance(config, Budget):
            model, choice = recommended(graphs[file], calib, calib_labels, config)
        else:
            model = api.quantize_model(graphs[file], calib, config)
        base_instructions = None
        for schedule in ("layer", "auto", "stream"):
            plan = planner.plan(model, schedule)
            arenas[(label, schedule)] = plan.arena_bytes
            instructions, exact = "-", "-"
            if not args.no_run:
                out = Path(args.output) / f"{label.replace(' ', '_')}_{schedule}"
                api.export(model, out, args.target, test, log=lambda *a: None, schedule=schedule)
                report = api.run(out, test, log=lambda *a: None)
                failures += not report["bit_exact"]
                count = report["instructions_per_inference"]
                base_instructions = base_instructions or count
                instructions, exact = f"{count:,.0f} | {count / base_instructions:.4f}x", report["bit_exact"]
            else:
                instructions = "- | -"
            layer = arenas[(label, "layer")]
            print(f"| {label} | {schedule} | {len(plan.segments)} | {plan.arena_bytes:,} | "
                  f"{plan.arena_bytes / layer:.3f}x | {instructions} | {exact} |", flush=True)
        if label.startswith("ResNet-32 DQA"):
            print("\n" + "\n".join(s.describe() for s in planner.plan(model, "auto").segments) + "\n")
        if choice:
            print(f"\n{label}: {choice}\n")
    reference8 = arenas[("ResNet-32 all 8-bit", "layer")]
    best = min(arenas[("ResNet-32 DQA n=3", s)] for s in ("layer", "auto", "stream"))
    print(f"\nGoal: ResNet-32 DQA n=3 arena <= {GOAL_RATIO} x {reference8:,} (all-8-bit, layer) = "
          f"{GOAL_RATIO * reference8:,.0f} bytes; best schedule {best:,} bytes = {best / reference8:.3f}x: "
          f"{'met' if best <= GOAL_RATIO * reference8 else 'NOT met'}")
    return failures


if __name__ == "__main__":
    sys.exit(main())
