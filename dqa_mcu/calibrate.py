"""Calibration: load user images and collect per-channel activation statistics.

Output is plain data (`Calibration`): per float-graph tensor, the per-channel
maximum of |x| and a histogram of |x| over [0, max], from which the quantizer
chooses clipping ranges. Two passes over the images: maxima, then histograms.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .float_exec import run_float
from .ir import Graph

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


def _channels_last(a: np.ndarray) -> np.ndarray:
    return np.abs(a.reshape(-1, a.shape[-1]))


def calibrate(graph: Graph, images: np.ndarray, batch: int = 250, show_progress: bool = True) -> Calibration:
    """Two passes of the float graph over `images`."""
    amax: dict[str, np.ndarray] = {}

    def collect_max(name, a):
        m = _channels_last(a).max(axis=0)
        amax[name] = np.maximum(amax[name], m) if name in amax else m

    hist: dict[str, np.ndarray] = {}

    def collect_hist(name, a):
        x = _channels_last(a)
        top = np.maximum(amax[name], 1e-12)
        bins = np.minimum((x / top * HIST_BINS).astype(np.int64), HIST_BINS - 1)
        c = x.shape[1]
        flat = bins + np.arange(c) * HIST_BINS
        counts = np.bincount(flat.ravel(), minlength=c * HIST_BINS).reshape(c, HIST_BINS)
        hist[name] = hist[name] + counts if name in hist else counts

    for desc, collect in (("calibrate: ranges", collect_max), ("calibrate: histograms", collect_hist)):
        starts = range(0, len(images), batch)
        for s in tqdm(starts, desc=desc, disable=not show_progress, leave=False):
            run_float(graph, images[s:s + batch], collect=collect)
    return Calibration({k: ChannelStats(amax[k], hist[k]) for k in amax}, len(images))
