"""The float graph IR: a small, typed, NHWC description of a CNN.

Plain data only: importers build it, passes rewrite it, calibration and the
float executor read it. Nothing here imports another dqa_mcu stage.

Conventions
-----------
* Activations are NHWC. A tensor's ``shape`` omits the batch: ``(H, W, C)``.
  Vectors (after global pooling / flatten) are ``(1, 1, C)``.
* Convolution weights are OHWI: ``(C_out, KH, KW, C_in // groups)``.
* Linear weights are ``(C_out, C_in)`` with C_in in HWC order.
* Padding is ``(top, bottom, left, right)``.
* ``act`` on conv2d / linear / add is one of ``ACTIVATIONS``; it is applied
  after the bias (and after the residual sum for a fused residual);
  ``leaky_relu`` comes with the attr ``negative_slope``, ``clamp`` (any other
  hardtanh / clamp range) with ``clamp_min`` and ``clamp_max``.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

ACTIVATIONS = ("none", "relu", "relu6", "leaky_relu", "clamp")  # attrs negative_slope; clamp_min, clamp_max
TABLE_FUNCTIONS = ("sigmoid", "hardsigmoid", "hardswish", "tanh", "silu")  # the "activation" op
NON_NEGATIVE_FUNCTIONS = ("sigmoid", "hardsigmoid")

# op name -> (required attrs, required params). Checked by Graph.validate().
OPS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # x_norm = (pixel * pixel_scale - mean[c]) / std[c]; input is uint8 pixels
    "input": (("pixel_scale",), ("mean", "std")),
    "conv2d": (("stride", "padding", "dilation", "groups", "act"), ("weight", "bias")),
    "batchnorm": (("eps",), ("gamma", "beta", "mean", "var")),
    "relu": ((), ()),
    "relu6": ((), ()),
    "leaky_relu": (("negative_slope",), ()),
    "clamp": (("clamp_min", "clamp_max"), ()),  # -inf / inf for an open side
    # out = act(a + b), or act(a - b) with attr b_sign = -1; attrs b_stride / b_channel_offset describe a fused
    # option-A shortcut view of b (subsample, then zero-pad channels).
    "add": (("act",), ()),
    "maxpool": (("kernel", "stride", "padding"), ()),
    "avgpool": (("kernel", "stride", "padding"), ()),  # count_include_pad=True
    "global_avgpool": ((), ()),
    "flatten": ((), ()),  # HWC-order flatten to (1, 1, H*W*C)
    "linear": (("act",), ("weight", "bias")),
    "concat": ((), ()),  # along channels
    "upsample_nearest": (("scale",), ()),  # scale: (s_h, s_w) integer factors
    # PyTorch's bilinear interpolate with align_corners=False, integer factors (s_h, s_w)
    "upsample_bilinear": (("scale",), ()),
    # PyTorch's pixel_shuffle: out[h*r + i, w*r + j, c] = in[h, w, c*r*r + i*r + j]
    "depth_to_space": (("block",), ()),
    # element-wise a * b; b has a's shape or is a (1, 1, C) vector broadcast over a's pixels
    "mul": ((), ()),
    # a smooth function of each element, one of TABLE_FUNCTIONS (a table in the integer model)
    "activation": (("function",), ()),
    # x[:, start_h::step_h, start_w::step_w, :]
    "slice": (("start", "step"), ()),
    # zero channels before / after
    "pad_channels": (("before", "after"), ()),
}


def act_bounds(attrs: dict, op: str | None = None) -> tuple[float, float]:
    """The real range an activation clamps to: a node's fused ``act``, or with `op` a standalone
    relu / relu6 / clamp node's own; (-inf, inf) for none and leaky_relu."""
    act = op if op in ("relu", "relu6", "clamp") else attrs.get("act", "none")
    if act == "clamp":
        return float(attrs["clamp_min"]), float(attrs["clamp_max"])
    return {"relu": (0.0, math.inf), "relu6": (0.0, 6.0)}.get(act, (-math.inf, math.inf))


def clamp_act(lo: float, hi: float) -> dict:
    """The attrs of the activation clamping to [lo, hi], in its simplest name."""
    if lo == 0 and hi == math.inf:
        return dict(act="relu")
    if lo == 0 and hi == 6:
        return dict(act="relu6")
    if lo == -math.inf and hi == math.inf:
        return dict(act="none")
    return dict(act="clamp", clamp_min=float(lo), clamp_max=float(hi))


