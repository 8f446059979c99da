"""TFLite-exact int8 backend figures on cortex-m7 (QEMU): the MLPerf Tiny ResNet-8 int8 .tflite.

    python bench/tflite_backend.py [--images 4]

Exports ../shared/models/mlperf_tiny_ic_resnet8_int8.tflite as it is (its own
scales and zero points, TFLite's reference int8 arithmetic in C), runs it
under QEMU on CIFAR-10 test images and checks every output against
reference.tflite (which equals LiteRT's reference kernels). Prints the
activation arena, RAM (.data + .bss), flash (.text + .rodata + .data, with
and without the harness's test images) and instructions per inference (QEMU
-icount shift=0: instructions, not cycles): the figures to hold against
TFLite Micro with CMSIS-NN.
"""
import argparse
import tempfile
from pathlib import Path

from dqa_mcu import api
from dqa_mcu.frontends.tflite_import import load_tflite
from dqa_mcu.quantize.calibrate import load_images
from dqa_mcu.reference.tflite import quantize_input

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MODEL = SHARED / "models/mlperf_tiny_ic_resnet8_int8.tflite"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=4, help="test images run under QEMU")
    parser.add_argument("--target", default="cortex-m7")
    args = parser.parse_args()
    test_x, _ = load_images(SHARED / "data/cifar10_test.npz")
    graph = load_tflite(MODEL)
    images = quantize_input(graph, test_x[::len(test_x) // args.images][:args.images])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "resnet8_int8"
        plan = api.export_s8_project(graph, out, args.target, str(MODEL), images, None, None, log=lambda *a: None)
        report = api.run_project(out, images, None, None, timeout=1800, log=lambda *a: None)
    if not report["bit_exact"]:
        raise SystemExit("the firmware does not match the reference")
    weights = sum(t.data.nbytes for t in graph.tensors if t.is_const)
    harness = images.size
    print(f"MLPerf Tiny ResNet-8 int8 (TFLite-exact mode) on {args.target} (QEMU), {args.images} CIFAR-10 images, "
          "all bit-exact with reference.tflite")
    print("| arena bytes | RAM bytes | flash bytes | flash without the harness images | weights + biases bytes "
          "| instructions / inference |")
    print("|---|---|---|---|---|---|")
    print(f"| {plan.memory.arena_bytes} | {report['ram']} | {report['flash']} | {report['flash'] - harness} "
          f"| {weights} | {report['instructions_per_inference']:.0f} |")


if __name__ == "__main__":
    main()
