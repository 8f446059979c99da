"""Accuracy and memory of quantized models: the numbers behind `dqa-mcu eval`."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from . import reference
from .float_exec import run_float
from .qmodel import QModel


@dataclass
class MemoryReport:
    activations: int  # stored activation elements (all n-bit tensors, per image)
    stored_bytes: int  # their code planes + error-stream buffers
    plane_bytes: int
    stream_bytes: int

    @property
    def bits_per_activation(self) -> float:
        return 8.0 * self.stored_bytes / max(self.activations, 1)


def activation_tensors(model: QModel):
    """Tensors stored at the configured width: not the pixel input, output, or aliases."""
    return [t for t in model.tensors.values()
            if t.name not in (model.input, model.output) and not t.alias_of]


def memory(model: QModel) -> MemoryReport:
    ts = activation_tensors(model)
    planes = sum(t.plane_bytes for t in ts)
    streams = sum(t.stream_bytes for t in ts)
    return MemoryReport(sum(t.size for t in ts), planes + streams, planes, streams)


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((np.argmax(logits, axis=1) == labels).mean() * 100.0)


def float_logits(graph, images: np.ndarray, batch: int = 250, show_progress: bool = True) -> np.ndarray:
    starts = range(0, len(images), batch)
    return np.concatenate([run_float(graph, images[s:s + batch])
                           for s in tqdm(starts, desc="fp32", disable=not show_progress, leave=False)])


@dataclass
class EvalRow:
    label: str
    accuracy: float
    memory: MemoryReport | None  # None for FP32
    overflow_rate: float = 0.0  # share of images with any error-stream overflow
    huffman_bits: float | None = None  # mean coded bits per error symbol on the test images
    tensors: str = ""  # per-tensor report (Markdown)


def eval_quantized(label: str, model: QModel, images: np.ndarray, labels: np.ndarray,
                   show_progress: bool = True) -> EvalRow:
    progress = (lambda it: tqdm(it, desc=label, leave=False)) if show_progress else None
    result = reference.run(model, images, progress=progress)
    coded = symbols = 0
    for name, s in result.stats.items():
        t = model.tensors[name]
        if t.huffman is not None:
            counts = s.symbol_counts
            coded += float((counts * np.asarray(t.huffman.lengths)).sum())
            symbols += int(counts.sum())
    return EvalRow(label, top1(result.output, labels), memory(model),
                   float((result.overflowed_tensors > 0).mean()),
                   coded / symbols if symbols else None, tensor_report(model, result.stats))


def tensor_report(model: QModel, stats: dict[str, "reference.TensorStats"]) -> str:
    """Per stored tensor: shape, bits, important channels, Huffman rate and bytes."""
    lines = ["| tensor | H x W x C | n | m | important | Huffman bits / error | compression | "
             "plane bytes | stream bytes |", "|---|---|---|---|---|---|---|---|---|"]
    for t in activation_tensors(model):
        shape = "x".join(map(str, t.shape))
        if t.huffman is not None and t.name in stats:
            bits = t.huffman.mean_bits(stats[t.name].symbol_counts)
            coding = f"{bits:.2f} | {t.extra_bits / bits:.2f}x"
        else:
            coding = " | "
        lines.append(f"| {t.name} | {shape} | {t.bits} | {t.extra_bits} | {int(t.important.sum())}/{t.channels} | "
                     f"{coding} | {t.plane_bytes} | {t.stream_bytes} |")
    return "\n".join(lines)


def format_table(rows: list[EvalRow], fp32_bytes: int) -> str:
    lines = ["| configuration | top-1 % | bits / activation | activation bytes | vs fp32 bytes | "
             "Huffman bits / error | images with overflow |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r.memory is None:
            lines.append(f"| {r.label} | {r.accuracy:.2f} | 32 | {fp32_bytes} | 100.0 % | | |")
            continue
        mem = r.memory
        huff = f"{r.huffman_bits:.2f}" if r.huffman_bits is not None else ""
        ovf = f"{100 * r.overflow_rate:.2f} %" if r.huffman_bits is not None else ""
        lines.append(f"| {r.label} | {r.accuracy:.2f} | {mem.bits_per_activation:.2f} | {mem.stored_bytes} | "
                     f"{100 * mem.stored_bytes / fp32_bytes:.1f} % | {huff} | {ovf} |")
    return "\n".join(lines)
