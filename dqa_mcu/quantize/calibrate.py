"""Calibration: load user images and collect per-channel activation statistics.

Output is plain data (`Calibration`): per float-graph tensor, the per-channel
maximum of |x| and a histogram of |x| over [0, max], from which the quantizer
chooses clipping ranges. Two passes over the images: maxima, then histograms;
the float graph runs in torch (torch_exec), which is many times faster than NumPy.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from dqa_mcu.ir import Graph
from dqa_mcu.reference.torch_exec import TorchExec, parallel_map

HIST_BINS = 2048
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".pgm")


class DataError(ValueError):
    """Calibration or evaluation data that cannot be used; the message says why."""


def load_images(path: str | Path, shape_hwc: tuple[int, int, int] | None = None):
    """Images as uint8 NHWC plus labels (or None).

    `path` is an .npz with `x` (uint8, N x H x W x C) and optionally `y`, or a
    folder of image files (labels: none).
    """
    path = Path(path)
    if path.is_dir():
        from PIL import Image
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{path}: no image files ({', '.join(IMAGE_SUFFIXES)})")
        mode = "L" if shape_hwc and shape_hwc[2] == 1 else "RGB"
        x = np.stack([np.asarray(Image.open(f).convert(mode)) for f in files])
        x = x[..., None] if x.ndim == 3 else x
        y = None
    elif path.suffix == ".npz":
        try:
            data = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read as .npz ({exc})") from None
        if "x" not in data:
            raise DataError(f"{path}: no array named 'x' (found: {', '.join(data.files)})")
        x = data["x"]
        y = data["y"] if "y" in data else None
    else:
        raise DataError(f"{path}: expected an .npz file or a folder of images")
    if x.dtype != np.uint8:
        raise DataError(f"{path}: images must be uint8 pixels, got {x.dtype}")
    if x.ndim != 4:
        raise DataError(f"{path}: images must be N x H x W x C (NHWC), got shape {x.shape}")
    if shape_hwc is not None and tuple(x.shape[1:]) != tuple(shape_hwc):
        raise DataError(f"{path}: images are {x.shape[1:]} (H, W, C) but the model expects {tuple(shape_hwc)}")
    if y is not None and len(y) != len(x):
        raise DataError(f"{path}: {len(x)} images but {len(y)} labels")
    return x, y


def subsample(count: int | None, *arrays):
    """Evenly spaced rows, so a file sorted by class keeps every class."""
    n = len(arrays[0])
    if count is None or count >= n:
        return arrays
    rows = np.linspace(0, n, count, endpoint=False).astype(np.int64)
    return tuple(a[rows] if a is not None else None for a in arrays)


@dataclass
class ChannelStats:
    amax: np.ndarray  # (C,) max |x|
    hist: np.ndarray  # (C, HIST_BINS) counts of |x| in [0, amax]

    def percentile(self, q: float) -> np.ndarray:
        """Per-channel q-th percentile of |x| (upper bin edge, so never under-clips a bin)."""
        cdf = np.cumsum(self.hist, axis=1)
        total = np.maximum(cdf[:, -1:], 1)
        idx = (cdf < total * (q / 100.0)).sum(axis=1)
        return self.amax * np.minimum(idx + 1, HIST_BINS) / HIST_BINS


@dataclass
class Calibration:
    tensors: dict[str, ChannelStats]
    images: int


def calibrate(graph: Graph, images: np.ndarray, batch: int = 50, show_progress: bool = True) -> Calibration:
    """Two passes of the float graph (in torch, one thread per core) over `images`: maxima, then
    histograms of |x| over [0, max] per channel."""
    ex = TorchExec(graph)
    starts = list(range(0, len(images), batch))

    def over_images(desc: str, stat: Callable[[str, torch.Tensor], torch.Tensor],
                    merge: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> dict[str, torch.Tensor]:
        """stat(tensor, values) per batch, merged over all batches (the workers share one total)."""
        totals: dict[str, torch.Tensor] = {}
        lock = threading.Lock()

        def one(start):
            found: dict[str, torch.Tensor] = {}
            with torch.inference_mode():
                ex.forward_batch(images[start:start + batch], lambda name, t: found.__setitem__(name, stat(name, t)))
                with lock:
                    for name, value in found.items():
                        totals[name] = merge(totals[name], value) if name in totals else value
        with tqdm(total=len(starts), desc=desc, disable=not show_progress, leave=False) as bar:
            parallel_map(one, starts, progress=bar.update)
        return totals

    def channel_max(_, t):
        return t.abs().amax(dim=(0, 2, 3))

    amax = over_images("calibrate: ranges", channel_max, torch.maximum)

    def channel_hist(name, t):
        c = t.shape[1]
        # channel-major (C, N, H, W): each channel's elements in a row, so its bins stay in cache
        scaled = t.abs().permute(1, 0, 2, 3).contiguous()
        scaled.mul_((HIST_BINS / amax[name].clamp(min=1e-12)).view(-1, 1, 1, 1)).clamp_(max=HIST_BINS - 1)
        bins = scaled.to(torch.int32)
        bins += torch.arange(0, c * HIST_BINS, HIST_BINS, dtype=torch.int32).view(-1, 1, 1, 1)  # channel c's bins
        return torch.bincount(bins.reshape(-1), minlength=c * HIST_BINS).reshape(c, HIST_BINS)

    hist = over_images("calibrate: histograms", channel_hist, torch.Tensor.add_)
    return Calibration({k: ChannelStats(amax[k].numpy().astype(np.float32), hist[k].numpy())
                        for k in amax}, len(images))
