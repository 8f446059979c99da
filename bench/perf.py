"""Speed figures (QEMU, -icount shift=0) against TFLite Micro + CMSIS-NN and our own all-8-bit builds.

    python bench/perf.py [--cores cortex-m7 cortex-m4 cortex-m33 cortex-m55] [--cases r8-int8 r8-dqa4 ...]
                         [--images 2] [--schedule auto|layer|stream] [--layers] [--breakdown] [--json FILE]

Exports, builds and runs (under QEMU, every output checked bit for bit against
the reference) the MLPerf Tiny ResNet-8 int8 .tflite (TFLite-exact mode), the
same network from its Keras .h5 through DQA (n = 4) and all-8-bit, and
ResNet-32 through DQA (n = 3) and all-8-bit. `vww-int8` and `ad-int8` build
their int8 .tflite here with TensorFlow, seeded (random weights: instruction
counts do not depend on accuracy): a visual-wake-words MobileNetV1 (alpha 0.25,
96x96x3, 2 classes) and the MLPerf Tiny anomaly-detection autoencoder's stack
of FULLY_CONNECTED layers (640-128-128-128-128-8-128-128-128-128-640), each
run on random int8 inputs. Prints one Markdown table:
instructions per inference and per multiply-accumulate, the activation arena,
flash (.text + .rodata + .data, the harness's test images excluded), and the
ratios against the TFLite Micro + CMSIS-NN figures quoted in issue 12 (ResNet-8,
Cortex-M7) and against the same network's all-8-bit DQA build. ResNet-8 runs
on every core given; ResNet-32 on the first. `--layers` adds the per-layer
instruction counts of each run (the harness's last extra run of image 0).

`--breakdown` (DQA cases) exports the same model under the layer schedule (a
row-streamed segment would count all its layers at its first), runs image 0
under QEMU with one instruction per translation block and the execution trace
on (-singlestep -d exec,nochain; a few minutes per case) and attributes every
executed instruction of the per-layer run to the function it lies in, grouped
as the cost of DQA is asked for in issue 12: multiply-accumulates (the MAC
kernels), unpacking and Huffman decoding (reader, window), gathering windows
into the two-pixel columns, requantization and loop control (conv2d's own
body), packing and Huffman encoding (writer), and other kernels.
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import io
import json
import os
import subprocess
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dqa_mcu import api
from dqa_mcu.codegen import dqa as codegen
from dqa_mcu.codegen.planner import DEFAULT_SCHEDULE, SCHEDULES, model_macs, node_macs
from dqa_mcu.device import build as fw
from dqa_mcu.frontends.tflite_import import load_tflite
from dqa_mcu.quantize.calibrate import calibrate, load_images
from dqa_mcu.quantize.quantizer import QuantConfig, quantize
from dqa_mcu.reference.tflite import quantize_input
from dqa_mcu.targets import get_target

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
RESNET8_INT8 = SHARED / "models/mlperf_tiny_ic_resnet8_int8.tflite"
RESNET8_KERAS = SHARED / "models/mlperf_tiny_ic_resnet8.h5"
RESNET32 = SHARED / "models/resnet32_cifar10.th"
CIFAR_SHAPE = (32, 32, 3)
CALIBRATION_STRIDE = 10  # every 10th calibration image: 500, enough for speed figures

# Issue 12: TFLite Micro + CMSIS-NN, same QEMU (mps2-an500, Cortex-M7): ResNet-8 int8, the MLPerf Tiny
# visual-wake-words MobileNetV1 (instructions only) and fully connected stacks (per MAC only)
TFLM_CMSIS_NN = {"resnet8": {"instructions": 30.02e6, "arena": 54996, "flash": 203964},
                 "vww": {"instructions": 24.03e6}, "ad": {"per_mac": 2.21}}
SEED = 12

ALL_8_BIT = QuantConfig(bits=8, extra_bits=0)


@dataclass(frozen=True)
class Case:
    label: str
    network: str     # "resnet8", "resnet32", "vww", "ad": its TFLM figures, its all-8-bit build
    config: QuantConfig | None  # None: an int8 .tflite in TFLite-exact mode
    all_cores: bool  # run on every --cores entry, else only on the first


CASES = {
    "r8-int8": Case("ResNet-8 int8 .tflite (TFLite-exact)", "resnet8", None, True),
    "vww-int8": Case("VWW MobileNetV1 0.25 int8 (TFLite-exact)", "vww", None, True),
    "ad-int8": Case("AD autoencoder FC stack int8 (TFLite-exact)", "ad", None, True),
    "r8-dqa3": Case("ResNet-8 .h5, DQA n=3 (m=3, r=0.4)", "resnet8", QuantConfig(bits=3), True),
    "r8-dqa4": Case("ResNet-8 .h5, DQA n=4 (m=3, r=0.4)", "resnet8", QuantConfig(bits=4), True),
    "r8-dqa5": Case("ResNet-8 .h5, DQA n=5 (m=3, r=0.4)", "resnet8", QuantConfig(bits=5), True),
    "r8-8bit": Case("ResNet-8 .h5, all 8-bit", "resnet8", ALL_8_BIT, True),
    "r32-dqa3": Case("ResNet-32, DQA n=3 (m=3, r=0.4)", "resnet32", QuantConfig(bits=3), False),
    "r32-8bit": Case("ResNet-32, all 8-bit", "resnet32", ALL_8_BIT, False),
}
ALL_8_BIT_CASE = {"resnet8": "r8-8bit", "resnet32": "r32-8bit"}
DEFAULT_CASES = ["r8-int8", "vww-int8", "ad-int8", "r8-dqa4", "r8-8bit", "r32-dqa3", "r32-8bit"]

# --breakdown: the runtime's functions by what they do (the MAC kernels are conv2d's `accumulate` for a lone
# pixel and `accumulate_pair` for two; `window_runs` and `copy_values` gather the windows into the columns)
COST_GROUPS = {
    "MAC kernel": {"accumulate", "accumulate_pair"},
    "unpack + Huffman decode": {"dqa_read_pixel", "dqa_skip_pixels", "dqa__window_advance", "dqa__window_init",
                                "dqa_reader_init", "unpack_groups", "add_errors"},
    "gather windows": {"window_runs", "copy_values"},
    "requant + loop": {"dqa_conv2d", "dqa_conv2d_rows", "dqa_conv2d_start", "finish_pixel", "memset"},
    "pack + Huffman encode": {"dqa_write_pixel", "dqa_writer_init", "dqa_writer_finish", "pack_groups",
                              "put_errors"},
}
OTHER = "other kernels"
# firmware/harness/main.c, templates/model.c.j2
LAYER_HOOK, COUNTER_READ, MODEL_RUN = b"print_layer", b"dqa_board_instructions", b"dqa_model_run"


def tflite_macs(graph) -> int:
    """Multiply-accumulates of an int8 .tflite's CONV_2D, DEPTHWISE_CONV_2D and FULLY_CONNECTED ops:
    output pixels times weights (a depthwise filter's (1, KH, KW, C) counts once per pixel too)."""
    total = 0
    for op in graph.ops:
        if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED"):
            out = graph.tensor(op.outputs[0]).shape
            pixels = int(np.prod(out[1:-1])) if op.op != "FULLY_CONNECTED" else 1
            total += pixels * int(np.prod(graph.tensor(op.inputs[1]).shape))
    return total


def vww_mobilenet(keras):
    """MobileNetV1 as in MLPerf Tiny visual wake words: alpha 0.25, 96x96x3, 2 classes, batch 1; logits (an
    untrained net's are too close for an int8 SOFTMAX's input scale)."""
    net = keras.applications.MobileNet(alpha=0.25, input_shape=(96, 96, 3), weights=None, classes=2,
                                       classifier_activation=None)
    inp = keras.Input(batch_shape=(1, 96, 96, 3))
    return keras.Model(inp, net(inp))


def ad_autoencoder(keras):
    """The MLPerf Tiny anomaly-detection autoencoder's dense layers (its BatchNorms fold away)."""
    inp = keras.Input(batch_shape=(1, 640))
    x = inp
    for units in (128, 128, 128, 128, 8, 128, 128, 128, 128):
        x = keras.layers.Dense(units, activation="relu")(x)
    return keras.Model(inp, keras.layers.Dense(640)(x))


BUILT_INT8 = {"vww": vww_mobilenet, "ad": ad_autoencoder}


def build_int8(network: str, path: Path) -> Path:
    """Convert BUILT_INT8[network] (seeded random weights) to full int8 with a seeded representative set."""
    import tensorflow as tf
    tf.keras.utils.set_random_seed(SEED)
    model = BUILT_INT8[network](tf.keras)
    rng = np.random.default_rng(SEED)
    return convert_int8(model, rng.uniform(-1, 1, (16,) + model.input_shape[1:]).astype(np.float32), path)


def convert_int8(model, samples: np.ndarray, path: Path) -> Path:
    """A Keras model as a full-int8 .tflite at `path` (int8 input and output), quantized by TFLite's
    post-training quantization with `samples` (float inputs without the batch axis) as its representative set."""
    import tensorflow as tf

    def representative():
        for sample in samples:
            yield [sample[None]]

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    with contextlib.redirect_stdout(io.StringIO()):  # the Keras export under it prints every variable it captures
        path.write_bytes(converter.convert())
    return path


class Networks:
    """Graphs, calibration and quantized models, each built once."""

    def __init__(self, work: Path):
        self.test_x, _ = load_images(SHARED / "data/cifar10_test.npz")
        calib_x, _ = load_images(SHARED / "data/cifar10_calib.npz")
        self.calib_x = calib_x[::CALIBRATION_STRIDE]
        self.work = work
        self._graphs, self._calib, self._models, self._tflite = {}, {}, {}, {"resnet8": RESNET8_INT8}

    def images(self, count: int) -> np.ndarray:
        return self.test_x[::len(self.test_x) // count][:count]

    def graph(self, network: str):
        if network not in self._graphs:
            if network == "resnet8":
                self._graphs[network] = api.load_graph(str(RESNET8_KERAS), None, False, CIFAR_SHAPE)
            else:
                self._graphs[network] = api.load_graph(str(RESNET32), "resnet32", False, CIFAR_SHAPE)
            self._calib[network] = calibrate(self._graphs[network], self.calib_x, show_progress=False)
        return self._graphs[network]

    def tflite(self, network: str) -> Path:
        if network not in self._tflite:
            self._tflite[network] = build_int8(network, self.work / f"{network}_int8.tflite")
        return self._tflite[network]

    def model(self, key: str):
        if key not in self._models:
            case = CASES[key]
            graph = self.graph(case.network)
            self._models[key] = quantize(graph, self._calib[case.network], case.config, self.calib_x)
        return self._models[key]


def measure(networks: Networks, key: str, target: str, count: int, out: Path, with_breakdown: bool,
            schedule: str) -> dict:
    """Export, build and run one case on one core; raises when the firmware is not bit-exact."""
    case = CASES[key]
    images = networks.images(count)
    if case.config is None:
        path = networks.tflite(case.network)
        graph = load_tflite(path)
        inputs = (quantize_input(graph, images) if case.network == "resnet8" else
                  np.random.default_rng(SEED).integers(-128, 128, (count,) + graph.input.shape[1:]).astype(np.int8))
        plan = api.export_s8_project(graph, out, target, str(path), inputs, None, None, log=lambda *a: None,
                                     schedule=schedule)
        arena, macs = plan.memory.arena_bytes, tflite_macs(graph)
    else:
        model = networks.model(key)
        inputs = images
        plan = api.export_project(model, out, target, case.network, inputs, None, None, log=lambda *a: None,
                                  schedule=schedule)
        arena, macs = plan.arena_bytes, model_macs(model)
    report = api.run_project(out, inputs, None, None, timeout=3600, log=lambda *a: None)
    if not report["bit_exact"]:
        raise SystemExit(f"{case.label} on {target}: the firmware does not match the reference")
    row = {"case": key, "label": case.label, "target": target, "macs": macs, "arena": arena,
           "instructions": report["instructions_per_inference"],
           "flash": report["flash"] - inputs.size,  # the harness's test images are not the model's
           "layers": report["layers"]}
    if with_breakdown and case.config is not None:
        model = networks.model(key)
        row["layer_macs"] = {node.name: node_macs(model, node) for node in model.nodes}
        # the layer schedule: a row-streamed segment would charge all its layers to its first
        layered = out.parent / f"{out.name}-layer"
        api.export_project(model, layered, target, case.network, inputs, None, None, log=lambda *a: None,
                           schedule="layer")
        names = [node.name for node in model.nodes if node.op != "input"]  # the layers model.c hooks
        row["breakdown"] = breakdown(layered, target, inputs[0], names)
    return row


def _count_layer_run(trace, counts: list) -> None:
    """Instructions per (layer, function) of the harness's per-layer run, from a -singlestep exec trace
    (one line per instruction, the function's name last): a layer's are those between the counter read
    that starts it and the model's call of the layer hook after it."""
    current, previous = collections.Counter(), None
    for line in trace:
        symbol = line.rsplit(b" ", 1)[-1].strip()
        if symbol != previous:
            if symbol == COUNTER_READ:
                current = collections.Counter()
            elif symbol == LAYER_HOOK and previous == MODEL_RUN:
                counts.append(current)
            previous = symbol
        current[symbol] += 1


def breakdown(out: Path, target: str, image: np.ndarray, layer_names: list[str]) -> list[dict]:
    """Per layer of a built export: instructions per COST_GROUPS entry, image `image` run under QEMU."""
    codegen.write_harness_inputs(out, image[None])
    core = get_target(target)
    exe = fw.build(out, core)
    layers: list = []
    with tempfile.TemporaryDirectory() as tmp:
        fifo = Path(tmp) / "trace"
        os.mkfifo(fifo)
        cmd = fw.qemu_command(core, exe) + ["-singlestep", "-d", "exec,nochain", "-D", str(fifo)]
        qemu = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
        reader = threading.Thread(target=lambda: _count_layer_run(open(fifo, "rb"), layers))
        reader.start()
        qemu.wait()
        reader.join()
    rows = []
    group_of = {name.encode(): group for group, names in COST_GROUPS.items() for name in names}
    for name, counts in zip(layer_names, layers):
        row = dict.fromkeys([*COST_GROUPS, OTHER], 0)
        for symbol, n in counts.items():
            row[group_of.get(symbol, OTHER)] += n
        rows.append({"layer": name, **row})
    return rows


def print_breakdown(rows: list[dict]) -> None:
    groups = [*COST_GROUPS, OTHER]
    print("\nInstructions per layer by cost (QEMU exec trace of the per-layer run, attributed by function)")
    for r in rows:
        layers = r["breakdown"]
        total = {g: sum(layer[g] for layer in layers) for g in groups}
        print(f"\n{r['label']} on {r['target']}: {r['macs'] / 1e6:.2f} M MACs")
        print("| layer | MACs | " + " | ".join(groups) + " | total | per MAC |")
        print("|---|---|" + "---|" * (len(groups) + 2))
        for layer in [*layers, {"layer": "all", **total}]:
            count = sum(layer[g] for g in groups)
            macs = r["layer_macs"].get(layer["layer"], r["macs"] if layer["layer"] == "all" else 0)
            share = " | ".join(f"{layer[g] / 1e6:.2f} M ({100 * layer[g] / count:.0f} %)" for g in groups)
            per_mac = f"{count / macs:.2f}" if macs else "-"
            print(f"| {layer['layer']} | {macs / 1e6:.3f} M | {share} | {count / 1e6:.2f} M | {per_mac} |")


def print_table(rows: list[dict], count: int) -> None:
    eight_bit = {(r["case"], r["target"]): r for r in rows}
    print(f"{count} inputs per run under QEMU (-icount shift=0; CIFAR-10 test images, random int8 for the VWW and "
          "AD cases), every output bit-exact with the reference; TFLM = TFLite Micro + CMSIS-NN on Cortex-M7 "
          "(issue 12): instructions, arena, flash on ResNet-8, instructions on VWW, per MAC on FC stacks")
    print("| network | core | MACs | instructions / inference | per MAC | arena B | flash B "
          "| instr. vs TFLM | arena vs TFLM | flash vs TFLM | instr. vs own all-8-bit |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        network = CASES[r["case"]].network
        base = eight_bit.get((ALL_8_BIT_CASE.get(network), r["target"]))
        tflm = TFLM_CMSIS_NN.get(network, {})
        per_mac = r["instructions"] / r["macs"]
        ratios = [r["instructions"] / tflm["instructions"] if "instructions" in tflm else
                  per_mac / tflm["per_mac"] if "per_mac" in tflm else None,
                  r["arena"] / tflm["arena"] if "arena" in tflm else None,
                  r["flash"] / tflm["flash"] if "flash" in tflm else None]
        vs_tflm = " | ".join("-" if x is None else f"{x:.2f}x" for x in ratios)
        vs_own = f"{r['instructions'] / base['instructions']:.2f}x" if base else "-"
        print(f"| {r['label']} | {r['target']} | {r['macs'] / 1e6:.2f} M | {r['instructions'] / 1e6:.2f} M "
              f"| {per_mac:.2f} | {r['arena']} | {r['flash']} | {vs_tflm} | {vs_own} |")


def print_layers(rows: list[dict]) -> None:
    for r in rows:
        print(f"\n{r['label']} on {r['target']}: instructions per layer")
        for name, count in r["layers"]:
            print(f"  {name:40s} {count:>12d}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cores", nargs="+", default=["cortex-m7", "cortex-m4", "cortex-m33", "cortex-m55"],
                        help="ResNet-8 runs on each; ResNet-32 on the first")
    parser.add_argument("--cases", nargs="+", choices=list(CASES), default=DEFAULT_CASES)
    parser.add_argument("--images", type=int, default=2, help="test images run per configuration")
    parser.add_argument("--schedule", choices=SCHEDULES, default=DEFAULT_SCHEDULE,
                        help="the exports' schedule (row-streamed segments count all their layers at the first)")
    parser.add_argument("--layers", action="store_true", help="also print instructions per layer")
    parser.add_argument("--breakdown", action="store_true",
                        help="DQA cases: also instructions per layer by cost (MACs, unpacking, ...), minutes each")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        networks = Networks(Path(tmp))
        for key in args.cases:
            for target in args.cores if CASES[key].all_cores else args.cores[:1]:
                rows.append(measure(networks, key, target, args.images, Path(tmp) / f"{key}-{target}",
                                    args.breakdown, args.schedule))
    print_table(rows, args.images)
    if args.layers:
        print_layers(rows)
    if args.breakdown:
        print_breakdown([r for r in rows if "breakdown" in r])
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
