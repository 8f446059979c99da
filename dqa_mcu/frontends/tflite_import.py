"""TFLite front end: a ``.tflite`` flatbuffer (full-int8 or float32) -> a small graph.

``load_tflite(path)`` parses the flatbuffer with the schema reader that ships
inside ``ai-edge-litert`` (``ai_edge_litert.schema_py_generated``; TensorFlow's
copy is the fallback), so no interpreter is needed. It returns a
``TFLiteGraph``: every tensor with its shape, type, scale(s), zero point(s)
and, for constants, its int8 / int32 data; every operator with normalized
options. ``reference.tflite.TFLiteReference`` executes that graph exactly like
TFLite's reference int8 kernels (``docs/spec_tflite.md``).

A model whose input is float32 is a float model (``TFLiteGraph.quantized``
False): every activation, weight and bias must then be float32 (no
DEQUANTIZE / float16 weights), and ``tflite_float.tflite_to_ir`` turns it
into the float graph IR for DQA; it may also use the ``FLOAT_OPS`` beyond
the int8 list (TILE, TRANSPOSE; ``tflite_float`` says how each maps).
Otherwise the int8 rules below apply.

Supported operators (int8 activations, int8 weights, int32 biases):
CONV_2D, DEPTHWISE_CONV_2D, TRANSPOSE_CONV, FULLY_CONNECTED, ADD, SUB, MUL,
AVERAGE_POOL_2D, MAX_POOL_2D, MEAN, RESHAPE, SOFTMAX, PAD, CONCATENATION,
RESIZE_NEAREST_NEIGHBOR, RESIZE_BILINEAR, DEPTH_TO_SPACE, TILE, QUANTIZE
(int8 -> int8), RELU, RELU6, LEAKY_RELU, LOGISTIC, TANH, HARD_SWISH, with fused
activations NONE / RELU / RELU6 / RELU_N1_TO_1. Any other operator raises ``UnsupportedTFLiteOpError``
naming it and its index.

File-level problems raise ``TFLiteFormatError`` (a ``ValueError``) with one
line naming the file: not a TFLite model, a truncated or corrupt flatbuffer,
a dynamic shape (only the batch dimension may be dynamic), several subgraphs.

An int8 graph comes back with each PAD that feeds only a convolution folded into the convolution's
padding (``fold_pads``): its ``padding`` option is then ``(top, bottom, left, right)`` instead of
``'SAME'`` / ``'VALID'``, and ``TOp.index`` stays the op's index in the file.

Shapes keep TFLite's layout: activations NHWC with batch 1 in the file;
conv weights OHWI, depthwise weights ``(1, KH, KW, C_out)``, fully connected
weights ``(C_out, C_in)``.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Collection

import numpy as np

from dqa_mcu import ir

__all__ = ["TFLiteGraph", "TTensor", "TOp", "TFLiteFormatError", "UnsupportedTFLiteOpError",
           "load_tflite", "parse_tflite", "fold_pads", "layer_name", "refuse_activation_shapes", "moved_index",
           "SUPPORTED_OPS", "FLOAT_OPS"]

SUPPORTED_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "ADD", "AVERAGE_POOL_2D",
                 "MAX_POOL_2D", "MEAN", "RESHAPE", "SOFTMAX", "PAD", "CONCATENATION", "SUB", "MUL",
                 "LEAKY_RELU", "RESIZE_NEAREST_NEIGHBOR", "DEPTH_TO_SPACE", "TRANSPOSE_CONV", "RESIZE_BILINEAR",
                 "LOGISTIC", "HARD_SWISH", "TANH", "RELU", "RELU6", "TILE", "QUANTIZE")
# a float model goes to the float IR (tflite_float), which has more ops than the int8 reference; an
# int8 -> int8 QUANTIZE (a requantization) has no place in it
FLOAT_OPS = tuple(dict.fromkeys(tuple(op for op in SUPPORTED_OPS if op != "QUANTIZE") + (
    "SUB", "MUL", "TRANSPOSE_CONV", "RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR", "DEPTH_TO_SPACE", "TILE",
    "TRANSPOSE", "RELU", "RELU6", "RELU_N1_TO_1", "LEAKY_RELU", "LOGISTIC", "TANH", "HARD_SWISH")))

_SHAPE_OPS = ("SHAPE", "STRIDED_SLICE", "PACK", "GATHER")
_ACTIVATIONS = {0: "NONE", 1: "RELU", 2: "RELU_N1_TO_1", 3: "RELU6"}
_PADDING = {0: "SAME", 1: "VALID"}
_DTYPES = {0: np.float32, 1: np.float16, 2: np.int32, 3: np.uint8, 4: np.int64, 6: np.bool_,
           7: np.int16, 9: np.int8, 10: np.float64}
_DTYPE_NAMES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string", 6: "bool",
                7: "int16", 8: "complex64", 9: "int8", 10: "float64"}


class TFLiteFormatError(ValueError):
    """The file is not a usable TFLite model (not a model, truncated, dynamic shape...)."""


class UnsupportedTFLiteOpError(ir.GraphError):
    """An operator (or an operator variant) the int8 reference does not implement."""


@dataclass
class TTensor:
    index: int
    name: str
    shape: tuple[int, ...]          # as stored (batch 1 for activations)
    dtype: str                      # 'int8', 'int32', ...
    scale: np.ndarray | None        # float32, one per tensor or per channel
    zero_point: np.ndarray | None   # int64
    quantized_dimension: int = 0
    data: np.ndarray | None = None  # constants only, with `shape` and numpy dtype

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def per_channel(self) -> bool:
        return self.scale is not None and self.scale.size > 1


@dataclass
class TOp:
    index: int
    op: str                 # e.g. 'CONV_2D'
    inputs: list[int]       # tensor indices, -1 for an absent optional input
    outputs: list[int]
    options: dict = field(default_factory=dict)


@dataclass
class TFLiteGraph:
    tensors: list[TTensor]
    ops: list[TOp]
    inputs: list[int]
    outputs: list[int]
    source: str = ""
    version: int = 3
    description: str = ""
    quantized: bool = True  # False: a float32 model (input, activations and constants)

    def tensor(self, i: int) -> TTensor:
        return self.tensors[i]

    @property
    def input(self) -> TTensor:
        return self.tensors[self.inputs[0]]

    @property
    def output(self) -> TTensor:
        return self.tensors[self.outputs[0]]


def layer_name(t: TTensor) -> str:
    """A short name for the op producing t, from the layer part of its tensor name
    (``model/activation_1/Relu;model/conv2d_1/BiasAdd`` -> ``activation_1``)."""
    path = t.name.split(";")[0].split("/")
    return path[-2] if len(path) > 1 else path[0]


def moved_index(g: TFLiteGraph, op: TOp, index: np.ndarray) -> np.ndarray:
    """Where each element of a data-movement op's output (RESHAPE, TILE, TRANSPOSE, DEPTH_TO_SPACE)
    comes from, given where its input's come from (`index`: source element numbers in the input's
    shape). Both TFLite front ends follow chains of moves this way. Raises numpy's ValueError when
    the operands do not fit the input."""
    if op.op == "RESHAPE":
        return index.reshape(g.tensors[op.outputs[0]].shape)
    if op.op == "TILE":
        return np.tile(index, g.tensors[op.inputs[1]].data.astype(np.int64).reshape(-1))
    if op.op == "TRANSPOSE":
        return index.transpose(g.tensors[op.inputs[1]].data.astype(np.int64).reshape(-1))
    if op.op != "DEPTH_TO_SPACE":
        raise ValueError(f"{op.op} is not a data movement")
    # TFLite's DCR order: out[h*r + i, w*r + j, c] = in[h, w, (i*r + j)*C + c]
    r = op.options["block"]
    n, h, w, c = index.shape
    if r < 1 or c % (r * r):
        raise ValueError("channels not a multiple of block^2")
    return index.reshape(n, h, w, r, r, c // (r * r)).transpose(0, 1, 3, 2, 4, 5).reshape(n, h * r, w * r, c // (r * r))


def refuse_activation_shapes(g: TFLiteGraph, accepted: Callable[[tuple[int, ...]], bool], limit: str,
                             exempt: Collection[int] = ()) -> None:
    """Raise ``UnsupportedTFLiteOpError`` for the first activation tensor whose shape is not ``accepted``,
    in one line naming the op that reads or writes it and ``limit`` (what a backend takes); the tensors
    in ``exempt`` (a backend never stores them) are not checked."""
    for op in g.ops:
        for i in op.inputs + op.outputs:
            t = g.tensors[i] if i >= 0 else None
            if t is not None and not t.is_const and i not in exempt and not accepted(t.shape):
                role = "reads" if i in op.inputs else "writes"
                raise UnsupportedTFLiteOpError(
                    f"{Path(g.source).name}: operator {op.op} at index {op.index} {role} tensor {i} {t.name!r} "
                    f"of shape {list(t.shape)}; {limit}")


# --------------------------------------------------------------------------- schema

def _schema():
    try:
        from ai_edge_litert import schema_py_generated as s  # maintained LiteRT package
    except ImportError:
        try:
            from tensorflow.lite.python import schema_py_generated as s  # type: ignore[no-redef]
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError("reading .tflite files needs the 'ai-edge-litert' package "
                              "(pip install ai-edge-litert, or the project's [tflite] extra)") from e
    return s


def _op_names(s) -> dict[int, str]:
    return {v: k for k, v in vars(s.BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)}


def _builtin_code(oc) -> int:
    # schema v3a: builtin_code (int32) supersedes deprecated_builtin_code (int8, max 127)
    return max(int(oc.builtinCode), int(oc.deprecatedBuiltinCode))


def _arr(v, dtype=np.int64) -> np.ndarray:
    if v is None:
        return np.zeros(0, dtype)
    return np.asarray(v).astype(dtype)


# --------------------------------------------------------------------------- parsing

def load_tflite(path) -> TFLiteGraph:
    """Read and parse a ``.tflite`` file; see the module docstring for errors."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    return parse_tflite(path.read_bytes(), source=str(path))


