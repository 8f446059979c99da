"""Seed corpora for the fuzz targets, from real exports: the stored tensors of ResNet-20 quantized with
DQA (n = 4, m = 3; shapes, code widths, important channels, Huffman codes and stream capacities as the
export has them, planes and streams holding codes of calibration-like statistics; the tensors the auto
schedule streams also as their rings of rows, spec 2.4), and the int8 kernels with MLPerf Tiny
ResNet-8's weights. Writes <out>/<target>/seed_*; fuzz/run.sh calls it.

    python fuzz/seeds.py OUT_DIR
"""
from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
BIT_CHOICES = (2, 3, 4, 5, 6, 7, 8, 16)  # fuzz_tensor.h's byte 3
FLAG_SIGNED, FLAG_CODES = 1, 4


def tensor_header(shape, bits: int, extra_bits: int, signed: bool, important, capacity: int, n_coded: int,
                  lengths, flags: int = 0, ring_rows: int = 0, row_capacity: int = 0) -> bytes:
    """fuzz/fuzz_tensor.h's 44-byte header (ring_rows 0: a whole tensor)."""
    h, w, c = shape
    mask = np.zeros(64, np.uint8)
    mask[:len(important)] = np.asarray(important[:64], np.uint8)
    lengths = list(lengths) + [0] * (16 - len(lengths))
    return bytes([(h - 1) % 64, (w - 1) % 64, (c - 1) % 64, BIT_CHOICES.index(bits), extra_bits,
                  flags | (FLAG_SIGNED if signed else 0)]) + np.packbits(mask, bitorder="little").tobytes() \
        + struct.pack("<II", capacity % (1 << 20), n_coded) + bytes(lengths) \
        + struct.pack("<BBI", ring_rows, 0, row_capacity % (1 << 14))


def dqa_seeds(out: Path) -> int:
    from dqa_mcu import bitpack
    from dqa_mcu.codegen import planner
    from dqa_mcu.frontends import passes
    from dqa_mcu.frontends.torch_import import import_module, load_torch_model
    from dqa_mcu.quantize.calibrate import calibrate
    from dqa_mcu.quantize.quantizer import QuantConfig, quantize

    module, norm = load_torch_model(SHARED / "models" / "resnet20_cifar10.th", arch="resnet20")
    graph = passes.optimize(import_module(module, (32, 32, 3), norm))
    images = np.load(SHARED / "data" / "cifar10_calib.npz")["x"][::100]
    model = quantize(graph, calibrate(graph, images, show_progress=False), QuantConfig(bits=4, extra_bits=3), images)
    rings = {name: rows for seg in planner.plan(model, "auto").segments for name, rows in seg.ring_rows.items()}
    rng = np.random.default_rng(0)
    (out / "fuzz_reader").mkdir(parents=True, exist_ok=True)
    (out / "fuzz_writer").mkdir(parents=True, exist_ok=True)
    count = 0
    for t in model.tensors.values():
        if t.lut is not None or t.bits not in BIT_CHOICES or len(t.shape) != 3 or max(t.shape) > 64:
            continue
        h, w, c = t.shape
        m = t.extra_bits if t.huffman is not None and t.important.any() else 0
        lengths = list(t.huffman.lengths) if m else [1]
        lo = -(1 << (t.bits - 1)) if t.signed else 0
        codes = rng.integers(lo, lo + (1 << t.bits), h * w * c)
        plane = bitpack.pack(codes, t.bits)
        stream, coded = b"", 0
        if m:
            symbols = rng.choice(1 << m, int(t.important.sum()) * h * w, p=_symbol_odds(lengths))
            stream, stream_bits = t.huffman.encode(symbols)
            coded = len(symbols) if stream_bits <= t.err_capacity_bits else 0
            stream = stream[:(t.err_capacity_bits + 7) // 8 + 1]
        for flags in (0, FLAG_CODES):
            header = tensor_header(t.shape, t.bits, m, t.signed, t.important, t.err_capacity_bits, coded, lengths,
                                   flags)
            (out / "fuzz_reader" / f"seed_{count:03d}").write_bytes(header + bytes([0x24]) + plane + stream)
            values = rng.integers(0, 1 << 16, h * w * c).astype("<u2").tobytes()
            (out / "fuzz_writer" / f"seed_{count:03d}").write_bytes(header + values)
            if t.name in rings:
                header = tensor_header(t.shape, t.bits, m, t.signed, t.important, t.err_capacity_bits, coded,
                                       lengths, flags, rings[t.name], t.err_row_capacity_bits)
                ring = _ring(t, m, codes, rings[t.name], rng, lengths)
                (out / "fuzz_reader" / f"seed_{count:03d}_ring").write_bytes(header + bytes([0x24]) + ring)
                (out / "fuzz_writer" / f"seed_{count:03d}_ring").write_bytes(header + values)
            count += 1
    return count


def _ring(t, m: int, codes: np.ndarray, rows: int, rng, lengths) -> bytes:
    """The first `rows` rows of a tensor in ring slots (planner.ring_slot): codes, then with m its own
    error stream and the slot's n_coded word."""
    from dqa_mcu import bitpack
    from dqa_mcu.codegen import planner
    h, w, c = t.shape
    stream_offset, slot = planner.ring_slot(t)
    ring = b""
    for row in range(rows):
        data = bitpack.pack(codes[row * w * c:(row + 1) * w * c], t.bits).ljust(stream_offset, b"\0")
        if m:
            symbols = rng.choice(1 << m, int(t.important.sum()) * w, p=_symbol_odds(lengths))
            stream, stream_bits = t.huffman.encode(symbols)
            coded = len(symbols) if stream_bits <= t.err_row_capacity_bits else 0
            data += stream[:slot - stream_offset - 4].ljust(slot - stream_offset - 4, b"\0") + struct.pack("<I", coded)
        ring += data
    return ring


def _symbol_odds(lengths) -> np.ndarray:
    """Symbol probabilities a code of these lengths is optimal for: 2^-length."""
    odds = np.exp2(-np.asarray(lengths, float))
    return odds / odds.sum()


S8_KERNELS = 16  # the cases of fuzz_s8.c's switch on byte 0


def s8_seeds(out: Path) -> int:
    """One seed per kernel of fuzz_s8.c (byte 0), small geometry, ResNet-8's first int8 weights after it."""
    from dqa_mcu.frontends.tflite_import import load_tflite
    graph = load_tflite(SHARED / "models" / "mlperf_tiny_ic_resnet8_int8.tflite")
    weights = next(t.data for t in graph.tensors if t.is_const and t.dtype == "int8" and t.data.ndim == 4)
    payload = weights.astype(np.int8).tobytes()
    geometry = bytes([1, 1, 7, 7, 2, 3, 2, 2, 0, 0, 0, 0, 0x80, 0x10, 0x7F])
    (out / "fuzz_s8").mkdir(parents=True, exist_ok=True)
    for kernel in range(S8_KERNELS):
        (out / "fuzz_s8" / f"seed_{kernel}").write_bytes(bytes([kernel]) + geometry + payload)
    return S8_KERNELS


if __name__ == "__main__":
    target = Path(sys.argv[1])
    print(f"seeds: {dqa_seeds(target)} per DQA target, {s8_seeds(target)} int8 kernel seeds in {target}")
