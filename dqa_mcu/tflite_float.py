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
  activations NONE / RELU / RELU6.
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
from pathlib import Path

import numpy as np

from . import ir
from .keras_import import RAW_PIXELS, tf_same_pads
from .npconv import out_size
from .tflite_import import TFLiteGraph, TOp, UnsupportedTFLiteOpError, layer_name

__all__ = ["tflite_to_ir"]

log = logging.getLogger(__name__)

_ACT = {"NONE": "none", "RELU": "relu", "RELU6": "relu6"}
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
        self.used: set[str] = set()

    def fail(self, op: TOp, why: str) -> UnsupportedTFLiteOpError:
        return UnsupportedTFLiteOpError(f"{self.file}: operator {op.op} at index {op.index}: {why}")

    def emit(self, op: TOp, kind: str, inputs, shape, attrs=None, params=None) -> str:
        n = ir.unique_name(layer_name(self.g.tensors[op.outputs[0]]) or op.op.lower(), self.used)
        self.nodes.append(ir.Node(n, kind, list(inputs), n, attrs or {}, params or {}))
        self.shapes[n] = tuple(int(v) for v in shape)
        return n

    def act(self, op: TOp) -> str:
        a = op.options.get("activation", "NONE")
        if a not in _ACT:
            raise self.fail(op, f"fused activation {a} (supported: {', '.join(_ACT)})")
        return _ACT[a]

    def src(self, op: TOp, k: int = 0) -> tuple[str, tuple[int, int, int, int]]:
        """IR tensor of input k, with the zero padding of a PAD folded into this op."""
        t = op.inputs[k]
        if t in self.pads:
            if op.op not in _TAKES_PAD:
                raise self.fail(op, "it reads the output of a PAD; only CONV_2D, DEPTHWISE_CONV_2D and "
                                    "AVERAGE_POOL_2D can absorb one")
            return self.pads[t]
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
                         dict(stride=(sh, sw), padding=pad, dilation=(dh, dw), groups=groups, act=self.act(op)),
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
        act = self.act(op)
        return out if act == "none" else self.emit(op, act, [out], (oh, ow, c))

    def vector(self, op: TOp, x: str) -> str:
        """x as a (1, 1, N) vector: a flatten (HWC order, as TFLite's row-major reshape) if needed."""
        h, w, c = self.shapes[x]
        return x if (h, w) == (1, 1) else self.emit(op, "flatten", [x], (1, 1, h * w * c))

    def fully_connected(self, op: TOp) -> str:
        x = self.vector(op, self.plain(op))
        wt = self.g.tensors[op.inputs[1]].data.astype(np.float32)
        if wt.shape[1] != self.shapes[x][2]:
            raise self.fail(op, f"weights {wt.shape} for an input of {self.shapes[x][2]} values")
        b = op.inputs[2] if len(op.inputs) > 2 else -1
        bias = self.g.tensors[b].data.astype(np.float32) if b >= 0 else np.zeros(wt.shape[0], np.float32)
        return self.emit(op, "linear", [x], (1, 1, wt.shape[0]), dict(act=self.act(op)),
                         dict(weight=np.ascontiguousarray(wt), bias=bias))

    def reshape(self, op: TOp) -> str:
        x = self.plain(op)
        shape = self.g.tensors[op.outputs[0]].shape
        if tuple(shape[1:]) == self.shapes[x]:
            return x
        if len(shape) >= 2 and int(np.prod(shape[1:-1], dtype=np.int64)) == 1:
            return self.vector(op, x)
        raise self.fail(op, f"reshape of {self.shapes[x]} to {list(shape)}; only flattening to a vector")

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
        return self.emit(op, "add", [a, b], self.shapes[a], dict(act=self.act(op)))

    def concat(self, op: TOp) -> str:
        xs = [self.plain(op, k) for k in range(len(op.inputs))]
        if op.options["axis"] % 4 != 3 or self.act(op) != "none":
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
        if len(x.shape) != 4:
            raise UnsupportedTFLiteOpError(f"{self.file}: the input {x.name!r} has shape {list(x.shape)}; "
                                           "NHWC images expected")
        h, w, c = x.shape[1:]
        self.used.add("input")
        self.nodes.append(ir.Node("input", "input", [], "input", {"pixel_scale": float(self.norm.pixel_scale)},
                                  {"mean": np.broadcast_to(np.asarray(self.norm.mean, np.float32), (c,)).copy(),
                                   "std": np.broadcast_to(np.asarray(self.norm.std, np.float32), (c,)).copy()}))
        self.shapes["input"] = (h, w, c)
        self.tmap[self.g.inputs[0]] = "input"
        handlers = {"CONV_2D": self.conv, "DEPTHWISE_CONV_2D": self.conv, "FULLY_CONNECTED": self.fully_connected,
                    "ADD": self.add, "AVERAGE_POOL_2D": self.pool, "MAX_POOL_2D": self.pool, "MEAN": self.mean,
                    "RESHAPE": self.reshape, "SOFTMAX": self.softmax, "PAD": self.pad, "CONCATENATION": self.concat}
        for op in self.g.ops:
            out = handlers[op.op](op)
            if out:
                self.tmap[op.outputs[0]] = out
        graph = ir.Graph(nodes=self.nodes, shapes=self.shapes, input="input", output=self.tmap[self.g.outputs[0]])
        graph.validate()
        return graph


def tflite_to_ir(graph: TFLiteGraph, normalization=None, final_softmax: str = "drop") -> ir.Graph:
    """Convert a float ``TFLiteGraph`` into the float graph IR (see the module docstring)."""
    return _Converter(graph, normalization, final_softmax).run()
