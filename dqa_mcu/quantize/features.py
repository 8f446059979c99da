"""Real-valued vector inputs (an MLP, a fully connected autoencoder): per-feature uint8 codes.

The integer model's input stage takes uint8 codes and reads them through a
per-channel table (docs/spec.md 5.1), written for pixels. A feature vector
uses the same stage: each feature's calibration range [lo, hi] is cut into
255 steps, the application (or `feature_codes` on the host) sends
``code = clamp(round_half_up((x - lo) / (hi - lo) * 255), 0, 255)``, and the
model's normalization maps the code back, ``x = lo + code * (hi - lo) / 255``,
as ``(code * pixel_scale - mean) / std`` with ``pixel_scale = 1/255``,
``mean = -lo / (hi - lo)``, ``std = 1 / (hi - lo)``. Float execution sees the
same codes, so every model (FP32 included) is scored on 8-bit inputs, as an
int8 TFLite model is.
"""
from __future__ import annotations

import numpy as np

from dqa_mcu.frontends.zoo import Normalization
from dqa_mcu.qmodel import QModel
from dqa_mcu.quantize.calibrate import DataError

__all__ = ["feature_normalization", "feature_codes", "model_normalization", "load_features", "is_feature_file",
           "MIN_RANGE"]

MIN_RANGE = 1e-6  # a constant feature still gets a range, so that its step is not zero


def _ranges(normalization: Normalization) -> tuple[np.ndarray, np.ndarray]:
    std = np.asarray(normalization.std, np.float64)
    span = 1.0 / std
    return -np.asarray(normalization.mean, np.float64) * span, span


def feature_normalization(calib: np.ndarray) -> Normalization:
    """The per-feature normalization for real-valued calibration vectors `calib` (count, N)."""
    x = np.asarray(calib, np.float64)
    if x.ndim != 2 or not len(x):
        raise ValueError(f"feature vectors must be an array of shape (count, N), got {x.shape}")
    lo, hi = x.min(axis=0), x.max(axis=0)
    span = np.maximum(hi - lo, MIN_RANGE)
    return Normalization(1.0 / 255.0, tuple(float(v) for v in -lo / span), tuple(float(v) for v in 1.0 / span))


def feature_codes(x: np.ndarray, normalization: Normalization) -> np.ndarray:
    """Real-valued vectors (count, N) as the model's uint8 input codes, shaped (count, 1, 1, N)."""
    x = np.asarray(x, np.float64)
    lo, span = _ranges(normalization)
    if x.ndim != 2 or x.shape[1] != lo.size:
        raise ValueError(f"feature vectors of shape {x.shape}; the model takes (count, {lo.size})")
    codes = np.clip(np.floor((x - lo) / span * 255.0 + 0.5), 0, 255).astype(np.uint8)
    return codes.reshape(len(x), 1, 1, -1)


def model_normalization(model: QModel) -> Normalization | None:
    """The normalization a quantized model was built with (its input node keeps it; None in a model
    saved before it did)."""
    node = next(n for n in model.nodes if n.op == "input")
    if "mean" not in node.attrs:
        return None
    return Normalization(float(node.attrs["pixel_scale"]), tuple(node.attrs["mean"]), tuple(node.attrs["std"]))


def is_feature_file(path) -> bool:
    """An .npz whose x holds vectors (count, N) rather than images."""
    if not str(path).endswith(".npz"):
        return False
    try:
        with np.load(path, allow_pickle=False) as data:
            return "x" in data and data["x"].ndim == 2
    except (OSError, ValueError):
        return False  # load_images names the problem


def load_features(path, features: int | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Real-valued vectors (count, N) as float64, and y (labels) or None, from an .npz."""
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read as .npz ({exc})") from None
    if "x" not in data or data["x"].ndim != 2:
        raise DataError(f"{path}: a vector model reads an .npz whose x has shape (count, N)")
    x = data["x"]
    if not np.issubdtype(x.dtype, np.number) or not np.all(np.isfinite(x)):
        raise DataError(f"{path}: x must hold finite numbers, got {x.dtype}")
    if features is not None and x.shape[1] != features:
        raise DataError(f"{path}: vectors of {x.shape[1]} values; the model takes {features}")
    y = data["y"] if "y" in data else None
    if y is not None and len(y) != len(x):
        raise DataError(f"{path}: {len(x)} vectors but {len(y)} labels")
    return x.astype(np.float64), y
