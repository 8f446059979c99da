"""The networks beyond the CIFAR ResNets (issue 10): MobileNetV2 and the x2 SR network of ../shared.

    python bench/networks.py [--test-count N] [--skip-recommend | --recommend-only] [--networks mobilenetv2 sr]

Every row is the NumPy integer reference (which the C matches bit for bit)
on the CIFAR-10 (JPEG q75) test images: MobileNetV2 top-1 for FP32, int8,
direct n and DQA n (m = 3, r = 0.4, noise ranking) at n = 3, 4, 5, and what
`recommend` picks at half the int8 arena; the SR network's PSNR (its input
is the test image downscaled 2x2, rounded to uint8 pixels) for FP32, int8,
direct 4-bit, DQA n = 4 and n = 3, and bilinear upsampling as the floor.
Stored bits per activation and the planned arena beside each row.
Calibration: 2,000 images of cifar10_calib.npz (never the test file).
"""
import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dqa_mcu import api
from dqa_mcu.codegen import planner
from dqa_mcu.frontends.zoo import Normalization
from dqa_mcu.quantize.calibrate import calibrate, load_images, subsample
from dqa_mcu.quantize.greedy import rankings_for
from dqa_mcu.quantize.quantizer import QuantConfig, quantize
from dqa_mcu.quantize.recommend import Budget, recommend
from dqa_mcu.reference import evaluate

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MOBILENET_NORMALIZATION = Normalization(1 / 255, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))
HEADER = "| configuration | {metric} | bits / activation | arena bytes |\n|---|---|---|---|"


def configs(bits_list):
    rows = [("int8", QuantConfig(bits=8, extra_bits=0))]
    for n in bits_list:
        rows += [(f"direct {n}-bit", QuantConfig(bits=n, extra_bits=0)),
                 (f"DQA n = {n} (m = 3, r = 0.4)", QuantConfig(bits=n, extra_bits=3))]
    return rows


def table(graph, task, calib_x, test_x, targets, rows, extra=()):
    calib = calibrate(graph, calib_x, show_progress=False)
    print(HEADER.format(metric=task.metric))
    print(f"| FP32 | {task.score(evaluate.float_logits(graph, test_x, show_progress=False), targets):.2f} "
          f"| 32 | |")
    for label, config in rows:
        model = quantize(graph, calib, config, calib_x)
        row = evaluate.eval_quantized(label, model, test_x, targets, show_progress=False, task=task)
        print(f"| {label} | {row.accuracy:.2f} | {row.memory.bits_per_activation:.2f} | "
              f"{planner.plan(model, "layer").arena_bytes} |")
    for line in extra:
        print(line)
    return calib


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--test-count", type=int, default=None)
    parser.add_argument("--skip-recommend", action="store_true")
    parser.add_argument("--recommend-only", action="store_true", help="MobileNetV2: FP32 and the recommendation")
    parser.add_argument("--networks", nargs="+", choices=("mobilenetv2", "sr"), default=["mobilenetv2", "sr"])
    args = parser.parse_args()
    test_x, test_y = subsample(args.test_count, *load_images(SHARED / "data/cifar10_test.npz"))
    calib_x, calib_y = subsample(2000, *load_images(SHARED / "data/cifar10_calib.npz"))
    print(f"{time.strftime('%Y-%m-%d')}: CIFAR-10 (JPEG q75), {len(test_x)} test images, {len(calib_x)} "
          "calibration images\n")

    if "mobilenetv2" in args.networks:
        mobilenetv2(args, test_x, test_y, calib_x, calib_y)
    if "sr" in args.networks:
        super_resolution(test_x, calib_x)


def mobilenetv2(args, test_x, test_y, calib_x, calib_y):
    print("MobileNetV2 (mobilenetv2_cifar10.pt2)")
    graph = api.load_graph(str(SHARED / "models/mobilenetv2_cifar10.pt2"), None, False, (32, 32, 3),
                           MOBILENET_NORMALIZATION)
    rows = [] if args.recommend_only else configs((3, 4, 5))
    calib = table(graph, evaluate.CLASSIFY, calib_x, test_x, test_y, rows)
    if not args.skip_recommend:
        arena8 = planner.plan(quantize(graph, calib, QuantConfig(bits=8, extra_bits=0), calib_x), "layer").arena_bytes
        rank_x, rank_y = subsample(1000, calib_x, calib_y)
        t0 = time.perf_counter()
        best, found = recommend(graph, calib, QuantConfig(rank="taylor"), calib_x, Budget(arena_bytes=arena8 // 2),
                            lambda c: rankings_for(c, graph, calib, rank_x, rank_y, show_progress=False),
                            rank_x, rank_y, log=lambda *a: None)
        row = evaluate.eval_quantized("recommend", best.model, test_x, test_y, show_progress=False)
        print(f"| recommend at half the int8 arena ({arena8 // 2} B): {best.label} | {row.accuracy:.2f} | "
              f"{row.memory.bits_per_activation:.2f} | {best.arena_bytes} |  (search {time.perf_counter() - t0:.0f} s)")
        for c in found:
            print(f"  candidate {c.label}: " + ("does not fit" if c.model is None else
                                             f"KL {c.divergence:.4f}, {c.bits:.2f} bits, arena {c.arena_bytes} B"))


def super_resolution(test_x, calib_x):
    print("\nSR x2 (sr_x2_cifar.pt2), input: the test image 2x2-averaged to 16x16 uint8")
    sr = evaluate.task("sr", 2)
    low_x, targets = sr.pairs(test_x, None)
    up = F.interpolate(torch.from_numpy(low_x).permute(0, 3, 1, 2).float() / 255, scale_factor=2,
                       mode="bilinear", align_corners=False).permute(0, 2, 3, 1).numpy()
    graph = api.load_graph(str(SHARED / "models/sr_x2_cifar.pt2"), None, False, (16, 16, 3))
    table(graph, sr, sr.inputs(calib_x), low_x, targets,
          [row for row in configs((4, 3)) if row[0] != "direct 3-bit"],
          [f"| bilinear upsampling (the floor) | {evaluate.psnr(up, targets):.2f} | | |"])


if __name__ == "__main__":
    np.set_printoptions(linewidth=120)
    main()