def block_conv_attrs_params(weight: np.ndarray, bias: np.ndarray) -> tuple[dict, dict]:
    """The 1x1 conv2d of a transposed convolution whose kernel equals its stride r, lowered as
    conv2d + depth_to_space(r): `weight` (C_out, r, r, C_in), `bias` (C_out,). Its channel
    o*r*r + i*r + j computes output channel o at block offset (i, j), depth_to_space's order."""
    cout, r, _, cin = weight.shape
    attrs = dict(stride=(1, 1), padding=(0, 0, 0, 0), dilation=(1, 1), groups=1, act="none")
    params = dict(weight=np.ascontiguousarray(weight.reshape(cout * r * r, 1, 1, cin), dtype=np.float32),
                  bias=np.repeat(np.asarray(bias, np.float32), r * r))
    return attrs, params


def unique_name(base: str, used: set[str]) -> str:
    """A C-identifier-safe version of `base`, made unique against (and added to) `used`."""
    base = re.sub(r"[^0-9A-Za-z_]", "_", base) or "t"
    if base[0].isdigit():
        base = "t_" + base
    name, i = base, 1
    while name in used:
        name = f"{base}_{i}"
        i += 1
    used.add(name)
    return name


class GraphError(ValueError):
    """A graph that cannot be represented or processed; the message names the node."""


@dataclass
class Node:
    name: str
    op: str
    inputs: list[str]
    output: str
    attrs: dict = field(default_factory=dict)
    params: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class Graph:
    nodes: list[Node]
    shapes: dict[str, tuple[int, int, int]]  # tensor name -> (H, W, C)
    input: str
    output: str

    def producer(self, tensor: str) -> Node:
        for node in self.nodes:
            if node.output == tensor:
                return node
        raise GraphError(f"tensor {tensor!r} has no producer")

    def consumers(self, tensor: str) -> list[Node]:
        return [n for n in self.nodes if tensor in n.inputs]

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise GraphError(f"no node named {name!r}")

    def validate(self) -> None:
        """Check op names, attrs, params, topological order and shapes."""
        seen: set[str] = set()
        for node in self.nodes:
            if node.op not in OPS:
                raise GraphError(f"node {node.name!r}: unsupported op {node.op!r}")
            attrs, params = OPS[node.op]
            for a in attrs:
                if a not in node.attrs:
                    raise GraphError(f"node {node.name!r} ({node.op}): missing attr {a!r}")
            for p in params:
                if p not in node.params:
                    raise GraphError(f"node {node.name!r} ({node.op}): missing param {p!r}")
            if node.attrs.get("act", "none") not in ACTIVATIONS:
                raise GraphError(f"node {node.name!r}: unknown activation {node.attrs['act']!r}")
            if node.op == "activation" and node.attrs["function"] not in TABLE_FUNCTIONS:
                raise GraphError(f"node {node.name!r}: unknown function {node.attrs['function']!r}")
            if node.attrs.get("act") == "leaky_relu" and "negative_slope" not in node.attrs:
                raise GraphError(f"node {node.name!r}: leaky_relu without its negative_slope")
            if node.attrs.get("act") == "clamp" or node.op == "clamp":
                lo, hi = act_bounds(node.attrs, node.op) if "clamp_min" in node.attrs else (math.nan, math.nan)
                if not lo < hi:
                    raise GraphError(f"node {node.name!r}: clamp needs clamp_min < clamp_max, got [{lo}, {hi}]")
            for t in node.inputs:
                if t not in seen:
                    raise GraphError(f"node {node.name!r}: input {t!r} is not produced before it")
            if node.output in seen:
                raise GraphError(f"node {node.name!r}: tensor {node.output!r} produced twice")
            if node.output not in self.shapes:
                raise GraphError(f"node {node.name!r}: output {node.output!r} has no shape")
            seen.add(node.output)
        if self.nodes[0].op != "input" or self.nodes[0].output != self.input:
            raise GraphError("the first node must be the graph's single 'input' node")
        if self.output not in seen:
            raise GraphError(f"graph output {self.output!r} is never produced")
