"""C backend figures on cortex-m7 (QEMU): ResNet-32 at DQA n = 3 and 4 and at all-8-bit.

    python bench/backend.py [--images 2]

For each configuration: the activation arena planned by the same planner,
RAM (.data + .bss), flash (.text + .rodata + .data), instructions per
inference (QEMU -icount shift=0: instructions, not cycles) and top-1 on the
test images (NumPy reference, bit-exact with the firmware), then the DQA
arena as a share of the all-8-bit arena (goal at n = 3: at most 50 %). The
last row asks for exactly that share with `--memory-budget` (dqa_mcu.quantize.budget):
important ratios move off the arena peak instead of being 0.4 everywhere.
"""
import argparse
import tempfile
from pathlib import Path

from dqa_mcu import api
from dqa_mcu.codegen import planner
from dqa_mcu.quantize.budget import fit_arena
from dqa_mcu.quantize.calibrate import calibrate, load_images
from dqa_mcu.quantize.quantizer import QuantConfig, quantize
from dqa_mcu.reference import evaluate, dqa as reference

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CONFIGS = {
    "all 8-bit": QuantConfig(bits=8, extra_bits=0),
    "direct 4-bit": QuantConfig(bits=4, extra_bits=0),
    "DQA n=4 (m=3, r=0.4)": QuantConfig(bits=4),
    "direct 3-bit": QuantConfig(bits=3, extra_bits=0),
    "DQA n=3 (m=3, r=0.4)": QuantConfig(bits=3),
}

BUDGET_ROW = "DQA n=3 (m=3), --memory-budget = 50 % of 8-bit"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2, help="test images run under QEMU per configuration")
    parser.add_argument("--target", default="cortex-m7")
    parser.add_argument("--accuracy-images", type=int, default=5000, help="test images for top-1 (reference)")
    args = parser.parse_args()
    test_x, test_y = load_images(SHARED / "data/cifar10_test.npz")
    calib_x, _ = load_images(SHARED / "data/cifar10_calib.npz")
    calib_x = calib_x[::5]
    graph = api.load_graph(str(SHARED / "models/resnet32_cifar10.th"), "resnet32", False, (32, 32, 3))
    calib = calibrate(graph, calib_x, show_progress=False)
    images = test_x[::len(test_x) // args.images][:args.images]
    models = {label: quantize(graph, calib, config, calib_x) for label, config in CONFIGS.items()}
    half = planner.plan(models["all 8-bit"], "layer").arena_bytes // 2
    models[BUDGET_ROW] = fit_arena(graph, calib, QuantConfig(bits=3), calib_x, half, log=lambda *a: None)
    acc_x, acc_y = test_x[:args.accuracy_images], test_y[:args.accuracy_images]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, model in models.items():
            top1 = evaluate.top1(reference.run(model, acc_x).output, acc_y)
            out = Path(tmp) / f"config{len(rows)}"
            plan = api.export_project(model, out, args.target, "resnet32", images, None, None, log=lambda *a: None)
            report = api.run_project(out, images, None, None, timeout=1800, log=lambda *a: None)
            if not report["bit_exact"]:
                raise SystemExit(f"{label}: the firmware does not match the reference")
            rows[label] = (plan.arena_bytes, report["ram"], report["flash"], report["instructions_per_inference"],
                           top1)
    base = rows["all 8-bit"]
    print(f"ResNet-32 on {args.target} (QEMU), {args.images} CIFAR-10 images run on the target, all bit-exact "
          f"with the reference; top-1 on {len(acc_x)} test images")
    print("| configuration | arena bytes | vs 8-bit | RAM bytes | flash bytes | instructions / inference | vs 8-bit "
          "| top-1 % |")
    print("|---|---|---|---|---|---|---|---|")
    for label, (arena, ram, flash, instr, top1) in rows.items():
        print(f"| {label} | {arena} | {100 * arena / base[0]:.1f} % | {ram} | {flash} | {instr:.0f} | "
              f"{instr / base[3]:.2f}x | {top1:.2f} |")
    for label in ("DQA n=3 (m=3, r=0.4)", BUDGET_ROW):
        share = rows[label][0] / base[0]
        print(f"{label}: arena / all-8-bit arena = {100 * share:.1f} % "
              f"(goal: <= 50 %: {'met' if share <= 0.5 else 'NOT met'})")


if __name__ == "__main__":
    main()