def parse_tflite(buf: bytes, source: str = "<bytes>") -> TFLiteGraph:
    """Parse the bytes of a TFLite flatbuffer (``source`` names it in errors)."""
    buf = bytes(buf)
    name = Path(source).name if source else "<bytes>"

    def fail(msg: str) -> TFLiteFormatError:
        return TFLiteFormatError(f"{name}: {msg}")

    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise fail("not a TFLite model (no 'TFL3' flatbuffer identifier at byte 4)")
    root = struct.unpack_from("<I", buf, 0)[0]
    if root + 4 > len(buf):
        raise fail(f"truncated or corrupt flatbuffer (root table at {root} beyond the {len(buf)}-byte file)")
    s = _schema()
    try:
        model = s.ModelT.InitFromPackedBuf(buf, 0)
    except Exception as e:  # noqa: BLE001 - the generated reader raises anything on bad offsets
        raise fail(f"truncated or corrupt flatbuffer ({type(e).__name__}: {e})") from None
    try:
        return _convert(model, buf, s, fail, source)
    except (TFLiteFormatError, ir.GraphError):
        raise
    except Exception as e:  # noqa: BLE001 - garbage read from a damaged file
        raise fail(f"truncated or corrupt flatbuffer ({type(e).__name__}: {e})") from None


