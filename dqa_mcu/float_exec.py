"""Float32 NumPy executor for the IR: the float baseline and the calibration engine.

``run_float(graph, pixels)`` runs any graph (imported or optimized, including
fused residual convs and option-A add views) on uint8 NHWC pixels, batch by
batch, and returns logits ``(N, C)`` when the output is a ``(1, 1, C)`` vector,
else the NHWC output. ``collect(name, array)`` is called for every tensor a
node produces (the input node's normalized tensor included), once per batch,
with that batch's NHWC float32 array; do not keep references you will mutate.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from . import ir
from .npconv import conv2d, windows

__all__ = ["run_float"]


def _act(x: np.ndarray, act: str) -> np.ndarray:
    if act == "relu":
        np.maximum(x, 0, out=x)
    elif act == "relu6":
        np.clip(x, 0, 6, out=x)
    elif act != "none":
        raise ir.GraphError(f"unknown activation {act!r}")
    return x


def _add_view(out: np.ndarray, b: np.ndarray, stride: int, offset: int) -> np.ndarray:
    """out += option-A view of b (in place, without materialising the zero channels)."""
    if stride != 1:
        b = b[:, ::stride, ::stride, :]
    if b.shape[1:3] != out.shape[1:3] or offset + b.shape[3] > out.shape[3]:
        raise ir.GraphError(f"residual view of shape {b.shape[1:]} (offset {offset}) does not fit {out.shape[1:]}")
    out[..., offset:offset + b.shape[3]] += b
    return out


def _run_node(n: ir.Node, env: dict[str, np.ndarray]) -> np.ndarray:
    a = n.attrs
    op = n.op
    x = env[n.inputs[0]] if n.inputs else None
    if op == "conv2d":
        out = conv2d(x, n.params["weight"], a["stride"], a["padding"], a["dilation"], a["groups"])
        out += n.params["bias"].astype(np.float32)
        if len(n.inputs) > 1:
            _add_view(out, env[n.inputs[1]], a.get("residual_stride", 1), a.get("residual_channel_offset", 0))
        return _act(out, a["act"])
    if op == "add":
        out = x.copy()
        _add_view(out, env[n.inputs[1]], a.get("b_stride", 1), a.get("b_channel_offset", 0))
        return _act(out, a["act"])
    if op == "linear":
        out = x.reshape(x.shape[0], -1) @ n.params["weight"].astype(np.float32).T
        out += n.params["bias"].astype(np.float32)
        return _act(out, a["act"]).reshape(x.shape[0], 1, 1, -1)
    if op == "batchnorm":
        p = n.params
        scale = (p["gamma"] / np.sqrt(p["var"] + a["eps"])).astype(np.float32)
        return (x - p["mean"].astype(np.float32)) * scale + p["beta"].astype(np.float32)
    if op == "relu":
        return np.maximum(x, 0)
    if op == "relu6":
        return np.clip(x, 0, 6)
    if op == "maxpool":
        kh, kw = a["kernel"]
        return windows(x, kh, kw, a["stride"], a["padding"], pad_value=-np.inf).max(axis=(4, 5))
    if op == "avgpool":  # count_include_pad=True: padded zeros count in the divisor
        kh, kw = a["kernel"]
        return windows(x, kh, kw, a["stride"], a["padding"]).mean(axis=(4, 5), dtype=np.float32)
    if op == "global_avgpool":
        return x.mean(axis=(1, 2), keepdims=True, dtype=np.float32)
    if op == "flatten":
        return x.reshape(x.shape[0], 1, 1, -1)
    if op == "concat":
        return np.concatenate([env[t] for t in n.inputs], axis=3)
    if op == "upsample_nearest":
        s = a["scale"]
        sh, sw = (s, s) if np.isscalar(s) else s
        return np.repeat(np.repeat(x, sh, axis=1), sw, axis=2)
    if op == "slice":
        (h0, w0), (sh, sw) = a["start"], a["step"]
        return x[:, h0::sh, w0::sw, :]
    if op == "pad_channels":
        return np.pad(x, ((0, 0), (0, 0), (0, 0), (a["before"], a["after"])))
    raise ir.GraphError(f"node {n.name!r}: the float executor does not support op {op!r}")


def run_float(graph: ir.Graph, pixels_uint8_nhwc: np.ndarray,
              collect: Callable[[str, np.ndarray], None] | None = None,
              batch_size: int = 64) -> np.ndarray:
    """Run `graph` in float32 on uint8 NHWC pixels; returns (N, C) logits or NHWC outputs."""
    pixels = np.asarray(pixels_uint8_nhwc)
    if pixels.ndim == 3:
        pixels = pixels[None]
    inp = graph.nodes[0]
    if inp.op != "input":
        raise ir.GraphError("the first node must be the 'input' node")
    if tuple(pixels.shape[1:]) != tuple(graph.shapes[graph.input]):
        raise ValueError(f"input of shape {pixels.shape[1:]} (H, W, C), the graph expects "
                         f"{graph.shapes[graph.input]}")
    last_use: dict[str, int] = {}
    for i, n in enumerate(graph.nodes):
        for t in n.inputs:
            last_use[t] = i
    scale = np.float32(inp.attrs["pixel_scale"])
    mean = inp.params["mean"].astype(np.float32)
    inv_std = (1.0 / inp.params["std"].astype(np.float64)).astype(np.float32)

    outs = []
    for start in range(0, pixels.shape[0], batch_size):
        batch = pixels[start:start + batch_size]
        x = (batch.astype(np.float32) * scale - mean) * inv_std
        env = {graph.input: x}
        if collect is not None:
            collect(graph.input, x)
        for i, n in enumerate(graph.nodes[1:], start=1):
            y = _run_node(n, env)
            if y.dtype != np.float32:
                y = y.astype(np.float32)
            env[n.output] = y
            if collect is not None:
                collect(n.output, y)
            for t in n.inputs:
                if last_use.get(t) == i and t != graph.output:
                    env.pop(t, None)
        outs.append(env[graph.output])
    out = np.concatenate(outs, axis=0)
    if out.shape[1:3] == (1, 1):
        return out.reshape(out.shape[0], -1)
    return out
