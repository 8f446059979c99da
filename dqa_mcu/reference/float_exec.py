"""The float model on uint8 NHWC pixels, as NumPy arrays: the FP32 baseline.

A thin NumPy face on ``torch_exec.TorchExec`` without a quantization plan (the
IR maps to torch ops one to one, and torch runs them many times faster than
NumPy would). ``run_float(graph, pixels)`` runs any graph (imported or
optimized, including fused residual convs and option-A add views) batch by
batch and returns ``(N, C)`` when the output is a ``(1, 1, C)`` vector, else
the NHWC output. ``collect(name, array)`` is called for every tensor a node
produces (the input node's normalized tensor included), once per batch, with
that batch's NHWC float32 array.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch

from dqa_mcu import ir
from dqa_mcu.reference.torch_exec import TorchExec

__all__ = ["run_float", "to_nhwc"]


def to_nhwc(t: torch.Tensor) -> np.ndarray:
    """A TorchExec tensor (NCHW, or (N, C) for a vector output) as a NumPy NHWC / (N, C) array."""
    return t.numpy() if t.dim() == 2 else t.permute(0, 2, 3, 1).contiguous().numpy()


def run_float(graph: ir.Graph, pixels_uint8_nhwc: np.ndarray,
              collect: Callable[[str, np.ndarray], None] | None = None,
              batch_size: int = 64) -> np.ndarray:
    """Run `graph` in float32 on uint8 NHWC pixels; returns (N, C) logits or NHWC outputs."""
    pixels = np.asarray(pixels_uint8_nhwc)
    if pixels.ndim == 3:
        pixels = pixels[None]
    if tuple(pixels.shape[1:]) != tuple(graph.shapes[graph.input]):
        raise ValueError(f"input of shape {pixels.shape[1:]} (H, W, C), the graph expects "
                         f"{graph.shapes[graph.input]}")
    ex = TorchExec(graph)
    hook = (lambda name, t: collect(name, to_nhwc(t))) if collect is not None else None
    outs = []
    with torch.inference_mode():
        for start in range(0, pixels.shape[0], batch_size):
            outs.append(to_nhwc(ex.forward_batch(pixels[start:start + batch_size], hook)))
    return np.concatenate(outs, axis=0)
