"""Arena and instructions per schedule (issue 13): each layer over whole tensors (layer), every run of
row-resumable layers as one row pipeline (stream), or streaming where it lowers the arena (auto).

    python bench/memory.py [--target cortex-m4] [--images 1] [--no-run] [-o memory_out]

Models from ../shared: ResNet-32 (DQA n = 3, m = 3, the goal: an arena of at most 0.25x our all-8-bit
whole-tensor arena, bit-exact) and MobileNetV2 (DQA n = 4, and all 8-bit). Calibration: 200 images.
Each schedule is exported, built and run under QEMU against the reference (instructions per
inference, goal <= 1.05x the layer schedule's). Prints Markdown.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from dqa_mcu import api
from dqa_mcu.codegen import planner
from dqa_mcu.quantize.quantizer import QuantConfig

SHARED = Path(__file__).resolve().parents[2] / "shared"
MODELS = [  # (label, file, arch, config)
    ("ResNet-32 DQA n=3", "resnet32_cifar10.th", "resnet32", QuantConfig(bits=3, extra_bits=3)),
    ("ResNet-32 all 8-bit", "resnet32_cifar10.th", "resnet32", QuantConfig(bits=8, extra_bits=0)),
    ("MobileNetV2 DQA n=4", "mobilenetv2_cifar10.pt2", None, QuantConfig(bits=4, extra_bits=3)),
    ("MobileNetV2 all 8-bit", "mobilenetv2_cifar10.pt2", None, QuantConfig(bits=8, extra_bits=0)),
]
GOAL_RATIO, GOAL_INSTRUCTIONS = 0.25, 1.05


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--target", default="cortex-m4")
    p.add_argument("--images", type=int, default=1, help="test images run per export")
    p.add_argument("--no-run", action="store_true", help="plan only: arenas, no build or QEMU run")
    p.add_argument("-o", "--output", default="memory_out")
    args = p.parse_args(argv)
    calib = np.load(SHARED / "data" / "cifar10_calib.npz")["x"][::25][:200]
    test = np.load(SHARED / "data" / "cifar10_test.npz")["x"][::500][:args.images]
    graphs, arenas, failures = {}, {}, 0
    print(f"| model | schedule | segments | arena bytes | vs layer | instructions ({args.target}) | vs layer | "
          "bit-exact |\n|---|---|---|---|---|---|---|---|")
    for label, file, arch, config in MODELS:
        if file not in graphs:
            graphs[file] = api.load(SHARED / "models" / file, (32, 32, 3), arch=arch)
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
    reference8 = arenas[("ResNet-32 all 8-bit", "layer")]
    best = min(arenas[("ResNet-32 DQA n=3", s)] for s in ("layer", "auto", "stream"))
    print(f"\nGoal: ResNet-32 DQA n=3 arena <= {GOAL_RATIO} x {reference8:,} (all-8-bit, layer) = "
          f"{GOAL_RATIO * reference8:,.0f} bytes; best schedule {best:,} bytes = {best / reference8:.3f}x: "
          f"{'met' if best <= GOAL_RATIO * reference8 else 'NOT met'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
