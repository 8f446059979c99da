"""C backend figures on cortex-m7 (QEMU): ResNet-32 at DQA n = 3 and 4 and at all-8-bit.

    python bench/backend.py [--images 2]

For each configuration: the activation arena planned by the same planner,
RAM (.data + .bss), flash (.text + .rodata + .data) and instructions per
inference (QEMU -icount shift=0: instructions, not cycles), then the DQA
arena as a share of the all-8-bit arena (goal at n = 3: at most 50 %).
"""
import argparse
import tempfile
from pathlib import Path

import numpy as np

from dqa_mcu import cli, passes
from dqa_mcu.calibrate import calibrate, load_images
from dqa_mcu.quantize import QuantConfig, quantize
from dqa_mcu.torch_import import import_module, load_torch_model

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
CONFIGS = {
    "all 8-bit": QuantConfig(bits=8, extra_bits=0),
    "direct 4-bit": QuantConfig(bits=4, extra_bits=0),
    "DQA n=4 (m=3, r=0.4)": QuantConfig(bits=4),
    "direct 3-bit": QuantConfig(bits=3, extra_bits=0),
    "DQA n=3 (m=3, r=0.4)": QuantConfig(bits=3),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=2, help="test images run under QEMU per configuration")
    parser.add_argument("--target", default="cortex-m7")
    args = parser.parse_args()
    test_x, _ = load_images(SHARED / "data/cifar10_test.npz")
    calib_x, _ = load_images(SHARED / "data/cifar10_calib.npz")
    calib_x = calib_x[::5]
    module, norm = load_torch_model(SHARED / "models/resnet32_cifar10.th", arch="resnet32")
    graph = passes.optimize(import_module(module, (32, 32, 3), norm))
    calib = calibrate(graph, calib_x, show_progress=False)
    images = test_x[::len(test_x) // args.images][:args.images]
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, config in CONFIGS.items():
            model = quantize(graph, calib, config, calib_x)
            out = Path(tmp) / f"config{len(rows)}"
            plan = cli.export_project(model, out, args.target, "resnet32", images, None, None, log=lambda *a: None)
            report = cli.run_project(out, images, None, None, timeout=1800, log=lambda *a: None)
            if not report["bit_exact"]:
                raise SystemExit(f"{label}: the firmware does not match the reference")
            rows[label] = (plan.arena_bytes, report["ram"], report["flash"], report["instructions_per_inference"])
    base = rows["all 8-bit"]
    print(f"ResNet-32 on {args.target} (QEMU), {args.images} CIFAR-10 images, all bit-exact with the reference")
    print("| configuration | arena bytes | vs 8-bit | RAM bytes | flash bytes | instructions / inference | vs 8-bit |")
    print("|---|---|---|---|---|---|---|")
    for label, (arena, ram, flash, instr) in rows.items():
        print(f"| {label} | {arena} | {100 * arena / base[0]:.1f} % | {ram} | {flash} | {instr:.0f} | "
              f"{instr / base[3]:.2f}x |")
    share = rows["DQA n=3 (m=3, r=0.4)"][0] / base[0]
    print(f"DQA n=3 arena / all-8-bit arena = {100 * share:.1f} % (goal: <= 50 %: {'met' if share <= 0.5 else 'NOT met'})")


if __name__ == "__main__":
    main()
