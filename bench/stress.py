"""Stress, before a release (too long for CI): the largest model in ../shared (ResNet-32, 0.46 M
parameters) quantized with DQA at every n from 2 to 8 (m = 3, important ratio 0.4), exported for every target, built and run bit-exact against the reference under QEMU; a target QEMU does
not emulate is exported only (its fit check). A model too big for a target must be refused at export,
in one line with the bytes needed and available, never at link time. Prints one Markdown row per
(n, target); exits 1 on any mismatch or failure.

    python bench/stress.py [--bits 2 3 ...] [--targets cortex-m3 ...] [--images 4] [-o stress_out]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from dqa_mcu import api
from dqa_mcu.device.build import BuildError
from dqa_mcu.quantize.quantizer import QuantConfig, QuantizationError
from dqa_mcu.targets import TARGETS

SHARED = Path(__file__).resolve().parents[2] / "shared"
MODEL = SHARED / "models" / "resnet32_cifar10.th"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bits", type=int, nargs="+", default=list(range(2, 9)))
    p.add_argument("--targets", nargs="+", default=[t for t in TARGETS if t != "host"])
    p.add_argument("--images", type=int, default=4, help="test images run on each target")
    p.add_argument("--calib-count", type=int, default=200)
    p.add_argument("-o", "--output", default="stress_out")
    args = p.parse_args(argv)
    calib = np.load(SHARED / "data" / "cifar10_calib.npz")["x"]
    calib = calib[:: len(calib) // args.calib_count][: args.calib_count]
    test = np.load(SHARED / "data" / "cifar10_test.npz")["x"][:: 5000 // args.images][: args.images]
    graph = api.load(MODEL, (32, 32, 3), arch="resnet32")
    failures = 0
    print("| n | m | target | arena bytes | outcome | seconds |\n|---|---|---|---|---|---|")
    for bits in args.bits:
        model = api.quantize_model(graph, calib, QuantConfig(bits=bits, extra_bits=3))
        for target in args.targets:
            start, arena = time.time(), "-"
            out = Path(args.output) / f"n{bits}_{target}"
            try:
                written = api.export(model, out, target, test, log=lambda *a: None)
                arena = written["arena_bytes"]
                if TARGETS[target].qemu_machine is None:
                    outcome = "exported (no emulator)"
                else:
                    report = api.run(out, test, log=lambda *a: None)
                    outcome = "bit-exact" if report["bit_exact"] else f"MISMATCH {report['mismatched_images']}"
                    failures += not report["bit_exact"]
            except QuantizationError as exc:  # too big for the target: refused with the numbers
                outcome = f"refused at export: {exc}"
            except BuildError as exc:
                outcome, failures = f"FAILED: {str(exc).splitlines()[0]}", failures + 1
            print(f"| {bits} | 3 | {target} | {arena} | {outcome} | {time.time() - start:.0f} |", flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
