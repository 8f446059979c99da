"""Important channels allocated network-wide against per tensor, at about 4.2 stored bits.

    python bench/allocation.py

Issue 4's target: at most 4.2 average stored bits per activation with
ResNet-32's deployable accuracy within 1.5 points of FP32. The uniform rule
(each tensor's best r of channels) is compared with a network-wide one
(budget.network_counts: the channels with the best Taylor score per element,
in any tensor, until a share of all activations is important). Rankings on
1,000 calibration images; top-1 from the integer reference on the 5,000 test
images; bits per activation as `dqa-mcu eval` counts them.
"""
from pathlib import Path

from dqa_mcu import api
from dqa_mcu.quantize.budget import network_counts
from dqa_mcu.quantize.calibrate import calibrate, load_images, subsample
from dqa_mcu.quantize.greedy import rankings_for
from dqa_mcu.quantize.quantizer import QuantConfig, quantize
from dqa_mcu.reference import evaluate, dqa as reference

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
TARGET_BITS, TARGET_DROP = 4.2, 1.5
ROWS = [  # (label, m, r, network-wide share or None for the uniform rule)
    ("uniform, m=3, r=0.4", 3, 0.4, None),
    ("uniform, m=2, r=0.6", 2, 0.6, None),
    ("network-wide, m=2, 50 % of activations", 2, 0.6, 0.5),
    ("network-wide, m=2, 60 % of activations", 2, 0.6, 0.6),
    ("network-wide, m=3, 50 % of activations", 3, 0.6, 0.5),
]


def main():
    test_x, test_y = load_images(SHARED / "data/cifar10_test.npz")
    calib_x, calib_y = subsample(2000, *load_images(SHARED / "data/cifar10_calib.npz"))
    rank_x, rank_y = subsample(1000, calib_x, calib_y)
    graph = api.load_graph(str(SHARED / "models/resnet32_cifar10.th"), "resnet32", False, (32, 32, 3))
    calib = calibrate(graph, calib_x, show_progress=False)
    fp32 = evaluate.top1(evaluate.float_logits(graph, test_x, show_progress=False), test_y)
    print(f"ResNet-32, n = 3, taylor ranking; CIFAR-10 (JPEG q75), {len(test_x)} test images; FP32 {fp32:.2f} %")
    print("| allocation | top-1 % | vs FP32 | bits / activation | target met |")
    print("|---|---|---|---|---|")
    for label, m, r, share in ROWS:
        config = QuantConfig(bits=3, extra_bits=m, important_ratio=r, rank="taylor")
        ranked = rankings_for(config, graph, calib, rank_x, rank_y, show_progress=False)
        counts = None if share is None else network_counts(ranked.scores, graph.shapes, share)
        model = quantize(graph, calib, config, calib_x, ranked.rankings, important_counts=counts)
        top1 = evaluate.top1(reference.run(model, test_x).output, test_y)
        bits = evaluate.memory(model).bits_per_activation
        met = bits <= TARGET_BITS and fp32 - top1 <= TARGET_DROP
        print(f"| {label} | {top1:.2f} | {top1 - fp32:+.2f} | {bits:.2f} | {'yes' if met else 'no'} |")


if __name__ == "__main__":
    main()
