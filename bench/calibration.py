"""Float execution in torch for calibration, and the NumPy integer reference, timed against issue 10's goals.

    python bench/calibration.py

Calibration (ranges + histograms) of 2,000 cifar10_calib.npz images for
ResNet-32 (goal 8 s) and MobileNetV2 (goal 10 s), and the integer reference
(DQA n = 4, m = 3) on the 5,000 test images for MobileNetV2 (goal 120 s), on
this machine (2 cores). Wall-clock times: run it on an idle machine.
"""
import time
from pathlib import Path

from dqa_mcu import api
from dqa_mcu.frontends.zoo import Normalization
from dqa_mcu.quantize.calibrate import calibrate, load_images, subsample
from dqa_mcu.quantize.quantizer import QuantConfig, quantize
from dqa_mcu.reference import evaluate

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MOBILENET = ("MobileNetV2", "models/mobilenetv2_cifar10.pt2", None,
             Normalization(1 / 255, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)))
RESNET32 = ("ResNet-32", "models/resnet32_cifar10.th", "resnet32", None)
CALIBRATION_GOAL_S = {"ResNet-32": 8.0, "MobileNetV2": 10.0}
REFERENCE_GOAL_S = 120.0


def verdict(seconds: float, goal: float) -> str:
    return f"goal {goal:.0f} s: {'met' if seconds <= goal else 'NOT met'} ({seconds / goal:.2f}x)"


def main():
    calib_x, _ = subsample(2000, *load_images(SHARED / "data/cifar10_calib.npz"))
    test_x, test_y = load_images(SHARED / "data/cifar10_test.npz")
    graphs = {}
    for name, path, arch, norm in (RESNET32, MOBILENET):
        graphs[name] = graph = api.load_graph(str(SHARED / path), arch, False, (32, 32, 3), norm)
        t0 = time.perf_counter()
        calibrate(graph, calib_x, show_progress=False)
        seconds = time.perf_counter() - t0
        print(f"{name}: calibration of {len(calib_x)} images {seconds:5.1f} s  "
              f"{verdict(seconds, CALIBRATION_GOAL_S[name])}")
    graph = graphs["MobileNetV2"]
    model = quantize(graph, calibrate(graph, calib_x, show_progress=False), QuantConfig(bits=4, extra_bits=3),
                     calib_x)
    t0 = time.perf_counter()
    row = evaluate.eval_quantized("DQA 4", model, test_x, test_y, show_progress=False)
    seconds = time.perf_counter() - t0
    print(f"MobileNetV2: integer reference (DQA n = 4) on {len(test_x)} images {seconds:5.1f} s, top-1 "
          f"{row.accuracy:.2f} %  {verdict(seconds, REFERENCE_GOAL_S)}")


if __name__ == "__main__":
    main()
