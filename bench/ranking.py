"""Channel-ranking benchmark: time of the greedy search and of the fast Taylor ranking on
ResNet-32, and the deployable accuracy (integer reference) each ranking gives.

    python bench/ranking.py [--greedy-images 1000|5000] [--rankings FILE] [--paper | --paper-only]
                            [--model resnet20|resnet32] [--ranges dynamic static] [--paper-bits 3 4 5]

Greedy on 1,000 calibration images (--greedy-images 5000 for the paper's count;
goals: 6 min and 30 min on a 2-core machine), Taylor on the same images (goal
60 s), then DQA n = 3, m = 3, r = 0.4 with greedy / taylor / noise / range /
random rankings and direct 3-bit, quantized from the same calibration, on the
5,000 test images: CIFAR-10 (JPEG q75). --rankings FILE reuses (or, if missing,
writes) the greedy ranking. --paper adds the paper-mode float simulation table
(block outputs only, FP32 weights, signed max-abs; dynamic and/or static
ranges), with the paper's greedy search at every n.
Wall time depends on the machine's load: CPU time is printed too.
"""
import argparse
import time
from pathlib import Path

from dqa_mcu.frontends import passes
from dqa_mcu.frontends.torch_import import import_module, load_torch_model
from dqa_mcu.quantize.calibrate import calibrate, load_images, subsample
from dqa_mcu.quantize.greedy import greedy_search, load_rankings, save_rankings, taylor_search
from dqa_mcu.quantize.quantizer import QuantConfig, quantize
from dqa_mcu.reference import evaluate

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
GOALS_S = {1000: 360.0, 5000: 1800.0}
FAST_GOAL_S = 60.0


def timed(fn):
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--greedy-images", type=int, default=1000)
    parser.add_argument("--rankings", help="greedy rankings file to reuse or write")
    parser.add_argument("--bits", type=int, default=3)
    parser.add_argument("--paper", action="store_true", help="also the paper-mode simulation table")
    parser.add_argument("--paper-only", action="store_true", help="only the paper-mode simulation table")
    parser.add_argument("--test-count", type=int, default=None)
    parser.add_argument("--model", choices=("resnet20", "resnet32"), default="resnet32")
    parser.add_argument("--ranges", nargs="+", choices=("dynamic", "static"), default=["dynamic", "static"],
                        help="paper mode: the paper's dynamic per-batch ranges, static calibrated ones, or both")
    parser.add_argument("--paper-bits", type=int, nargs="+", default=[3, 4, 5], help="paper mode: the n columns")
    args = parser.parse_args()

    test_x, test_y = load_images(SHARED / "data/cifar10_test.npz")
    test_x, test_y = subsample(args.test_count, test_x, test_y)
    calib_all, calib_y_all = load_images(SHARED / "data/cifar10_calib.npz")
    calib_x, calib_y = subsample(args.greedy_images, calib_all, calib_y_all)
    module, norm = load_torch_model(SHARED / f"models/{args.model}_cifar10.th", arch=args.model)
    if args.paper_only:
        return paper_table(module, norm, test_x, test_y, calib_all, calib_y_all, len(calib_x), args)
    graph = passes.optimize(import_module(module, (32, 32, 3), norm))
    calib = calibrate(graph, calib_x, show_progress=False)
    config = QuantConfig(bits=args.bits, extra_bits=3, important_ratio=0.4)
    print(f"{args.model}, CIFAR-10 (JPEG q75): rankings on {len(calib_x)} calibration images (with labels), "
          f"accuracy on {len(test_x)} test images; n = {config.bits}, m = 3, r = 0.4, clip {config.clip}")

    if args.rankings and Path(args.rankings).exists():
        greedy = load_rankings(args.rankings, graph)
        print(f"  greedy ranking: loaded {args.rankings} ({greedy.meta.get('images')} images, "
              f"{greedy.meta.get('seconds')} s when computed)")
    else:
        greedy, wall, cpu = timed(lambda: greedy_search(graph, calib, config, calib_x, calib_y))
        goal = GOALS_S.get(len(calib_x))
        verdict = f", goal {goal:.0f} s: {'met' if wall <= goal else 'NOT met'}" if goal else ""
        print(f"  greedy ranking ({sum(len(o) for o in greedy.rankings.values())} channel evaluations): "
              f"{wall:.0f} s wall, {cpu:.0f} s CPU{verdict}")
        if args.rankings:
            save_rankings(args.rankings, greedy)
    taylor, wall, cpu = timed(lambda: taylor_search(graph, calib, config, calib_x, calib_y, show_progress=False))
    print(f"  taylor ranking: {wall:.1f} s wall, {cpu:.1f} s CPU, goal {FAST_GOAL_S:.0f} s: "
          f"{'met' if wall <= FAST_GOAL_S else 'NOT met'}")

    rows = [evaluate.EvalRow("FP32", evaluate.top1(evaluate.float_logits(graph, test_x, show_progress=False),
                                                   test_y), None)]
    runs = [(f"direct {config.bits}-bit", QuantConfig(bits=config.bits, extra_bits=0), None),
            (f"direct {config.bits + 1}-bit", QuantConfig(bits=config.bits + 1, extra_bits=0), None),
            ("DQA, greedy ranking", config, greedy.rankings),
            ("DQA, taylor ranking", config, taylor.rankings),
            ("DQA, noise ranking", config, None),
            ("DQA, range ranking", QuantConfig(bits=config.bits, rank="range"), None),
            ("DQA, random ranking", QuantConfig(bits=config.bits, rank="random"), None)]
    for label, cfg, rankings in runs:
        model = quantize(graph, calib, cfg, calib_x, rankings=rankings)
        rows.append(evaluate.eval_quantized(label, model, test_x, test_y, show_progress=False))
        print(f"    {label}: {rows[-1].accuracy:.2f} %", flush=True)
    print()
    print(evaluate.format_table(rows, rows[1].memory.activations * 4))

    if args.paper:
        paper_table(module, norm, test_x, test_y, calib_all, calib_y_all, len(calib_x), args)


