"""Graph rewrites on the float IR, run by ``optimize`` before calibration.

Every pass returns a new ``ir.Graph`` and leaves its input untouched (nodes
are copied; parameter arrays are shared and never written in place). When a
node is removed, the tensor it produced is renamed to the tensor of the node
that absorbed it, so every node keeps ``output == name``.

Input normalization is deliberately NOT folded into the first convolution: it
stays in the ``input`` node. Folding ``(p * s - mean) / std`` into the first
conv's weights would be exact only without padding: the conv zero-pads in
*normalized* space (a padded pixel is normalized 0, i.e. the channel mean),
while a folded conv would pad raw pixel 0 (normalized ``-mean/std``), which
changes every border output. The integer stage turns the input node into a
per-channel lookup table from uint8 pixels to the quantized first tensor, so
a zero pad there still means normalized zero.
"""
from __future__ import annotations

import numpy as np

from dqa_mcu import ir

__all__ = ["fold_batchnorm", "fuse_activations", "lower_shortcuts", "fuse_residual", "optimize"]


def _activation_of(node: ir.Node) -> dict:
    """The attrs that make up a node's fused activation: act, leaky_relu's slope, clamp's range."""
    return {k: node.attrs[k] for k in ("act", "negative_slope", "clamp_min", "clamp_max") if k in node.attrs}


def _copy(graph: ir.Graph) -> ir.Graph:
    nodes = [ir.Node(n.name, n.op, list(n.inputs), n.output, dict(n.attrs), dict(n.params)) for n in graph.nodes]
    return ir.Graph(nodes=nodes, shapes=dict(graph.shapes), input=graph.input, output=graph.output)


def _rename(graph: ir.Graph, old: str, new: str) -> None:
    for n in graph.nodes:
        n.inputs = [new if t == old else t for t in n.inputs]
    if graph.output == old:
        graph.output = new


def _remove(graph: ir.Graph, node: ir.Node, replacement_tensor: str) -> None:
    """Drop `node`; its consumers read `replacement_tensor` instead."""
    graph.nodes = [n for n in graph.nodes if n is not node]
    graph.shapes.pop(node.output, None)
    _rename(graph, node.output, replacement_tensor)


def _producer(graph: ir.Graph, tensor: str) -> ir.Node | None:
    for n in graph.nodes:
        if n.output == tensor:
            return n
    return None


def _n_uses(graph: ir.Graph, tensor: str) -> int:
    uses = sum(n.inputs.count(tensor) for n in graph.nodes)
    return uses + (graph.output == tensor)


def fold_batchnorm(graph: ir.Graph) -> ir.Graph:
    """Fold each BatchNorm into the conv2d (or linear) that produces its input (through a
    depth_to_space, as after a lowered transposed convolution).

    Why: inference BatchNorm is a per-channel affine map, so
    ``bn(conv(x)) = conv'(x)`` with ``w' = w * g`` and ``b' = (b - mean) * g + beta``,
    ``g = gamma / sqrt(var + eps)``. The integer pipeline then never sees a
    BatchNorm, and the folded weights are what gets quantized (as in
    deployment). Only valid when the conv has no other consumer and no fused
    activation or residual; any other BatchNorm is an error naming it.
    """
    g = _copy(graph)
    for bn in [n for n in g.nodes if n.op == "batchnorm"]:
        prod = _producer(g, bn.inputs[0])
        block = 1  # a depth_to_space between: output channel c is conv channels c*r*r .. c*r*r + r*r - 1
        if prod is not None and prod.op == "depth_to_space" and _n_uses(g, prod.output) == 1:
            block = prod.attrs["block"]
            shuffle, prod = prod, _producer(g, prod.inputs[0])
            if prod is not None and _n_uses(g, prod.output) != 1:
                raise ir.GraphError(f"batchnorm {bn.name!r} cannot be folded: the output of {prod.op} "
                                    f"{prod.name!r} (before depth_to_space {shuffle.name!r}) has other consumers")
        why = None
        if prod is None or prod.op not in ("conv2d", "linear"):
            why = f"its input is produced by {prod.op if prod else '?'} {prod.name if prod else ''!r}"
        elif _n_uses(g, prod.output) != 1:
            why = f"the output of {prod.op} {prod.name!r} has other consumers"
        elif prod.attrs.get("act", "none") != "none" or len(prod.inputs) != 1:
            why = f"{prod.op} {prod.name!r} already has a fused activation or residual"
        if why:
            raise ir.GraphError(f"batchnorm {bn.name!r} cannot be folded: {why}")
        p = bn.params
        scale = (p["gamma"].astype(np.float64) / np.sqrt(p["var"].astype(np.float64) + bn.attrs["eps"]))
        scale, mean, beta = (np.repeat(np.asarray(a, np.float64), block * block)
                             for a in (scale, p["mean"], p["beta"]))
        w = prod.params["weight"].astype(np.float64)
        w = w * scale.reshape((-1,) + (1,) * (w.ndim - 1))
        b = (prod.params["bias"].astype(np.float64) - mean) * scale + beta
        prod.params = dict(prod.params, weight=w.astype(np.float32), bias=b.astype(np.float32))
        _remove(g, bn, bn.inputs[0])
    return g