def _buffer_bytes(model, buf: bytes, bi: int, fail) -> bytes | None:
    if bi <= 0 or model.buffers is None or bi >= len(model.buffers):
        return None
    b = model.buffers[bi]
    if b is None:
        return None
    off, size = int(getattr(b, "offset", 0) or 0), int(getattr(b, "size", 0) or 0)
    if off > 1 and size > 0:  # large models keep buffer data outside the flatbuffer
        if off + size > len(buf):
            raise fail(f"truncated file: buffer {bi} needs bytes [{off}, {off + size})")
        return buf[off:off + size]
    if b.data is None or len(b.data) == 0:
        return None
    return np.asarray(b.data, np.uint8).tobytes()


def _convert(model, buf: bytes, s, fail, source: str) -> TFLiteGraph:
    if model.subgraphs is None or len(model.subgraphs) == 0:
        raise fail("the model has no subgraph")
    if len(model.subgraphs) != 1:
        raise fail(f"the model has {len(model.subgraphs)} subgraphs; only single-subgraph models are supported")
    sg = model.subgraphs[0]
    if sg.tensors is None or sg.inputs is None or sg.outputs is None:
        raise fail("truncated or corrupt flatbuffer (subgraph without tensors, inputs or outputs)")
    names = _op_names(s)
    codes = [_builtin_code(oc) for oc in (model.operatorCodes or [])]
    custom = [(oc.customCode.decode() if isinstance(oc.customCode, bytes) else oc.customCode)
              for oc in (model.operatorCodes or [])]
    graph_inputs = [int(i) for i in sg.inputs]

    tensors: list[TTensor] = []
    for ti, t in enumerate(sg.tensors):
        tname = t.name.decode(errors="replace") if isinstance(t.name, bytes) else str(t.name)
        shape = tuple(int(d) for d in (t.shape if t.shape is not None else ()))
        sig = t.shapeSignature
        if any(d < 0 for d in shape):
            raise fail(f"tensor {ti} {tname!r} has a dynamic shape {list(shape)}")
        if sig is not None and len(sig) and any(int(d) < 0 for d in list(sig)[1:]):
            raise fail(f"tensor {ti} {tname!r} has a dynamic shape {[int(d) for d in sig]} "
                       "(only the batch dimension may be dynamic)")
        dtype = _DTYPE_NAMES.get(int(t.type), f"type{int(t.type)}")
        q = t.quantization
        scale = zp = None
        qdim = 0
        if q is not None and q.scale is not None and len(q.scale):
            scale = _arr(q.scale, np.float32)
            zp = _arr(q.zeroPoint, np.int64) if q.zeroPoint is not None and len(q.zeroPoint) else np.zeros(
                scale.shape, np.int64)
            qdim = int(q.quantizedDimension)
        raw = _buffer_bytes(model, buf, int(t.buffer), fail)
        data = None
        if raw is not None:
            npdt = _DTYPES.get(int(t.type))
            if npdt is None:
                raise fail(f"tensor {ti} {tname!r}: constant of unsupported type {dtype}")
            count = int(np.prod(shape)) if shape else 1
            need = count * np.dtype(npdt).itemsize
            if len(raw) != need:
                raise fail(f"truncated or corrupt flatbuffer (constant tensor {ti} {tname!r} has "
                           f"{len(raw)} bytes, its shape {list(shape)} needs {need})")
            data = np.frombuffer(raw, dtype=np.dtype(npdt).newbyteorder("<")).astype(npdt).reshape(shape)
        tensors.append(TTensor(ti, tname, shape, dtype, scale, zp, qdim, data))

    for i in list(graph_inputs) + [int(o) for o in sg.outputs]:
        if not 0 <= i < len(tensors):
            raise fail(f"truncated or corrupt flatbuffer (graph input/output tensor {i} does not exist)")
    quantized = not (len(graph_inputs) == 1 and tensors[graph_inputs[0]].dtype == "float32")

    ops: list[TOp] = []
    for oi, o in enumerate(sg.operators or []):
        if not 0 <= o.opcodeIndex < len(codes):
            raise fail(f"truncated or corrupt flatbuffer (operator {oi} has opcode index {o.opcodeIndex})")
        code = codes[o.opcodeIndex]
        opname = names.get(code, f"BUILTIN_{code}")
        if opname == "CUSTOM":
            opname = f"CUSTOM({custom[o.opcodeIndex]})"
        ins = [int(i) for i in (o.inputs if o.inputs is not None else [])]
        outs = [int(i) for i in (o.outputs if o.outputs is not None else [])]
        for i, lowest in [(i, -1) for i in ins] + [(i, 0) for i in outs]:  # -1: an absent optional input
            if not lowest <= i < len(tensors):
                raise fail(f"truncated or corrupt flatbuffer (operator {oi} refers to tensor {i})")
        supported = SUPPORTED_OPS if quantized else FLOAT_OPS
        if opname not in supported:
            # Keras 3 converts Flatten with a dynamic batch into SHAPE / STRIDED_SLICE / PACK
            hint = ("; it computes a shape at run time: convert the model with a fixed batch size of 1, e.g. "
                    "keras.Model(i := keras.Input(batch_shape=(1, H, W, C)), model(i))"
                    if opname in _SHAPE_OPS else "")
            raise UnsupportedTFLiteOpError(
                f"{Path(source).name}: unsupported operator {opname} at index {oi} "
                f"(supported{'' if quantized else ' in a float model'}: {', '.join(supported)}){hint}")
        op = TOp(oi, opname, ins, outs, _options(opname, o.builtinOptions, oi, source))
        (_check_op if quantized else _check_float_op)(op, tensors, source)
        ops.append(op)

    g = TFLiteGraph(tensors=tensors, ops=ops, inputs=graph_inputs, outputs=[int(i) for i in sg.outputs],
                    source=source, version=int(model.version),
                    description=(model.description.decode(errors="replace")
                                 if isinstance(model.description, bytes) else str(model.description or "")),
                    quantized=quantized)
    _check_graph(g, source)
    if quantized:
        fold_pads(g)
    return g