def paper_table(module, norm, test_x, test_y, calib_all, calib_y_all, greedy_images, args):
    from dqa_mcu.research.paper_sim import paper_accuracy, paper_greedy_rankings
    calib_x, calib_y = subsample(2000, calib_all, calib_y_all)
    gx, gy = subsample(greedy_images, calib_all, calib_y_all)
    print(f"\nPaper mode, {args.model} (PyTorch float: block outputs quantized, FP32 weights, signed per-channel max-abs), "
          f"CIFAR-10 (JPEG q75), {len(test_x)} test images; static ranges from {len(calib_x)} calibration "
          f"images; greedy on {len(gx)}; FP32 {paper_accuracy(module, norm, test_x, test_y, 'fp32'):.2f} %")
    print("| ranges | method | " + " | ".join(f"n = {n}" for n in args.paper_bits) + " |")
    print("|---|---|" + "---|" * len(args.paper_bits))
    for ranges in args.ranges:
        for label, method, kw in (("direct", "direct", {}), ("NoisyQuant", "noisyquant", {}),
                                  ("DQA r = 0.4, widest range", "dqa", {"importance": "range"}),
                                  ("DQA r = 0.4, random", "dqa", {"importance": "random"}),
                                  ("DQA r = 0.4, greedy", "dqa", {"importance": "greedy"})):
            cells = []
            for bits in args.paper_bits:
                extra = dict(kw)
                if extra.get("importance") == "greedy":
                    t0 = time.perf_counter()
                    extra = {"rankings": paper_greedy_rankings(module, norm, gx, gy, bits, ranges=ranges,
                                                               show_progress=False)}
                    seconds, goal = time.perf_counter() - t0, GOALS_S.get(len(gx))
                    verdict = f", goal {goal:.0f} s: {'met' if seconds <= goal else 'NOT met'}" if goal else ""
                    label_t = f" ({seconds:.0f} s{verdict})"
                else:
                    label_t = ""
                acc = paper_accuracy(module, norm, test_x, test_y, method, bits, ranges=ranges,
                                     calib_images=calib_x, **extra)
                cells.append(f"{acc:.2f}{label_t}")
            print(f"| {ranges} | {label} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
