"""Float TFLite -> the float graph IR, so a float ``.tflite`` goes through DQA like a Keras model.

``tflite_to_ir(graph)`` takes a float ``TFLiteGraph`` (``tflite_import``,
``quantized`` False) and returns an ``ir.Graph`` (NHWC, conv weights OHWI,
padding (top, bottom, left, right)). Node names come from the layer part of
each op's output tensor name (``model/activation_1/Relu;...`` -> ``activation_1``).

Mapping, as in ``keras_import`` (same conventions and the same refusals):

* CONV_2D / DEPTHWISE_CONV_2D -> conv2d (depthwise: ``groups`` = input
  channels); FULLY_CONNECTED -> linear (a flatten first if its input is not
  a vector); ADD -> add; MAX_POOL_2D -> maxpool; AVERAGE_POOL_2D -> avgpool,
  or global_avgpool when the window is the whole input; MEAN over H and W ->
  global_avgpool; CONCATENATION along channels -> concat; RESHAPE to a
  vector -> flatten (or nothing when the input is already one). Fused
  activations NONE / RELU / RELU6 / RELU_N1_TO_1 (a clamp to [-1, 1]).
* SUB -> add with ``b_sign`` -1; MUL -> mul (equal shapes or a (1, 1, C)
  vector); RELU / RELU6 / RELU_N1_TO_1 / LEAKY_RELU -> relu / relu6 / clamp /
  leaky_relu; LOGISTIC /
  TANH / HARD_SWISH -> the table activations sigmoid / tanh / hardswish.
* TRANSPOSE_CONV with kernel == stride (square, no overlap) -> a 1x1 conv2d
  plus depth_to_space, as the other importers lower it.
* RESIZE_NEAREST_NEIGHBOR (no align_corners) -> upsample_nearest;
  RESIZE_BILINEAR with half_pixel_centers -> upsample_bilinear (PyTorch's
  align_corners=False); integer factors only.
* Data movement (RESHAPE, TILE, TRANSPOSE, DEPTH_TO_SPACE) is followed as an
  index map onto its source tensor, so that the chains converters emit (Keras 3
  writes UpSampling2D as RESHAPE / TILE / RESHAPE / TILE) resolve to one IR op
  where a consumer reads them: the identity, a flatten to a vector, nearest
  upsampling, or PixelShuffle's depth_to_space. TFLite's DEPTH_TO_SPACE
  orders channels depth-column-row (DCR), the IR PyTorch's column-row-depth:
  the producing convolution's output channels are permuted to match. Element-
  wise activations on a moved tensor are applied at its source.
* PAD (zeros, spatial axes only) is folded into the padding of its single
  consumer when that is a convolution or an average pool.
* AVERAGE_POOL_2D with SAME padding that pads is refused (TFLite divides by
  the valid pixels, the IR's avgpool by the window).
* A SOFTMAX producing the model's output is dropped by default (the graph
  outputs logits, whose argmax is the same); anywhere else it is an error.

The input normalization defaults to raw pixels (``keras_import.RAW_PIXELS``).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from dqa_mcu import ir
from dqa_mcu.frontends.keras_import import RAW_PIXELS, tf_same_pads
from dqa_mcu.frontends.tflite_import import TFLiteGraph, TOp, UnsupportedTFLiteOpError, layer_name, moved_index
from dqa_mcu.npconv import out_size

__all__ = ["tflite_to_ir"]

log = logging.getLogger(__name__)

_ACT = {"NONE": (-math.inf, math.inf), "RELU": (0.0, math.inf), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}
_TABLES = {"LOGISTIC": "sigmoid", "TANH": "tanh", "HARD_SWISH": "hardswish"}
_MOVES = ("RESHAPE", "TILE", "TRANSPOSE", "DEPTH_TO_SPACE")
# ops that can absorb a preceding zero PAD into their own padding
_TAKES_PAD = ("CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D")


class _Converter:
    def __init__(self, g: TFLiteGraph, normalization, final_softmax: str):
        if g.quantized:
            raise ValueError("tflite_to_ir needs a float model; an int8 model runs in the TFLite-exact mode")
        if final_softmax not in ("drop", "error"):
            raise ValueError("final_softmax must be 'drop' or 'error'")
        self.g, self.norm, self.final_softmax = g, normalization or RAW_PIXELS, final_softmax
        self.file = Path(g.source).name or "<bytes>"
        self.nodes: list[ir.Node] = []
        self.shapes: dict[str, tuple[int, int, int]] = {}
        self.tmap: dict[int, str] = {}           # TFLite tensor -> IR tensor
        self.pads: dict[int, tuple[str, tuple[int, int, int, int]]] = {}  # PAD output -> (source, pads)
        # a moved tensor -> (its source IR tensor, the index into the source's H*W*C values of each element)
        self.moved: dict[int, tuple[str, np.ndarray]] = {}
        self.permuted: set[str] = set()  # convolutions whose output channels were reordered for a depth_to_space
        self.used: set[str] = set()

    def fail(self, op: TOp, why: str) -> UnsupportedTFLiteOpError:
        return UnsupportedTFLiteOpError(f"{self.file}: operator {op.op} at index {op.index}: {why}")

    def emit(self, op: TOp, kind: str, inputs, shape, attrs=None, params=None) -> str:
        return self.emit_named(layer_name(self.g.tensors[op.outputs[0]]) or op.op.lower(), kind, inputs, shape,
                               attrs, params)

    def emit_named(self, name: str, kind: str, inputs, shape, attrs=None, params=None) -> str:
        n = ir.unique_name(name, self.used)
        self.nodes.append(ir.Node(n, kind, list(inputs), n, attrs or {}, params or {}))
        self.shapes[n] = tuple(int(v) for v in shape)
        return n

    def act(self, op: TOp) -> dict:
        """The IR attrs of op's fused activation (act, and clamp_min / clamp_max for a clamp)."""
        a = op.options.get("activation", "NONE")
        if a not in _ACT:
            raise self.fail(op, f"fused activation {a} (supported: {', '.join(_ACT)})")
        return ir.clamp_act(*_ACT[a])

    def activated(self, op: TOp, out: str) -> str:
        """`out` through op's fused activation as a node of its own (for ops that cannot carry one)."""
        attrs = self.act(op)
        kind = attrs.pop("act")
        return out if kind == "none" else self.emit(op, kind, [out], self.shapes[out], attrs)

    def src(self, op: TOp, k: int = 0) -> tuple[str, tuple[int, int, int, int]]:
        """IR tensor of input k, with the zero padding of a PAD folded into this op."""
        t = op.inputs[k]
        if t in self.pads:
            if op.op not in _TAKES_PAD:
                raise self.fail(op, "it reads the output of a PAD; only CONV_2D, DEPTHWISE_CONV_2D and "
                                    "AVERAGE_POOL_2D can absorb one")
            return self.pads[t]
        if t in self.moved and t not in self.tmap:
            self.tmap[t] = self.resolve(op, t)
        if t not in self.tmap:
            raise self.fail(op, f"input tensor {t} {self.g.tensors[t].name!r} is not an activation")
        return self.tmap[t], (0, 0, 0, 0)

    def plain(self, op: TOp, k: int = 0) -> str:
        return self.src(op, k)[0]

    # ---- ops
    def conv(self, op: TOp) -> str:
        x, extra = self.src(op)
        h, w, cin = self.shapes[x]
        wt = self.g.tensors[op.inputs[1]].data.astype(np.float32)
        if op.op == "DEPTHWISE_CONV_2D":
            wt, groups = wt[0].transpose(2, 0, 1)[..., None], cin   # (1,KH,KW,C*m) -> OHWI
        else:
            groups = cin // wt.shape[3]
        cout, kh, kw = wt.shape[:3]
        b = op.inputs[2] if len(op.inputs) > 2 else -1
        bias = self.g.tensors[b].data.astype(np.float32) if b >= 0 else np.zeros(cout, np.float32)
        (sh, sw), (dh, dw) = op.options["stride"], op.options["dilation"]
        pad = self._pads(op, h, w, kh, kw, (sh, sw), (dh, dw), extra)
        oh, ow = out_size(h, kh, sh, pad[0], pad[1], dh), out_size(w, kw, sw, pad[2], pad[3], dw)
        return self.emit(op, "conv2d", [x], (oh, ow, cout),
                         dict(stride=(sh, sw), padding=pad, dilation=(dh, dw), groups=groups, **self.act(op)),
                         dict(weight=np.ascontiguousarray(wt), bias=bias))

    def _pads(self, op, h, w, kh, kw, stride, dilation, extra):
        if op.options["padding"] == "VALID":
            return extra
        pt, pb = tf_same_pads(h + extra[0] + extra[1], kh, stride[0], dilation[0])
        pl, pr = tf_same_pads(w + extra[2] + extra[3], kw, stride[1], dilation[1])
        return (pt + extra[0], pb + extra[1], pl + extra[2], pr + extra[3])

    def pool(self, op: TOp) -> str:
        x, extra = self.src(op)
        h, w, c = self.shapes[x]
        (kh, kw), stride = op.options["filter"], op.options["stride"]
        pad = self._pads(op, h, w, kh, kw, stride, (1, 1), extra)
        avg = op.op == "AVERAGE_POOL_2D"
        if avg and pad != extra:
            raise self.fail(op, "SAME padding that pads: TFLite excludes the padding from the divisor, the IR's "
                                "avgpool includes it")
        oh, ow = out_size(h, kh, stride[0], pad[0], pad[1]), out_size(w, kw, stride[1], pad[2], pad[3])
        if avg and (oh, ow) == (1, 1) and pad == (0, 0, 0, 0) and (kh, kw) == (h, w):
            out = self.emit(op, "global_avgpool", [x], (1, 1, c))
        else:
            out = self.emit(op, "avgpool" if avg else "maxpool", [x], (oh, ow, c),
                            dict(kernel=(kh, kw), stride=tuple(stride), padding=pad))
        return self.activated(op, out)

    def vector(self, op: TOp, x: str) -> str:
        """x as a (1, 1, N) vector: a flatten (HWC order, as TFLite's row-major reshape) if needed."""
        return self.vector_named(layer_name(self.g.tensors[op.outputs[0]]) or "flatten", x)

    def fully_connected(self, op: TOp) -> str:
        x = self.vector(op, self.plain(op))
        wt = self.g.tensors[op.inputs[1]].data.astype(np.float32)
        if wt.shape[1] != self.shapes[x][2]:
            raise self.fail(op, f"weights {wt.shape} for an input of {self.shapes[x][2]} values")
        b = op.inputs[2] if len(op.inputs) > 2 else -1
        bias = self.g.tensors[b].data.astype(np.float32) if b >= 0 else np.zeros(wt.shape[0], np.float32)
        return self.emit(op, "linear", [x], (1, 1, wt.shape[0]), self.act(op),
                         dict(weight=np.ascontiguousarray(wt), bias=bias))

    # ---- data movement, followed as index maps (see the module docstring)
    def moving(self, op: TOp) -> tuple[str, np.ndarray]:
        """Input 0 as (source IR tensor, index map of TFLite's shape, batch first)."""
        t = op.inputs[0]
        if t in self.moved:
            return self.moved[t]
        x = self.plain(op)
        return x, np.arange(int(np.prod(self.shapes[x]))).reshape((1,) + self.shapes[x])

    def move(self, op: TOp) -> str:
        x, index = self.moving(op)
        shape = list(index.shape)
        try:
            index = moved_index(self.g, op, index)
        except ValueError:  # numpy's word for operands that do not fit the input
            raise self.fail(op, f"its operands do not fit its input of shape {shape}") from None
        if index.shape != tuple(self.g.tensors[op.outputs[0]].shape):
            raise self.fail(op, f"output shape {list(self.g.tensors[op.outputs[0]].shape)} where the operands give "
                                f"{list(index.shape)}")
        self.moved[op.outputs[0]] = (x, index)
        return ""

    def resolve(self, op: TOp, t: int) -> str:
        """The IR op a moved tensor amounts to, emitted when `op` reads it."""
        x, index = self.moved[t]
        h, w, c = self.shapes[x]
        source = np.arange(h * w * c).reshape(h, w, c)
        name = layer_name(self.g.tensors[t]) or "moved"
        if index.ndim == 2 or (index.ndim == 4 and index.shape[1:3] == (1, 1)):
            if np.array_equal(index.reshape(-1), source.reshape(-1)):
                return self.vector_named(name, x)
        if index.ndim == 4 and index.shape[0] == 1:
            out = index[0]
            oh, ow, oc = out.shape
            if out.shape == source.shape and np.array_equal(out, source):
                return x
            if oc == c and oh % h == 0 and ow % w == 0:
                scale = (oh // h, ow // w)
                if np.array_equal(out, source.repeat(scale[0], 0).repeat(scale[1], 1)):
                    return self.emit_named(name, "upsample_nearest", [x], out.shape, dict(scale=scale))
            r = oh // h
            if oh == h * r and ow == w * r and r > 1 and oc * r * r == c:
                crd = source.reshape(h, w, oc, r, r).transpose(0, 3, 1, 4, 2).reshape(oh, ow, oc)
                if not np.array_equal(out, crd):
                    x = self.permute_producer(op, x, out, crd)
                return self.emit_named(name, "depth_to_space", [x], out.shape, dict(block=r))
        raise self.fail(op, f"its input is a rearrangement of {name!r} ({list(self.shapes[x])} -> "
                            f"{list(index.shape)}) that is not a flatten, nearest upsampling or depth_to_space")

    def permute_producer(self, op: TOp, x: str, wanted: np.ndarray, crd: np.ndarray) -> str:
        """Permute the output channels of x's producer so that PixelShuffle's order (`crd`) reads
        what `wanted` reads; the producer must be a convolution that nothing else reads. Returns x."""
        c = self.shapes[x][2]
        perm = np.full(c, -1)
        perm[crd % c] = wanted % c
        sources = [t for t, v in self.tmap.items() if v == x]
        node = next(n for n in self.nodes if n.output == x)
        if (node.op != "conv2d" or node.attrs["groups"] != 1 or x in self.permuted
                or any(x in n.inputs for n in self.nodes) or any(t in self.g.outputs for t in sources)
                or sum(t in o.inputs for o in self.g.ops for t in sources) != 1
                or not np.array_equal(wanted // c, crd // c) or not np.array_equal(perm[crd % c], wanted % c)
                or not np.array_equal(np.sort(perm), np.arange(c))):
            raise self.fail(op, f"a depth_to_space of {x!r} in depth-column-row order (TFLite's; the IR's is "
                                "PyTorch's column-row-depth): supported when its input comes straight from a "
                                "convolution that nothing else reads")
        node.params["weight"] = np.ascontiguousarray(node.params["weight"][perm])
        node.params["bias"] = np.ascontiguousarray(node.params["bias"][perm])
        self.permuted.add(x)
        return x

    def vector_named(self, name: str, x: str) -> str:
        """x as a (1, 1, N) vector (a flatten node named after `name` if x is not one)."""
        h, w, c = self.shapes[x]
        return x if (h, w) == (1, 1) else self.emit_named(name, "flatten", [x], (1, 1, h * w * c))

    def mean(self, op: TOp) -> str:
        x = self.plain(op)
        axes = {int(a) % 4 for a in self.g.tensors[op.inputs[1]].data.reshape(-1)}
        if axes != {1, 2}:
            raise self.fail(op, f"mean over axes {sorted(axes)}; only over height and width (1, 2)")
        return self.emit(op, "global_avgpool", [x], (1, 1, self.shapes[x][2]))

    def pad(self, op: TOp) -> str:
        x = self.plain(op)
        p = self.g.tensors[op.inputs[1]].data.astype(np.int64).reshape(-1, 2)
        if p.shape[0] != 4 or p[0].any() or p[3].any():
            raise self.fail(op, f"paddings {p.tolist()}; only the height and width axes")
        consumers = [o for o in self.g.ops if op.outputs[0] in o.inputs]
        if len(consumers) != 1 or consumers[0].op not in _TAKES_PAD:
            raise self.fail(op, "a PAD must feed exactly one CONV_2D, DEPTHWISE_CONV_2D or AVERAGE_POOL_2D")
        self.pads[op.outputs[0]] = (x, (int(p[1, 0]), int(p[1, 1]), int(p[2, 0]), int(p[2, 1])))
        return ""

    def add(self, op: TOp) -> str:
        a, b = self.plain(op, 0), self.plain(op, 1)
        if self.shapes[a] != self.shapes[b]:
            raise self.fail(op, f"inputs of different shapes {self.shapes[a]} and {self.shapes[b]} (broadcast)")
        return self.emit(op, "add", [a, b], self.shapes[a], self.act(op))

    def sub(self, op: TOp) -> str:
        a, b = self.plain(op, 0), self.plain(op, 1)
        if self.shapes[a] != self.shapes[b]:
            raise self.fail(op, f"inputs of different shapes {self.shapes[a]} and {self.shapes[b]} (broadcast)")
        return self.emit(op, "add", [a, b], self.shapes[a], dict(b_sign=-1, **self.act(op)))

    def mul(self, op: TOp) -> str:
        """Squeeze-excite's scaling: equal shapes, or a tensor and a (1, 1, C) vector."""
        if any(self.g.tensors[t].is_const for t in op.inputs):
            raise self.fail(op, "a multiply by a constant; fold the constant into the preceding convolution")
        a, b = self.plain(op, 0), self.plain(op, 1)
        if self.shapes[a][:2] == (1, 1) and self.shapes[b][:2] != (1, 1):
            a, b = b, a  # the vector second
        if self.shapes[b] not in (self.shapes[a], (1, 1, self.shapes[a][2])):
            raise self.fail(op, f"a multiply of shapes {self.shapes[a]} and {self.shapes[b]}; only equal shapes or "
                                "a per-channel (1, 1, C) vector")
        return self.activated(op, self.emit(op, "mul", [a, b], self.shapes[a]))

    def unary(self, op: TOp) -> str:
        """An element-wise activation; on a moved tensor it is applied at the source (it commutes)."""
        if op.op == "LEAKY_RELU":
            slope = op.options["alpha"]
            if not 0 <= slope < 1:
                raise self.fail(op, f"LEAKY_RELU with alpha {slope}; only 0 <= alpha < 1")
            kind, attrs = "leaky_relu", dict(negative_slope=slope)
        elif op.op in _TABLES:
            kind, attrs = "activation", dict(function=_TABLES[op.op])
        elif op.op == "RELU_N1_TO_1":
            kind, attrs = "clamp", dict(clamp_min=-1.0, clamp_max=1.0)
        else:
            kind, attrs = op.op.lower(), {}
        if op.inputs[0] in self.moved and op.inputs[0] not in self.tmap:
            x, index = self.moved[op.inputs[0]]
            self.moved[op.outputs[0]] = (self.emit(op, kind, [x], self.shapes[x], attrs), index)
            return ""
        x = self.plain(op)
        return self.emit(op, kind, [x], self.shapes[x], attrs)

    def transpose_conv(self, op: TOp) -> str:
        """Kernel == stride: a 1x1 conv to C_out * r * r channels, then depth_to_space (as the other
        importers lower it). TFLite's weights are (C_out, KH, KW, C_in), out[y*s + i, x*s + j]."""
        x = self.plain(op, 2)
        h, w, cin = self.shapes[x]
        wt = self.g.tensors[op.inputs[1]].data.astype(np.float32)
        cout, kh, kw, _ = wt.shape
        out_shape = tuple(int(v) for v in self.g.tensors[op.outputs[0]].shape)
        r = op.options["stride"][0]
        if (kh, kw) != tuple(op.options["stride"]) or kh != kw or out_shape[1:] != (h * r, w * r, cout):
            raise self.fail(op, f"transposed convolution with kernel {(kh, kw)}, strides {op.options['stride']} and "
                                f"output {list(out_shape)}; only kernel == strides (square) without cropping "
                                "(else use RESIZE_NEAREST_NEIGHBOR + CONV_2D)")
        b = op.inputs[3] if len(op.inputs) > 3 else -1
        bias = self.g.tensors[b].data.astype(np.float32) if b >= 0 else np.zeros(cout, np.float32)
        attrs, params = ir.block_conv_attrs_params(wt, bias)
        attrs.update(self.act(op))  # commutes with depth_to_space's copy
        name = layer_name(self.g.tensors[op.outputs[0]]) or "transpose_conv"
        blocks = self.emit_named(name + "_blocks", "conv2d", [x], (h, w, cout * r * r), attrs, params)
        return self.emit(op, "depth_to_space", [blocks], (h * r, w * r, cout), dict(block=r))

    def resize(self, op: TOp) -> str:
        x = self.plain(op)
        h, w, c = self.shapes[x]
        oh, ow = (int(v) for v in self.g.tensors[op.inputs[1]].data.reshape(-1))
        if oh % h or ow % w:
            raise self.fail(op, f"a resize from {h}x{w} to {oh}x{ow}; only integer factors")
        bilinear = op.op == "RESIZE_BILINEAR"
        if op.options["align_corners"] or (bilinear and not op.options["half_pixel_centers"]):
            raise self.fail(op, "align_corners, or bilinear without half_pixel_centers (TF1's legacy sampling); "
                                "only half-pixel centers, PyTorch's align_corners=False (TF2's default)")
        if (oh, ow) == (h, w):
            return x
        return self.emit(op, "upsample_bilinear" if bilinear else "upsample_nearest", [x], (oh, ow, c),
                         dict(scale=(oh // h, ow // w)))

    def concat(self, op: TOp) -> str:
        xs = [self.plain(op, k) for k in range(len(op.inputs))]
        if op.options["axis"] % 4 != 3 or self.act(op)["act"] != "none":
            raise self.fail(op, "only along channels and without a fused activation")
        if len({self.shapes[x][:2] for x in xs}) != 1:
            raise self.fail(op, f"inputs of different spatial sizes {[self.shapes[x] for x in xs]}")
        h, w, _ = self.shapes[xs[0]]
        return self.emit(op, "concat", xs, (h, w, sum(self.shapes[x][2] for x in xs)))

    def softmax(self, op: TOp) -> str:
        if op.outputs[0] not in self.g.outputs:
            raise self.fail(op, "a softmax that is not the model's output; the IR has no softmax")
        if self.final_softmax == "error":
            raise self.fail(op, "softmax at the output; the IR has no softmax (final_softmax='drop' outputs "
                                "the logits instead)")
        log.info("%s: dropped the final SOFTMAX (op %d): the graph outputs logits (same argmax)",
                 self.file, op.index)
        return self.plain(op)

    # ---- graph walk
    def run(self) -> ir.Graph:
        x = self.g.input
        if len(x.shape) not in (2, 4):
            raise UnsupportedTFLiteOpError(f"{self.file}: the input {x.name!r} has shape {list(x.shape)}; "
                                           "NHWC images or [1, N] feature vectors expected")
        h, w, c = x.shape[1:] if len(x.shape) == 4 else (1, 1, x.shape[1])
        self.used.add("input")
        self.nodes.append(ir.Node("input", "input", [], "input", {"pixel_scale": float(self.norm.pixel_scale)},
                                  {"mean": np.broadcast_to(np.asarray(self.norm.mean, np.float32), (c,)).copy(),
                                   "std": np.broadcast_to(np.asarray(self.norm.std, np.float32), (c,)).copy()}))
        self.shapes["input"] = (h, w, c)
        self.tmap[self.g.inputs[0]] = "input"
        handlers = {"CONV_2D": self.conv, "DEPTHWISE_CONV_2D": self.conv, "FULLY_CONNECTED": self.fully_connected,
                    "ADD": self.add, "AVERAGE_POOL_2D": self.pool, "MAX_POOL_2D": self.pool, "MEAN": self.mean,
                    "SOFTMAX": self.softmax, "PAD": self.pad, "CONCATENATION": self.concat, "SUB": self.sub,
                    "MUL": self.mul, "TRANSPOSE_CONV": self.transpose_conv, "RESIZE_BILINEAR": self.resize,
                    "RESIZE_NEAREST_NEIGHBOR": self.resize, **{m: self.move for m in _MOVES},
                    **{u: self.unary for u in ("RELU", "RELU6", "RELU_N1_TO_1", "LEAKY_RELU", *_TABLES)}}
        for op in self.g.ops:
            out = handlers[op.op](op)
            if out:
                self.tmap[op.outputs[0]] = out
        out = self.g.outputs[0]
        if out in self.moved and out not in self.tmap:
            self.tmap[out] = self.resolve(self.g.ops[-1], out)
        graph = ir.Graph(nodes=self.nodes, shapes=self.shapes, input="input", output=self.tmap[out])
        graph.validate()
        return graph


def tflite_to_ir(graph: TFLiteGraph, normalization=None, final_softmax: str = "drop") -> ir.Graph:
    """Convert a float ``TFLiteGraph`` into the float graph IR (see the module docstring)."""
    return _Converter(graph, normalization, final_softmax).run()
