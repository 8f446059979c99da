"""dqa-mcu recommend on ResNet-32: does the calibration-scored choice win on the test images?

    python bench/recommend.py [--bits-budget 4.2] [--memory-budget 25696]

For each budget, every candidate the recommender fits (direct at the widest n,
DQA at n and n - 1 with m = 1..4, important channels fitted to the budget) is
listed with its calibration score (KL divergence from FP32 on 1,000
calibration images, which chooses) and its top-1 on the 5,000 test images
(CIFAR-10 (JPEG q75)), which the choice never sees. Rankings: taylor on 1,000
calibration images; 2,000 calibration images quantize. Issue 4's target is at
most 4.2 bits per activation within 1.5 points of FP32.
"""
import argparse
import time
from pathlib import Path

from dqa_mcu import api
from dqa_mcu.quantize.calibrate import calibrate, load_images, subsample
from dqa_mcu.quantize.greedy import rankings_for
from dqa_mcu.quantize.quantizer import QuantConfig
from dqa_mcu.quantize.recommend import Budget, recommend
from dqa_mcu.reference import evaluate, dqa as reference

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TARGET_BITS, TARGET_DROP = 4.2, 1.5


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bits-budget", type=float, nargs="*", default=[4.2])
    parser.add_argument("--memory-budget", type=int, nargs="*", default=[25696])
    parser.add_argument("--test-count", type=int, default=None)
    args = parser.parse_args()
    test_x, test_y = subsample(args.test_count, *load_images(SHARED / "data/cifar10_test.npz"))
    calib_x, calib_y = subsample(2000, *load_images(SHARED / "data/cifar10_calib.npz"))
    rank_x, rank_y = subsample(1000, calib_x, calib_y)
    graph = api.load_graph(str(SHARED / "models/resnet32_cifar10.th"), "resnet32", False, (32, 32, 3))
    calib = calibrate(graph, calib_x, show_progress=False)
    fp32 = evaluate.top1(evaluate.float_logits(graph, test_x, show_progress=False), test_y)
    print(f"ResNet-32, CIFAR-10 (JPEG q75): {len(test_x)} test images, FP32 {fp32:.2f} %; candidates scored on "
          f"{len(rank_x)} calibration images")

    def rank(config):
        return rankings_for(config, graph, calib, rank_x, rank_y, show_progress=False)

    base = QuantConfig(rank="taylor")
    for limit in [Budget(bits=b) for b in args.bits_budget] + [Budget(arena_bytes=a) for a in args.memory_budget]:
        t0 = time.perf_counter()
        best, found = recommend(graph, calib, base, calib_x, limit, rank, rank_x, rank_y, log=lambda *a: None)
        seconds = time.perf_counter() - t0
        print(f"\nbudget {limit} (search {seconds:.0f} s)")
        print("| candidate | important activations | bits / activation | arena bytes | KL to FP32 (calib) | "
              "top-1 % (calib) | top-1 % (test) | vs FP32 |")
        print("|---|---|---|---|---|---|---|---|")
        for c in found:
            if c.model is None:
                print(f"| {c.label} | does not fit | | | | | | |")
                continue
            test = evaluate.top1(reference.run(c.model, test_x).output, test_y)
            mark = " **(recommended)**" if c is best else ""
            print(f"| {c.label}{mark} | {100 * c.important_share:.1f} % | {c.bits:.2f} | {c.arena_bytes} | "
                  f"{c.divergence:.4f} | {c.top1:.2f} | {test:.2f} | {test - fp32:+.2f} |", flush=True)
            if c is best:
                met = c.bits <= TARGET_BITS and fp32 - test <= TARGET_DROP
        print(f"\nissue 4's target (at most {TARGET_BITS} bits, within {TARGET_DROP} points of FP32): "
              f"{'met' if met else 'not met'} by the recommended configuration")


if __name__ == "__main__":
    main()
