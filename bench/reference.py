"""Reference throughput: a full 5,000-image evaluation of one ResNet-32 configuration.

    python bench/reference.py [--bits 4] [--extra-bits 3]

Prints the time of each stage and images per second of the NumPy integer
reference; the goal is the full evaluation within 60 s on a 2-core machine.
"""
import argparse
import time
from pathlib import Path

from dqa_mcu import api
from dqa_mcu.quantize.calibrate import calibrate, load_images
from dqa_mcu.quantize.quantizer import QuantConfig, quantize
from dqa_mcu.reference import evaluate

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
GOAL_S = 60.0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bits", type=int, default=4)
    parser.add_argument("--extra-bits", type=int, default=3)
    parser.add_argument("--calib-count", type=int, default=1000)
    args = parser.parse_args()
    test_x, test_y = load_images(SHARED / "data/cifar10_test.npz")
    calib_x, _ = load_images(SHARED / "data/cifar10_calib.npz")
    calib_x = calib_x[::len(calib_x) // args.calib_count][:args.calib_count]

    t0 = time.perf_counter()
    graph = api.load_graph(str(SHARED / "models/resnet32_cifar10.th"), "resnet32", False, (32, 32, 3))
    t1 = time.perf_counter()
    calib = calibrate(graph, calib_x, show_progress=False)
    t2 = time.perf_counter()
    model = quantize(graph, calib, QuantConfig(bits=args.bits, extra_bits=args.extra_bits), calib_x)
    t3 = time.perf_counter()
    row = evaluate.eval_quantized("bench", model, test_x, test_y, show_progress=False)
    t4 = time.perf_counter()

    print(f"ResNet-32, n = {args.bits}, m = {args.extra_bits}, CIFAR-10 (JPEG q75)")
    print(f"  import + passes        {t1 - t0:6.1f} s")
    print(f"  calibrate ({len(calib_x)} images) {t2 - t1:6.1f} s")
    print(f"  quantize (+ Huffman)   {t3 - t2:6.1f} s")
    print(f"  reference, {len(test_x)} images {t4 - t3:6.1f} s  ({len(test_x) / (t4 - t3):.0f} images/s), "
          f"top-1 {row.accuracy:.2f} %")
    print(f"  goal: full evaluation <= {GOAL_S:.0f} s -> {'met' if t4 - t3 <= GOAL_S else 'NOT met'} "
          f"({(t4 - t3) / GOAL_S:.2f} of the budget)")


if __name__ == "__main__":
    main()
