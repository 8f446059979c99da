"""Accuracy and memory of quantized models: the numbers behind `dqa-mcu eval`."""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from tqdm import tqdm

from dqa_mcu.qmodel import QModel
from dqa_mcu.reference import dqa as reference
from dqa_mcu.reference.float_exec import run_float


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


def psnr(outputs: np.ndarray, targets: np.ndarray) -> float:
    """Mean PSNR (dB, on 0..255) of image outputs in [0, 1] (clipped) against uint8 targets."""
    out = np.clip(np.asarray(outputs, dtype=np.float64).reshape(targets.shape), 0.0, 1.0) * 255.0
    mse = ((out - targets.astype(np.float64)) ** 2).reshape(len(targets), -1).mean(axis=1)
    return float(np.mean(10.0 * np.log10(255.0 ** 2 / np.maximum(mse, 1e-12))))


def mean_iou(outputs: np.ndarray, masks: np.ndarray) -> float:
    """Mean intersection over union (%) of per-pixel class maps (argmax over the last axis of
    `outputs`, N x H x W x K or flat) against integer masks (N x H x W), over the classes that
    occur in either."""
    masks = np.asarray(masks).astype(np.int64)
    predicted = np.asarray(outputs).reshape(masks.shape + (-1,)).argmax(axis=-1)
    classes = max(int(predicted.max()), int(masks.max())) + 1
    pairs = np.bincount((masks * classes + predicted).ravel(), minlength=classes * classes).reshape(classes, -1)
    inter = np.diag(pairs)
    union = pairs.sum(axis=0) + pairs.sum(axis=1) - inter
    return float(100.0 * (inter[union > 0] / union[union > 0]).mean())


def reconstruction_mse(outputs: np.ndarray, targets: np.ndarray) -> float:
    """Mean squared error of an autoencoder's outputs: against uint8 images, on 0..255 with the outputs
    in [0, 1] (clipped); against real-valued feature vectors, in their own units."""
    out = np.asarray(outputs, dtype=np.float64).reshape(targets.shape)
    if targets.dtype == np.uint8:
        out = np.clip(out, 0.0, 1.0) * 255.0
    return float(((out - targets.astype(np.float64)) ** 2).mean())


def downscale(images: np.ndarray, factor: int) -> np.ndarray:
    """Each factor x factor block of uint8 pixels averaged, rounded half up: the low-resolution
    input of a super-resolution task (a device takes uint8 pixels, so the mean is rounded)."""
    n, h, w, c = images.shape
    if h % factor or w % factor:
        raise ValueError(f"images of {h}x{w} pixels do not divide into {factor}x{factor} blocks")
    blocks = images.reshape(n, h // factor, factor, w // factor, factor, c).astype(np.int64).sum(axis=(2, 4))
    return ((2 * blocks + factor * factor) // (2 * factor * factor)).astype(np.uint8)


@dataclass(frozen=True)
class Task:
    """What a model's output means: how test images become inputs and targets, and the score."""
    name: str
    metric: str
    report_key: str  # its entry in a run report
    scale: int = 1

    def pairs(self, images: np.ndarray, labels: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """(model inputs, targets): the images and their labels (class ids, or masks for "seg"); for
        "sr" the images downscaled by `scale` and the images; for "ae" the images twice."""
        if self.name == "sr":
            return downscale(images, self.scale), images
        if self.name == "ae":
            return images, images
        if self.name == "seg" and labels is not None and np.asarray(labels).shape != images.shape[:3]:
            raise ValueError(f"segmentation needs one mask per image of shape {images.shape[1:3]} (y), "
                             f"got y of shape {np.asarray(labels).shape}")
        return images, labels

    @property
    def needs_labels(self) -> bool:
        return self.name in ("classify", "seg")

    def image_shape(self, input_shape) -> tuple[int, int, int]:
        """(H, W, C) of the data's images for a model input of `input_shape` (sr: `scale` times larger)."""
        h, w, c = input_shape
        return (h * self.scale, w * self.scale, c) if self.name == "sr" else (h, w, c)

    def inputs(self, images: np.ndarray) -> np.ndarray:
        return self.pairs(images, None)[0]

    def score(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        """`outputs` in real units: top-1 % of logits, PSNR (dB) of images in [0, 1], mean IoU (%) of
        class maps, or the reconstruction MSE of images in [0, 1]."""
        return {"sr": psnr, "seg": mean_iou, "ae": reconstruction_mse}.get(self.name, top1)(outputs, targets)


CLASSIFY = Task("classify", "top-1 %", "accuracy")
_TASKS = {"classify": CLASSIFY, "sr": Task("sr", "PSNR dB", "psnr_db"), "seg": Task("seg", "mean IoU %", "mean_iou"),
          "ae": Task("ae", "reconstruction MSE", "reconstruction_mse")}
TASKS = tuple(_TASKS)


def task(name: str = "classify", scale: int = 2) -> Task:
    if name not in _TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    return replace(_TASKS[name], scale=scale) if name == "sr" else _TASKS[name]


def float_logits(graph, images: np.ndarray, batch: int = 250, show_progress: bool = True) -> np.ndarray:
    starts = range(0, len(images), batch)
    return np.concatenate([run_float(graph, images[s:s + batch])
                           for s in tqdm(starts, desc="fp32", disable=not show_progress, leave=False)])


@dataclass
class EvalRow:
    label: str
    accuracy: float  # the task's score: top-1 %, or PSNR dB
    memory: MemoryReport | None  # None for FP32
    overflow_rate: float = 0.0  # share of images with any error-stream overflow
    huffman_bits: float | None = None  # mean coded bits per error symbol on the test images
    tensors: str = ""  # per-tensor report (Markdown)


def eval_quantized(label: str, model: QModel, images: np.ndarray, labels: np.ndarray,
                   show_progress: bool = True, task: Task = CLASSIFY) -> EvalRow:
    """`images` are model inputs and `labels` the task's targets (Task.pairs)."""
    progress = (lambda it: tqdm(it, desc=label, leave=False)) if show_progress else None
    result = reference.run(model, images, progress=progress)
    coded = symbols = 0
    for name, s in result.stats.items():
        t = model.tensors[name]
        if t.huffman is not None:
            counts = s.symbol_counts
            coded += float((counts * np.asarray(t.huffman.lengths)).sum())
            symbols += int(counts.sum())
    real = result.output * model.tensors[model.output].scale[0]
    return EvalRow(label, task.score(real, labels), memory(model),
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


def format_table(rows: list[EvalRow], fp32_bytes: int, metric: str = CLASSIFY.metric) -> str:
    lines = [f"| configuration | {metric} | bits / activation | activation bytes | vs fp32 bytes | "
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