# ops f with clamp(f(x)) == f(clamp(x)) for relu, relu6, clamp, leaky_relu; maxpool pads with -inf
_MONOTONE = ("maxpool", "slice", "upsample_nearest", "flatten", "pad_channels", "depth_to_space")
_NONNEG_PASSTHROUGH = ("maxpool", "avgpool", "global_avgpool", "flatten", "slice", "pad_channels",
                       "upsample_nearest", "depth_to_space", "upsample_bilinear")


def _nonneg_tensors(g: ir.Graph) -> set[str]:
    """Tensors known to be >= 0 (after a ReLU, or shape/pool ops of such tensors)."""
    nonneg: set[str] = set()
    for n in g.nodes:
        if ir.act_bounds(n.attrs, n.op)[0] >= 0:
            nonneg.add(n.output)
        elif n.op in _NONNEG_PASSTHROUGH and n.inputs[0] in nonneg:
            nonneg.add(n.output)
        elif n.op == "concat" and all(t in nonneg for t in n.inputs):
            nonneg.add(n.output)
    return nonneg


def fuse_activations(graph: ir.Graph) -> ir.Graph:
    """Fold ReLU / ReLU6 / clamp / LeakyReLU nodes into the conv2d, linear or add that produces their input.

    Why: the integer kernels apply the activation as the output clamp of the
    requantization, for free, and a separate activation would store an extra
    tensor. A ReLU of a tensor already known to be non-negative is the
    identity and is removed, as is a clamp whose range holds what its input's own activation
    lets through; a clamp after a fused ReLU or clamp clamps to both ranges' intersection. An
    activation after single-use max pooling / slice / upsample / flatten /
    channel pad is moved onto the op before them (they commute with it). Any
    other standalone activation is an error naming it (no integer kernel).
    """
    g = _copy(graph)
    for act in [n for n in g.nodes if n.op in ("relu", "relu6", "leaky_relu", "clamp")]:
        src = act.inputs[0]
        prod = _producer(g, src)
        lo, hi = ir.act_bounds(act.attrs, act.op)
        if act.op in ("relu", "leaky_relu") and src in _nonneg_tensors(g):
            _remove(g, act, src)
            continue
        base = prod
        while base is not None and base.op in _MONOTONE:
            base = _producer(g, base.inputs[0])
        if base is not None and base.attrs.get("act", "none") != "leaky_relu":
            base_lo, base_hi = ir.act_bounds(base.attrs)
            if (base_lo >= 0) if act.op == "leaky_relu" else (lo <= base_lo and base_hi <= hi):
                _remove(g, act, src)  # the values are already in the range: the identity
                continue
        # walk back through single-use monotone ops (they commute with relu / relu6)
        base, t = prod, src
        while (base is not None and base.op in _MONOTONE and _n_uses(g, t) == 1):
            t = base.inputs[0]
            base = _producer(g, t)
        if base is not None and base.op in ("conv2d", "linear", "add") and _n_uses(g, t) == 1:
            cur = base.attrs.get("act", "none")
            if act.op == "leaky_relu" and cur == "none":
                base.attrs.update(act="leaky_relu", negative_slope=act.attrs["negative_slope"])
                _remove(g, act, src)
                continue
            base_lo, base_hi = ir.act_bounds(base.attrs)
            if act.op != "leaky_relu" and cur != "leaky_relu" and max(lo, base_lo) < min(hi, base_hi):
                # two clamps in a row clamp to the intersection of their ranges
                for key in _activation_of(base):
                    del base.attrs[key]
                base.attrs.update(ir.clamp_act(max(lo, base_lo), min(hi, base_hi)))
                _remove(g, act, src)
                continue
        where = f"{prod.op} {prod.name!r}" if prod is not None else repr(src)
        raise ir.GraphError(f"{act.op} {act.name!r} cannot be fused: its input comes from {where}"
                            + (" which has other consumers" if prod is not None and _n_uses(g, src) > 1 else ""))
    return g