# convolutions whose int8 kernels skip the taps outside their input: the same as reading the input zero point
_TAKES_PAD = ("CONV_2D", "DEPTHWISE_CONV_2D")


def tf_same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int, int]:
    """(output size, pad before, pad after) of TF 'SAME' padding (the extra pixel goes after)."""
    eff = (kernel - 1) * dilation + 1
    out = (size + stride - 1) // stride
    total = max((out - 1) * stride + eff - size, 0)
    return out, total // 2, total - total // 2


def geometry(padding, h: int, w: int, kh: int, kw: int, stride, dilation=(1, 1)):
    """(OH, OW, (top, bottom, left, right)) for TFLite SAME / VALID padding, or for an explicit
    (top, bottom, left, right): a convolution that took a PAD's padding (fold_pads)."""
    if padding == "SAME":
        oh, pt, pb = tf_same_padding(h, kh, stride[0], dilation[0])
        ow, pl, pr = tf_same_padding(w, kw, stride[1], dilation[1])
        return oh, ow, (pt, pb, pl, pr)
    pad = (0, 0, 0, 0) if padding == "VALID" else tuple(padding)
    eh, ew = (kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1
    return (h + pad[0] + pad[1] - eh) // stride[0] + 1, (w + pad[2] + pad[3] - ew) // stride[1] + 1, pad


def fold_pads(g: TFLiteGraph) -> None:
    """Fold (in place) each PAD whose one reader is a CONV_2D or DEPTHWISE_CONV_2D into that conv's padding,
    which becomes explicit (top, bottom, left, right) (docs/spec_tflite.md 3.9). Exact in int8: the PAD fills
    with z_y = z_x (the import checks both quantizations equal), and a skipped tap adds (z_x - z_x) * w = 0.
    Why: a PAD has no row kernel, so it splits a row-streamed segment and keeps both its tensors whole.
    A PAD of the batch or channel axes, one the graph outputs or anything else reads, stays."""
    for pad in [op for op in reversed(g.ops) if op.op == "PAD"]:  # from the last: a chain of PADs folds whole
        y = pad.outputs[0]
        readers = [op for op in g.ops if y in op.inputs]
        paddings = g.tensors[pad.inputs[1]].data.astype(np.int64)  # (4, 2) here: _check_op and a conv's NHWC input
        # a conv reads its one activation operand as its input (the weights and bias are constants)
        if (y in g.outputs or len(readers) != 1 or readers[0].op not in _TAKES_PAD
                or paddings[0].any() or paddings[3].any()):
            continue
        conv, x = readers[0], pad.inputs[0]
        (_, h, w, _), (_, kh, kw, _) = g.tensors[y].shape, g.tensors[conv.inputs[1]].shape
        _, _, own = geometry(conv.options["padding"], h, w, kh, kw, conv.options["stride"], conv.options["dilation"])
        conv.options["padding"] = tuple(int(a + b) for a, b in zip(paddings[1:3].reshape(-1), own))
        conv.inputs[0] = x
        g.ops.remove(pad)


def _options(opname: str, opt, oi: int, source: str) -> dict:
    def need(o):
        if o is None:
            raise UnsupportedTFLiteOpError(f"{Path(source).name}: operator {opname} at index {oi} has no options")
        return o

    def act(o) -> str:
        a = int(o.fusedActivationFunction)
        if a not in _ACTIVATIONS:
            raise UnsupportedTFLiteOpError(
                f"{Path(source).name}: operator {opname} at index {oi}: unsupported fused activation {a}")
        return _ACTIVATIONS[a]

    def positive(options: dict) -> dict:  # strides, dilations and windows divide and count: 0 is damage
        for key in ("stride", "dilation", "filter"):
            if key in options and min(options[key]) < 1:
                raise UnsupportedTFLiteOpError(f"{Path(source).name}: operator {opname} at index {oi}: "
                                               f"{key} {options[key]}, must be 1 or more")
        return options

    if opname == "CONV_2D":
        o = need(opt)
        return positive(dict(stride=(int(o.strideH), int(o.strideW)), padding=_PADDING[int(o.padding)],
                             dilation=(int(o.dilationHFactor), int(o.dilationWFactor)), activation=act(o)))
    if opname == "DEPTHWISE_CONV_2D":
        o = need(opt)
        return positive(dict(stride=(int(o.strideH), int(o.strideW)), padding=_PADDING[int(o.padding)],
                             dilation=(int(o.dilationHFactor), int(o.dilationWFactor)), activation=act(o),
                             depth_multiplier=int(o.depthMultiplier)))
    if opname == "FULLY_CONNECTED":
        o = need(opt)
        if int(o.weightsFormat) != 0:
            raise UnsupportedTFLiteOpError(
                f"{Path(source).name}: FULLY_CONNECTED at index {oi}: shuffled weights are not supported")
        return dict(activation=act(o), keep_num_dims=bool(o.keepNumDims))
    if opname in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        o = need(opt)
        return positive(dict(stride=(int(o.strideH), int(o.strideW)), padding=_PADDING[int(o.padding)],
                             filter=(int(o.filterHeight), int(o.filterWidth)), activation=act(o)))
    if opname in ("ADD", "SUB", "MUL"):
        return dict(activation=act(opt) if opt is not None else "NONE")
    if opname == "TRANSPOSE_CONV":
        o = need(opt)
        return positive(dict(stride=(int(o.strideH), int(o.strideW)), padding=_PADDING[int(o.padding)],
                             activation=act(o) if hasattr(o, "fusedActivationFunction") else "NONE"))
    if opname in ("RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR"):
        return dict(align_corners=bool(opt.alignCorners) if opt is not None else False,
                    half_pixel_centers=bool(opt.halfPixelCenters) if opt is not None else False)
    if opname == "DEPTH_TO_SPACE":
        return dict(block=int(need(opt).blockSize))
    if opname == "LEAKY_RELU":
        return dict(alpha=float(np.float32(opt.alpha)) if opt is not None else 0.2)
    if opname == "CONCATENATION":
        o = need(opt)
        return dict(axis=int(o.axis), activation=act(o))
    if opname == "SOFTMAX":
        return dict(beta=float(np.float32(opt.beta)) if opt is not None else 1.0)
    if opname == "MEAN":
        return dict(keep_dims=bool(opt.keepDims) if opt is not None else False)
    if opname == "RESHAPE":
        ns = getattr(opt, "newShape", None) if opt is not None else None
        return dict(new_shape=[int(v) for v in ns] if ns is not None else None)
    return {}


def _check_op(op: TOp, tensors: list[TTensor], source: str) -> None:
    """Reject types and variants the int8 reference does not implement."""
    where = f"{Path(source).name}: operator {op.op} at index {op.index}"

    def t(i):
        return tensors[i]

    def require(cond, why):
        if not cond:
            raise UnsupportedTFLiteOpError(f"{where}: {why}")

    act_ins = [i for i in op.inputs if i >= 0 and not t(i).is_const]
    for i in act_ins + op.outputs:
        require(t(i).dtype == "int8", f"tensor {i} {t(i).name!r} is {t(i).dtype}; only int8 activations")
        require(t(i).scale is not None and t(i).scale.size == 1,
                f"tensor {i} {t(i).name!r} needs one (per-tensor) scale and zero point")
        # the kernels' integer ranges rest on these (docs/spec_tflite.md 1), as TFLite's own kernels do
        require(np.isfinite(t(i).scale[0]) and t(i).scale[0] > 0, f"tensor {i} {t(i).name!r} has scale "
                f"{float(t(i).scale[0])}; a positive finite scale expected")
        require(-128 <= int(t(i).zero_point[0]) <= 127,
                f"tensor {i} {t(i).name!r} has zero point {int(t(i).zero_point[0])}, outside int8")
    if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"):
        # TRANSPOSE_CONV's operands: output shape, weights, input, bias
        data_index, bias_index = (2, 3) if op.op == "TRANSPOSE_CONV" else (0, 2)
        require(len(op.inputs) > data_index and op.inputs[1] >= 0 and t(op.inputs[1]).is_const,
                "the weights must be a constant tensor")
        w = t(op.inputs[1])
        require(w.dtype == "int8", f"weights are {w.dtype}; only int8")
        require(w.zero_point is not None and not np.any(w.zero_point),
                "weights must be symmetric (zero point 0)")
        require(w.scale is not None and np.all(np.isfinite(w.scale)) and np.all(w.scale >= 0),
                "weight scales must be finite and not negative")
        if len(op.inputs) > bias_index and op.inputs[bias_index] >= 0:
            b = t(op.inputs[bias_index])
            require(b.is_const and b.dtype == "int32", f"bias is {b.dtype}; only an int32 constant")
        ndim = 2 if op.op == "FULLY_CONNECTED" else 4
        require(len(w.shape) == ndim, f"weights of rank {len(w.shape)}, expected {ndim}")
        if w.per_channel:
            qd = 3 if op.op == "DEPTHWISE_CONV_2D" else 0
            require(w.quantized_dimension == qd and w.scale.size == w.shape[qd],
                    "per-channel weight scales must run along the output channels")
        x = t(op.inputs[data_index])
        if op.op != "FULLY_CONNECTED":
            require(len(x.shape) == 4, f"input of rank {len(x.shape)}; NHWC expected")
        if op.op == "CONV_2D":
            require(x.shape[3] % w.shape[3] == 0, "input channels are not a multiple of the weights' depth")
        if op.op == "DEPTHWISE_CONV_2D":
            require(w.shape[3] == x.shape[3] * op.options["depth_multiplier"],
                    "weights' channels != input channels x depth multiplier")
        if op.op == "TRANSPOSE_CONV":
            shape = t(op.inputs[0])
            require(shape.is_const and list(shape.data.reshape(-1)) == list(t(op.outputs[0]).shape),
                    "the output shape must be a constant tensor equal to the output's shape")
            require(x.shape[3] == w.shape[3], "input channels != the weights' depth")
    elif op.op in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
        x, y = t(op.inputs[0]), t(op.outputs[0])
        require(len(x.shape) == 4, "NHWC input expected")
        require(float(x.scale[0]) == float(y.scale[0]) and int(x.zero_point[0]) == int(y.zero_point[0]),
                "input and output quantization differ")
    elif op.op in ("ADD", "SUB", "MUL"):
        require(len(op.inputs) == 2, f"{op.op} needs two inputs")
        for i in op.inputs:
            require(not t(i).is_const or t(i).dtype == "int8", "a constant operand must be int8")
            require(t(i).scale is not None and t(i).scale.size == 1, "per-tensor quantization expected")
    elif op.op == "MEAN":
        require(len(op.inputs) == 2 and t(op.inputs[1]).is_const, "the axis must be a constant tensor")
    elif op.op == "PAD":
        require(len(op.inputs) == 2 and t(op.inputs[1]).is_const, "the paddings must be a constant tensor")
        x, y = t(op.inputs[0]), t(op.outputs[0])
        require(int(x.zero_point[0]) == int(y.zero_point[0]) and float(x.scale[0]) == float(y.scale[0]),
                "input and output quantization differ")
        paddings = t(op.inputs[1]).data
        require(np.all(paddings >= 0), "negative paddings")
        require(paddings.shape == (len(x.shape), 2)
                and [d + int(a) + int(b) for d, (a, b) in zip(x.shape, paddings)] == list(y.shape),
                f"paddings {paddings.tolist()} do not take {list(x.shape)} to the output's {list(y.shape)}")
    elif op.op == "CONCATENATION":
        y = t(op.outputs[0])
        for i in op.inputs:
            require(float(t(i).scale[0]) == float(y.scale[0]) and int(t(i).zero_point[0]) == int(y.zero_point[0]),
                    "int8 CONCATENATION needs every input quantized like the output")
        require(op.options["activation"] == "NONE", "fused activation on CONCATENATION")
    elif op.op == "SOFTMAX":
        y = t(op.outputs[0])
        require(int(y.zero_point[0]) == -128 and abs(float(y.scale[0]) - 1 / 256) <= 0.001 / 256,
                "the int8 output must have scale 1/256 and zero point -128")
    elif op.op == "LOGISTIC":
        y = t(op.outputs[0])
        require(int(y.zero_point[0]) == -128 and float(y.scale[0]) == 1 / 256,
                "the int8 output must have scale 1/256 and zero point -128")
    elif op.op in ("RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR"):
        x, y = t(op.inputs[0]), t(op.outputs[0])
        require(len(op.inputs) == 2 and t(op.inputs[1]).is_const, "the output size must be a constant tensor")
        require(len(x.shape) == 4 and list(t(op.inputs[1]).data.reshape(-1)) == list(y.shape[1:3]),
                "NHWC input and a constant size equal to the output's height and width expected")
        require(not (op.options["align_corners"] and op.options["half_pixel_centers"]),
                "align_corners and half_pixel_centers together")
    elif op.op == "DEPTH_TO_SPACE":
        x, block = t(op.inputs[0]), op.options["block"]
        require(len(x.shape) == 4 and block >= 1 and x.shape[3] % (block * block) == 0,
                "NHWC input with channels a multiple of block^2 expected")
    elif op.op in ("RESHAPE", "TILE"):
        x, y = t(op.inputs[0]), t(op.outputs[0])
        if op.op == "RESHAPE":
            require(int(np.prod(x.shape)) == int(np.prod(y.shape)), "element counts differ")
        else:
            require(len(op.inputs) == 2 and t(op.inputs[1]).is_const, "the multiples must be a constant tensor")
            multiples = [int(m) for m in t(op.inputs[1]).data.reshape(-1)]
            require(len(multiples) == len(x.shape) and [d * m for d, m in zip(x.shape, multiples)] == list(y.shape),
                    f"multiples {multiples} do not take {list(x.shape)} to the output's {list(y.shape)}")
        require(float(x.scale[0]) == float(y.scale[0]) and int(x.zero_point[0]) == int(y.zero_point[0]),
                "input and output quantization differ")


def _check_float_op(op: TOp, tensors: list[TTensor], source: str) -> None:
    """A float model: float32 everywhere but the shape / axis / padding operands."""
    index_operand = {"RESHAPE": 1, "MEAN": 1, "PAD": 1, "TILE": 1, "TRANSPOSE": 1, "RESIZE_NEAREST_NEIGHBOR": 1,
                     "RESIZE_BILINEAR": 1, "TRANSPOSE_CONV": 0}.get(op.op)
    for k, i in enumerate(op.inputs + op.outputs):
        if i < 0 or k == index_operand:
            continue
        if tensors[i].dtype != "float32":
            raise UnsupportedTFLiteOpError(
                f"{Path(source).name}: operator {op.op} at index {op.index}: tensor {i} {tensors[i].name!r} is "
                f"{tensors[i].dtype} in a float model (only float32; convert without weight quantization)")
    if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "TRANSPOSE_CONV"):
        weights = tensors[op.inputs[1]] if len(op.inputs) > 1 and op.inputs[1] >= 0 else None
        if weights is None or not weights.is_const:
            raise UnsupportedTFLiteOpError(f"{Path(source).name}: operator {op.op} at index {op.index}: "
                                           "the weights must be a constant tensor")
        rank = 2 if op.op == "FULLY_CONNECTED" else 4
        if len(weights.shape) != rank:  # as the int8 check: the float converter indexes them so
            raise UnsupportedTFLiteOpError(f"{Path(source).name}: operator {op.op} at index {op.index}: "
                                           f"weights of rank {len(weights.shape)}, expected {rank}")
        bias_index = 3 if op.op == "TRANSPOSE_CONV" else 2
        if len(op.inputs) > bias_index and op.inputs[bias_index] >= 0 and not tensors[op.inputs[bias_index]].is_const:
            raise UnsupportedTFLiteOpError(f"{Path(source).name}: operator {op.op} at index {op.index}: "
                                           "the bias must be a constant tensor")
    if op.op in ("MEAN", "PAD", "TILE", "TRANSPOSE", "RESIZE_NEAREST_NEIGHBOR", "RESIZE_BILINEAR") and \
            (len(op.inputs) != 2 or not tensors[op.inputs[1]].is_const):
        raise UnsupportedTFLiteOpError(f"{Path(source).name}: operator {op.op} at index {op.index}: "
                                       "its second operand must be a constant tensor")


def _check_graph(g: TFLiteGraph, source: str) -> None:
    name = Path(source).name
    if len(g.inputs) != 1 or len(g.outputs) != 1:
        raise TFLiteFormatError(f"{name}: the model must have one input and one output "
                                f"(it has {len(g.inputs)} and {len(g.outputs)})")
    produced = set(g.inputs) | {t.index for t in g.tensors if t.is_const}
    for op in g.ops:
        for i in op.inputs:
            if i >= 0 and i not in produced:
                raise TFLiteFormatError(f"{name}: operator {op.op} at index {op.index} reads tensor {i} "
                                        "before it is produced (operators are not in execution order)")
        produced.update(op.outputs)
    if g.outputs[0] not in produced:
        raise TFLiteFormatError(f"{name}: the graph output is never produced")
    x = g.input
    if g.quantized and (x.dtype != "int8" or x.scale is None):
        raise UnsupportedTFLiteOpError(f"{name}: the model input {x.name!r} is {x.dtype}; only an int8 "
                                       "(full-integer, inference_input_type=int8) or a float32 model is supported")