def lower_shortcuts(graph: ir.Graph) -> ir.Graph:
    """Turn an option-A shortcut (slice -> pad_channels -> add) into a view on the add's input.

    Why: ``x[:, :, ::s, ::s]`` padded with zero channels is never worth
    storing: the add (or a residual conv) can read ``x`` directly with a
    stride and a channel offset, and treat the padded channels as zero. The
    add gets ``b_stride`` / ``b_channel_offset`` and the shortcut source as its
    second input. Every add gets these attrs (1 / 0 when there is no view).
    A slice or pad that feeds anything but a single add stays in the graph.
    """
    g = _copy(graph)
    for add in [n for n in g.nodes if n.op == "add"]:
        add.attrs.setdefault("b_stride", 1)
        add.attrs.setdefault("b_channel_offset", 0)
        if add.attrs["b_stride"] != 1 or add.attrs["b_channel_offset"] != 0 or add.attrs.get("b_sign", 1) != 1:
            continue  # a subtraction's operands keep their order
        for idx in (1, 0):
            t = add.inputs[idx]
            if add.inputs.count(t) != 1:
                continue
            removed, before, stride = [], 0, 1
            p = _producer(g, t)
            if p is not None and p.op == "pad_channels" and _n_uses(g, t) == 1:
                before = p.attrs["before"]
                removed.append(p)
                t = p.inputs[0]
                p = _producer(g, t)
            if (p is not None and p.op == "slice" and tuple(p.attrs["start"]) == (0, 0)
                    and p.attrs["step"][0] == p.attrs["step"][1] and _n_uses(g, t) == 1):
                stride = p.attrs["step"][0]
                removed.append(p)
                t = p.inputs[0]
            if not removed:
                continue
            other = add.inputs[1 - idx]
            add.inputs = [other, t]
            add.attrs["b_stride"] = int(stride)
            add.attrs["b_channel_offset"] = int(before)
            for r in removed:
                g.nodes = [n for n in g.nodes if n is not r]
                g.shapes.pop(r.output, None)
            break
    return g


def fuse_residual(graph: ir.Graph) -> ir.Graph:
    """Fuse ``add(conv(x), r)`` into the conv: ``conv2d(inputs=[x, r])``.

    Why: the conv output would otherwise be stored only to be read once by
    the add; fused, the kernel adds the residual (through the add's option-A
    view, as ``residual_stride`` / ``residual_channel_offset``) before the
    activation and requantizes once, saving a tensor and a pass over memory.
    Conditions: the conv has act 'none', no residual yet, and the add as its
    only consumer; its output must be an input the add reads without a view
    (``a``, or ``b`` when the add has no view). If both inputs qualify, the
    conv produced later is fused, so the other operand already exists. The
    fused node sits at the conv's place when the residual is produced before
    the conv, else at the add's place.
    """
    g = _copy(graph)
    for add in [n for n in g.nodes if n.op == "add" and n.attrs.get("b_sign", 1) == 1]:  # not a subtraction
        stride = add.attrs.get("b_stride", 1)
        offset = add.attrs.get("b_channel_offset", 0)
        eligible = [0] if (stride != 1 or offset != 0) else [0, 1]
        order = {n.name: i for i, n in enumerate(g.nodes)}
        cands = []
        for idx in eligible:
            t = add.inputs[idx]
            p = _producer(g, t)
            if (p is not None and p.op == "conv2d" and p.attrs.get("act", "none") == "none"
                    and len(p.inputs) == 1 and _n_uses(g, t) == 1 and add.inputs.count(t) == 1):
                cands.append((order[p.name], idx, p))
        if not cands:
            continue
        _, idx, conv = max(cands, key=lambda c: c[0])
        residual = add.inputs[1 - idx]
        if idx == 0:
            r_stride, r_offset = stride, offset
        else:
            r_stride, r_offset = 1, 0
        conv.inputs = [conv.inputs[0], residual]
        conv.attrs.update(residual_stride=int(r_stride), residual_channel_offset=int(r_offset),
                          **{"act": "none", **_activation_of(add)})
        rprod = _producer(g, residual)
        order = {n.name: i for i, n in enumerate(g.nodes)}
        if rprod is not None and order[rprod.name] > order[conv.name]:  # move the conv to the add's place
            g.nodes.remove(conv)
            g.nodes.insert(g.nodes.index(add), conv)
        _remove(g, add, conv.output)
    return g


def optimize(graph: ir.Graph) -> ir.Graph:
    """fold_batchnorm -> fuse_activations -> lower_shortcuts -> fuse_residual, then validate."""
    g = fold_batchnorm(graph)
    g = fuse_activations(g)
    g = lower_shortcuts(g)
    g = fuse_residual(g)
    g.validate()
    return g
