"""Keras front end: a Keras model (``.h5`` / ``.keras``) -> the float graph IR.

``load_keras_model(path)`` loads the file with TensorFlow's Keras
(``tf.keras.models.load_model(path, compile=False)``; Keras 3 reads legacy
``.h5`` files too); ``import_keras_model(model, normalization)`` walks the
functional graph from the model's config (``inbound_nodes``) and each
layer's weights, and returns an ``ir.Graph`` (NHWC, conv weights OHWI,
padding (top, bottom, left, right)). ``load_keras(path)`` does both.

Layers
------
InputLayer, Conv2D (groups, dilation), DepthwiseConv2D, Dense, BatchNormalization,
Activation / ReLU (relu, relu6, linear, and as tables sigmoid, hard_sigmoid,
hard_swish, tanh, swish), LeakyReLU, Add, Subtract, Multiply (squeeze-excite),
AveragePooling2D, MaxPooling2D, GlobalAveragePooling2D, Flatten, Reshape of a
vector, ZeroPadding2D, Concatenate (channels), Conv2DTranspose (kernel =
strides), UpSampling2D (nearest, bilinear),
Dropout (and the other dropouts: identity at inference). A fused ``activation``
of Conv2D / DepthwiseConv2D / Dense becomes the node's ``act``. Any other
layer raises ``ir.GraphError`` naming the layer and its class.

* ``padding='same'`` is TensorFlow's: total padding
  ``max((ceil(in/s) - 1) * s + (k - 1) * d + 1 - in, 0)``, the smaller half
  at the top/left and the extra pixel at the bottom/right.
* AveragePooling2D with 'same' padding that actually pads is refused: TF
  divides by the number of valid pixels, the IR's avgpool by the window size.
  A pooling window covering the whole input becomes ``global_avgpool``.
* ZeroPadding2D is folded into the padding of its single consumer when that
  is a conv2d or an avgpool (zero padding means the same thing there);
  otherwise it is refused.
* Softmax: the IR has no softmax. A softmax at the very end of the model
  (``Activation('softmax')``, ``Softmax()`` or ``Dense(activation='softmax')``)
  is DROPPED by default (``final_softmax='drop'``): the graph outputs the
  logits, whose argmax is the same. The drop is logged. With
  ``final_softmax='error'`` it raises ``ir.GraphError`` instead. A softmax
  anywhere else is always an error.

The input node's normalization defaults to raw pixels (``pixel_scale`` 1,
mean 0, std 1), what the MLPerf Tiny ResNet-8 expects; pass any object with
``pixel_scale``, ``mean`` and ``std`` (e.g. ``zoo.Normalization``) otherwise.
"""
from __future__ import annotations

import math
import logging
import zipfile
from pathlib import Path

import numpy as np

from dqa_mcu import ir
from dqa_mcu.frontends.tflite_import import tf_same_padding
from dqa_mcu.ir import TABLE_FUNCTIONS
from dqa_mcu.npconv import out_size

__all__ = ["load_keras", "load_keras_model", "import_keras_model", "RAW_PIXELS"]

log = logging.getLogger(__name__)


class _Norm:
    def __init__(self, pixel_scale, mean, std):
        self.pixel_scale, self.mean, self.std = pixel_scale, tuple(mean), tuple(std)


RAW_PIXELS = _Norm(1.0, (0.0,), (1.0,))

# Keras activation names -> the IR's table functions (Keras 3's hard_sigmoid is relu6(x + 3) / 6, as torch's)
_TABLE_ACTIVATIONS = {"sigmoid": "sigmoid", "hard_sigmoid": "hardsigmoid", "hard_swish": "hardswish",
                      "hard_silu": "hardswish", "tanh": "tanh", "swish": "silu", "silu": "silu"}
_IDENTITY = {"Dropout", "SpatialDropout1D", "SpatialDropout2D", "GaussianDropout", "GaussianNoise",
             "AlphaDropout", "ActivityRegularization", "Identity"}


def load_keras_model(path):
    """Load a Keras model file with TensorFlow's Keras, without compiling it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    _check_container(path)
    try:
        import tensorflow as tf
    except ImportError as e:  # pragma: no cover - environment dependent
        raise ImportError("importing Keras models needs TensorFlow (pip install tensorflow, "
                          "or the project's [tflite] extra)") from e
    try:
        return tf.keras.models.load_model(str(path), compile=False)
    except Exception as e:  # noqa: BLE001 - Keras raises many types for unreadable files
        raise ValueError(f"{path.name}: cannot load as a Keras model ({type(e).__name__}: "
                         f"{str(e).splitlines()[0] if str(e) else ''})") from e


HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def _check_container(path: Path) -> None:
    """Name a file that is not a Keras container before Keras reports it obscurely."""
    with path.open("rb") as f:
        head = f.read(8)
    if path.suffix == ".keras":
        if not zipfile.is_zipfile(path):
            raise ValueError(f"{path.name}: not a Keras model (a .keras file is a zip archive; this one is not)")
    elif head != HDF5_SIGNATURE:
        raise ValueError(f"{path.name}: not a Keras model (no HDF5 signature at the start of the file)")


def load_keras(path, normalization=None, final_softmax: str = "drop") -> ir.Graph:
    """``import_keras_model(load_keras_model(path), ...)``."""
    return import_keras_model(load_keras_model(path), normalization, final_softmax)


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (list, tuple)):
        return (int(v[0]), int(v[-1])) if len(v) in (1, 2) else (int(v[0]), int(v[1]))
    return int(v), int(v)


def tf_same_pads(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """(before, after) of TF 'SAME' padding."""
    return tf_same_padding(size, kernel, stride, dilation)[1:]


def _history(arg) -> list[tuple[str, int, int]]:
    """keras_history triples of every tensor referenced in an inbound-node argument."""
    out = []
    if isinstance(arg, dict):
        if arg.get("class_name") == "__keras_tensor__":
            h = arg["config"]["keras_history"]
            out.append((h[0], int(h[1]), int(h[2])))
        else:
            for v in arg.values():
                out += _history(v)
    elif isinstance(arg, (list, tuple)):
        # Keras 2 style: [layer_name, node_index, tensor_index, kwargs]
        if len(arg) >= 3 and isinstance(arg[0], str) and isinstance(arg[1], int) and isinstance(arg[2], int):
            out.append((arg[0], arg[1], arg[2]))
        else:
            for v in arg:
                out += _history(v)
    return out


class _Importer:
    def __init__(self, model, normalization, final_softmax: str):
        if final_softmax not in ("drop", "error"):
            raise ValueError("final_softmax must be 'drop' or 'error'")
        self.model = model
        self.norm = normalization if normalization is not None else RAW_PIXELS
        self.final_softmax = final_softmax
        self.nodes: list[ir.Node] = []
        self.shapes: dict[str, tuple[int, int, int]] = {}
        self.tmap: dict[tuple[str, int, int], str] = {}  # keras tensor -> IR tensor
        self.pending_pad: dict[str, tuple[int, int, int, int]] = {}  # IR tensor -> ZeroPadding2D pads
        self.pad_source: dict[str, str] = {}
        self.layers = {layer.name: layer for layer in model.layers}
        self.used: set[str] = set()
        self.dropped_softmax: str | None = None

    # ---- helpers
    def fail(self, layer, why: str) -> ir.GraphError:
        return ir.GraphError(f"unsupported layer {layer.name!r} ({type(layer).__name__}): {why}")

    def name(self, base: str) -> str:
        return ir.unique_name(base, self.used)

    def emit(self, layer, op, inputs, shape, attrs=None, params=None, suffix="") -> str:
        n = self.name(layer.name + suffix)
        self.nodes.append(ir.Node(n, op, list(inputs), n, attrs or {}, params or {}))
        self.shapes[n] = tuple(int(v) for v in shape)
        return n

    def shape(self, t: str) -> tuple[int, int, int]:
        return self.shapes[t]

    def take_pad(self, t: str) -> tuple[str, tuple[int, int, int, int]]:
        """Resolve a pending ZeroPadding2D on tensor t: (source tensor, pads)."""
        if t in self.pending_pad:
            return self.pad_source[t], self.pending_pad[t]
        return t, (0, 0, 0, 0)

    def plain(self, layer, t: str) -> str:
        if t in self.pending_pad:
            raise self.fail(layer, f"it reads the output of ZeroPadding2D {t!r}; only Conv2D, DepthwiseConv2D "
                                   "and AveragePooling2D can absorb a ZeroPadding2D")
        return t

    def act_of(self, layer, cfg) -> str:
        a = cfg.get("activation", "linear")
        if isinstance(a, dict):
            a = a.get("config", {}).get("name", a.get("class_name", "?"))
        a = str(a)
        if a in ("linear", None, "None"):
            return "none"
        if a in ("relu", "relu6"):
            return a
        if a == "softmax":
            return "softmax"
        if a in _TABLE_ACTIVATIONS:
            return _TABLE_ACTIVATIONS[a]
        raise self.fail(layer, f"activation {a!r} (supported: linear, relu, relu6, {', '.join(_TABLE_ACTIVATIONS)}, "
                               "final softmax)")

    def activated(self, layer, out: str, act: str) -> str:
        """`out` through a table activation (a node of its own, spec 5.4.2), or `out` itself."""
        if act not in TABLE_FUNCTIONS:
            return out
        return self.emit(layer, "activation", [out], self.shape(out), dict(function=act), suffix="_act")

    @staticmethod
    def fused(act: str) -> str:
        """What a conv or dense node takes as its own act (table functions follow as a node)."""
        return "none" if act in TABLE_FUNCTIONS else act

    # ---- layers
    def do_input(self, layer, cfg):
        shape = cfg.get("batch_shape") or cfg.get("batch_input_shape")
        if shape is None or len(shape) not in (2, 4) or any(v is None for v in shape[1:]):
            raise self.fail(layer, f"the input must be NHWC or (N, features) with a static shape, got {shape}")
        h, w, c = (int(v) for v in shape[1:]) if len(shape) == 4 else (1, 1, int(shape[1]))
        mean = np.broadcast_to(np.asarray(self.norm.mean, np.float32), (c,)).copy()
        std = np.broadcast_to(np.asarray(self.norm.std, np.float32), (c,)).copy()
        self.used.add("input")
        self.nodes.append(ir.Node("input", "input", [], "input", {"pixel_scale": float(self.norm.pixel_scale)},
                                  {"mean": mean, "std": std}))
        self.shapes["input"] = (h, w, c)
        return "input"

    def conv_like(self, layer, cfg, x, depthwise: bool):
        if cfg.get("data_format", "channels_last") != "channels_last":
            raise self.fail(layer, "only data_format='channels_last'")
        src, extra = self.take_pad(x)
        h, w, cin = self.shape(src)
        kh, kw = _pair(cfg["kernel_size"])
        sh, sw = _pair(cfg.get("strides", 1))
        dh, dw = _pair(cfg.get("dilation_rate", 1))
        weights = layer.get_weights()
        k = np.asarray(weights[0], np.float32)
        if depthwise:
            mult = int(cfg.get("depth_multiplier", 1))
            # (KH, KW, Cin, mult) -> OHWI (Cin*mult, KH, KW, 1), output channel c*mult + m
            wt = k.transpose(2, 3, 0, 1).reshape(cin * mult, kh, kw)[..., None]
            groups = cin
        else:
            groups = int(cfg.get("groups", 1))
            wt = k.transpose(3, 0, 1, 2)  # HWIO -> OHWI
        cout = wt.shape[0]
        if wt.shape[3] * groups != cin:
            raise self.fail(layer, f"weights {k.shape} do not fit an input of {cin} channels")
        bias = np.asarray(weights[1], np.float32) if cfg.get("use_bias", True) and len(weights) > 1 \
            else np.zeros(cout, np.float32)
        hp, wp = h + extra[0] + extra[1], w + extra[2] + extra[3]
        pad_mode = cfg.get("padding", "valid")
        if pad_mode == "same":
            pt, pb = tf_same_pads(hp, kh, sh, dh)
            pl, pr = tf_same_pads(wp, kw, sw, dw)
        elif pad_mode == "valid":
            pt = pb = pl = pr = 0
        else:
            raise self.fail(layer, f"padding {pad_mode!r}")
        pad = (pt + extra[0], pb + extra[1], pl + extra[2], pr + extra[3])
        oh = out_size(h, kh, sh, pad[0], pad[1], dh)
        ow = out_size(w, kw, sw, pad[2], pad[3], dw)
        act = self.act_of(layer, cfg)
        if act == "softmax":
            raise self.fail(layer, "softmax activation on a convolution")
        return self.activated(layer, self.emit(
            layer, "conv2d", [src], (oh, ow, cout),
            dict(stride=(sh, sw), padding=pad, dilation=(dh, dw), groups=groups, act=self.fused(act)),
            dict(weight=np.ascontiguousarray(wt), bias=bias)), act)

    def do_conv_transpose(self, layer, cfg, x):
        """Kernel == stride (the U-Net decoder step): a 1x1 conv to C_out * k * k channels, then
        depth_to_space (as the torch importer lowers ConvTranspose2d)."""
        x = self.plain(layer, x)
        h, w, cin = self.shape(x)
        k, s = _pair(cfg["kernel_size"]), _pair(cfg.get("strides", 1))
        if (k != s or k[0] != k[1] or _pair(cfg.get("dilation_rate", 1)) != (1, 1)
                or cfg.get("output_padding") not in (None, 0, (0, 0), [0, 0])
                or cfg.get("data_format", "channels_last") != "channels_last"):
            raise self.fail(layer, f"transposed convolution with kernel {k}, strides {s}; only kernel == "
                                   "strides (square), channels_last (else use UpSampling2D + Conv2D)")
        r = k[0]
        weights = layer.get_weights()
        kernel = np.asarray(weights[0], np.float32)  # (kh, kw, C_out, C_in)
        cout = kernel.shape[2]
        bias = np.asarray(weights[1], np.float32) if cfg.get("use_bias", True) and len(weights) > 1 \
            else np.zeros(cout, np.float32)
        act = self.act_of(layer, cfg)
        if act == "softmax":
            raise self.fail(layer, "softmax activation on a transposed convolution")
        attrs, params = ir.block_conv_attrs_params(kernel.transpose(2, 0, 1, 3), bias)  # (C_out, r, r, C_in)
        blocks = self.emit(layer, "conv2d", [x], (h, w, cout * r * r), attrs, params, suffix="_blocks")
        out = self.emit(layer, "depth_to_space", [blocks], (h * r, w * r, cout), dict(block=r))
        if act in TABLE_FUNCTIONS:
            return self.activated(layer, out, act)
        return out if act == "none" else self.emit(layer, act, [out], (h * r, w * r, cout), suffix="_act")

    def do_upsampling(self, layer, cfg, x):
        x = self.plain(layer, x)
        h, w, c = self.shape(x)
        sh, sw = _pair(cfg.get("size", 2))
        interpolation = cfg.get("interpolation", "nearest")
        if interpolation not in ("nearest", "bilinear") or cfg.get("data_format", "channels_last") != "channels_last":
            raise self.fail(layer, f"interpolation {interpolation!r}; only nearest and bilinear, channels_last")
        if (sh, sw) == (1, 1):
            return x
        op = "upsample_nearest" if interpolation == "nearest" else "upsample_bilinear"
        return self.emit(layer, op, [x], (h * sh, w * sw, c), dict(scale=(sh, sw)))

    def do_dense(self, layer, cfg, x):
        x = self.plain(layer, x)
        h, w, c = self.shape(x)
        if (h, w) != (1, 1):
            raise self.fail(layer, f"Dense on a {h}x{w}x{c} tensor; flatten or pool it first")
        weights = layer.get_weights()
        k = np.asarray(weights[0], np.float32)
        units = k.shape[1]
        bias = np.asarray(weights[1], np.float32) if cfg.get("use_bias", True) and len(weights) > 1 \
            else np.zeros(units, np.float32)
        act = self.act_of(layer, cfg)
        softmax = act == "softmax"
        out = self.activated(layer, self.emit(layer, "linear", [x], (1, 1, units),
                                              dict(act="none" if softmax else self.fused(act)),
                                              dict(weight=np.ascontiguousarray(k.T), bias=bias)), act)
        if softmax:
            self.softmax(layer, out)
        return out

    def softmax(self, layer, t):
        self.dropped_softmax = layer.name
        self.softmax_tensor = t

    def do_bn(self, layer, cfg, x):
        x = self.plain(layer, x)
        axis = cfg.get("axis", -1)
        axis = axis[0] if isinstance(axis, (list, tuple)) and len(axis) == 1 else axis
        if axis not in (-1, 3):
            raise self.fail(layer, f"normalization axis {axis}; only the channel axis (-1)")
        ws = [np.asarray(v, np.float32) for v in layer.get_weights()]
        c = self.shape(x)[2]
        gamma = ws.pop(0) if cfg.get("scale", True) else np.ones(c, np.float32)
        beta = ws.pop(0) if cfg.get("center", True) else np.zeros(c, np.float32)
        mean, var = ws[0], ws[1]
        return self.emit(layer, "batchnorm", [x], self.shape(x), dict(eps=float(cfg.get("epsilon", 1e-3))),
                         dict(gamma=gamma, beta=beta, mean=mean, var=var))

    def do_activation(self, layer, cfg, x):
        x = self.plain(layer, x)
        cls = type(layer).__name__
        slope = float(cfg.get("negative_slope", cfg.get("alpha", 0.3)) or 0) if cls == "LeakyReLU" else \
            float(cfg.get("negative_slope", 0) or 0)
        if slope and cls in ("ReLU", "LeakyReLU"):
            if cfg.get("max_value") is not None or float(cfg.get("threshold", 0) or 0) != 0 or not 0 < slope < 1:
                raise self.fail(layer, "a leaky ReLU with a maximum, a threshold or a slope outside (0, 1)")
            return self.emit(layer, "leaky_relu", [x], self.shape(x), dict(negative_slope=slope))
        if cls in ("ReLU", "LeakyReLU"):
            mx = cfg.get("max_value")
            if float(cfg.get("threshold", 0) or 0) != 0:
                raise self.fail(layer, "thresholded ReLU")
            if mx is not None and not float(mx) > 0:
                raise self.fail(layer, f"ReLU with max_value {mx}; only a positive maximum")
            bounded = ir.clamp_act(0.0, math.inf if mx is None else float(mx))
            act = bounded["act"]
            if act == "clamp":
                return self.emit(layer, "clamp", [x], self.shape(x), {k: bounded[k] for k in ("clamp_min", "clamp_max")})
        elif cls == "Softmax":
            act = "softmax"
        else:
            act = self.act_of(layer, cfg)
        if act == "none":
            return x
        if act == "softmax":
            self.softmax(layer, x)
            return x
        if act in TABLE_FUNCTIONS:
            return self.emit(layer, "activation", [x], self.shape(x), dict(function=act))
        return self.emit(layer, act, [x], self.shape(x))

    def do_pool(self, layer, cfg, x, kind):
        if cfg.get("data_format", "channels_last") not in ("channels_last", None):
            raise self.fail(layer, "only data_format='channels_last'")
        src, extra = self.take_pad(x) if kind == "avg" else (self.plain(layer, x), (0, 0, 0, 0))
        h, w, c = self.shape(src)
        kh, kw = _pair(cfg["pool_size"])
        strides = cfg.get("strides") or cfg["pool_size"]
        sh, sw = _pair(strides)
        hp, wp = h + extra[0] + extra[1], w + extra[2] + extra[3]
        if cfg.get("padding", "valid") == "same":
            pt, pb = tf_same_pads(hp, kh, sh)
            pl, pr = tf_same_pads(wp, kw, sw)
            if kind == "avg" and (pt or pb or pl or pr):
                raise self.fail(layer, "AveragePooling2D with padding='same' that pads: TensorFlow excludes the "
                                       "padding from the divisor, the IR's avgpool includes it")
        else:
            pt = pb = pl = pr = 0
        pad = (pt + extra[0], pb + extra[1], pl + extra[2], pr + extra[3])
        oh, ow = out_size(h, kh, sh, pad[0], pad[1]), out_size(w, kw, sw, pad[2], pad[3])
        if kind == "avg" and (oh, ow) == (1, 1) and pad == (0, 0, 0, 0) and (kh, kw) == (h, w):
            return self.emit(layer, "global_avgpool", [src], (1, 1, c))
        op = "avgpool" if kind == "avg" else "maxpool"
        return self.emit(layer, op, [src], (oh, ow, c), dict(kernel=(kh, kw), stride=(sh, sw), padding=pad))

    def do_zeropad(self, layer, cfg, x):
        x = self.plain(layer, x)
        p = cfg["padding"]
        if isinstance(p, int):
            pads = (p, p, p, p)
        elif isinstance(p[0], (list, tuple)):
            pads = (int(p[0][0]), int(p[0][1]), int(p[1][0]), int(p[1][1]))
        else:
            pads = (int(p[0]), int(p[0]), int(p[1]), int(p[1]))
        if cfg.get("data_format", "channels_last") != "channels_last":
            raise self.fail(layer, "only data_format='channels_last'")
        h, w, c = self.shape(x)
        t = self.name(layer.name)
        self.shapes[t] = (h + pads[0] + pads[1], w + pads[2] + pads[3], c)
        self.pending_pad[t] = pads
        self.pad_source[t] = x
        return t

    def do_concat(self, layer, cfg, xs):
        xs = [self.plain(layer, x) for x in xs]
        if cfg.get("axis", -1) not in (-1, 3):
            raise self.fail(layer, f"concatenation along axis {cfg.get('axis')}; only channels (-1)")
        hw = {self.shape(x)[:2] for x in xs}
        if len(hw) != 1:
            raise self.fail(layer, f"inputs of different spatial sizes {sorted(hw)}")
        h, w = hw.pop()
        return self.emit(layer, "concat", xs, (h, w, sum(self.shape(x)[2] for x in xs)))

    def do_add(self, layer, xs):
        xs = [self.plain(layer, x) for x in xs]
        if len({self.shape(x) for x in xs}) != 1:
            raise self.fail(layer, f"inputs of different shapes {[self.shape(x) for x in xs]}")
        out = xs[0]
        for i, x in enumerate(xs[1:]):
            out = self.emit(layer, "add", [out, x], self.shape(x), dict(act="none"),
                            suffix="" if i == len(xs) - 2 else f"_{i}")
        return out

    def do_subtract(self, layer, xs):
        if len(xs) != 2:
            raise self.fail(layer, f"a subtraction of {len(xs)} inputs; only 2")
        a, b = (self.plain(layer, x) for x in xs)
        if self.shape(a) != self.shape(b):
            raise self.fail(layer, f"inputs of different shapes {self.shape(a)} and {self.shape(b)}")
        return self.emit(layer, "add", [a, b], self.shape(a), dict(act="none", b_sign=-1))

    def do_multiply(self, layer, xs):
        """Multiply (squeeze-excite): two tensors of one shape, or a tensor and a (1, 1, C) vector."""
        if len(xs) != 2:
            raise self.fail(layer, f"a multiply of {len(xs)} inputs; only 2")
        a, b = (self.plain(layer, x) for x in xs)
        if self.shape(a)[:2] == (1, 1) and self.shape(b)[:2] != (1, 1):
            a, b = b, a  # the vector second
        if self.shape(b) not in (self.shape(a), (1, 1, self.shape(a)[2])):
            raise self.fail(layer, f"a multiply of shapes {self.shape(a)} and {self.shape(b)}; only equal shapes or "
                                   "a per-channel (1, 1, C) vector")
        return self.emit(layer, "mul", [a, b], self.shape(a))

    def do_reshape(self, layer, cfg, x):
        x = self.plain(layer, x)
        h, w, c = self.shape(x)
        if (h, w) == (1, 1) and tuple(cfg.get("target_shape", ())) in ((c,), (1, 1, c)):
            return x  # a vector is (1, 1, C) in the IR either way
        raise self.fail(layer, f"reshape of {h}x{w}x{c} to {cfg.get('target_shape')}; only a vector to (1, 1, C)")

    def do_flatten(self, layer, x):
        x = self.plain(layer, x)
        h, w, c = self.shape(x)
        if (h, w) == (1, 1):
            return x
        return self.emit(layer, "flatten", [x], (1, 1, h * w * c))

    def do_gap(self, layer, cfg, x):
        x = self.plain(layer, x)
        if cfg.get("data_format", "channels_last") not in ("channels_last", None):
            raise self.fail(layer, "only data_format='channels_last'")
        return self.emit(layer, "global_avgpool", [x], (1, 1, self.shape(x)[2]))

    def do_layer(self, layer, cfg, ins: list[str]) -> str:
        cls = type(layer).__name__
        if self.dropped_softmax is not None:
            raise ir.GraphError(f"softmax {self.dropped_softmax!r} is not the last layer (layer {layer.name!r} "
                                f"({cls}) follows it); the IR has no softmax")
        if cls in ("Conv2D", "Convolution2D"):
            return self.conv_like(layer, cfg, self.one(layer, ins), depthwise=False)
        if cls == "DepthwiseConv2D":
            return self.conv_like(layer, cfg, self.one(layer, ins), depthwise=True)
        if cls == "Dense":
            return self.do_dense(layer, cfg, self.one(layer, ins))
        if cls in ("Conv2DTranspose", "Convolution2DTranspose"):
            return self.do_conv_transpose(layer, cfg, self.one(layer, ins))
        if cls == "UpSampling2D":
            return self.do_upsampling(layer, cfg, self.one(layer, ins))
        if cls == "BatchNormalization":
            return self.do_bn(layer, cfg, self.one(layer, ins))
        if cls in ("Activation", "ReLU", "LeakyReLU", "Softmax"):
            return self.do_activation(layer, cfg, self.one(layer, ins))
        if cls == "Add":
            return self.do_add(layer, ins)
        if cls in ("AveragePooling2D", "AvgPool2D"):
            return self.do_pool(layer, cfg, self.one(layer, ins), "avg")
        if cls in ("MaxPooling2D", "MaxPool2D"):
            return self.do_pool(layer, cfg, self.one(layer, ins), "max")
        if cls in ("GlobalAveragePooling2D", "GlobalAvgPool2D"):
            return self.do_gap(layer, cfg, self.one(layer, ins))
        if cls == "Flatten":
            return self.do_flatten(layer, self.one(layer, ins))
        if cls == "ZeroPadding2D":
            return self.do_zeropad(layer, cfg, self.one(layer, ins))
        if cls in ("Concatenate", "Concatenation"):
            return self.do_concat(layer, cfg, ins)
        if cls == "Multiply":
            return self.do_multiply(layer, ins)
        if cls == "Subtract":
            return self.do_subtract(layer, ins)
        if cls == "Reshape":
            return self.do_reshape(layer, cfg, self.one(layer, ins))
        if cls in _IDENTITY:
            return self.one(layer, ins)
        raise self.fail(layer, "no IR mapping for this layer class")

    def one(self, layer, ins):
        if len(ins) != 1:
            raise self.fail(layer, f"expected one input, got {len(ins)}")
        return ins[0]

    # ---- graph walk
    def run(self) -> ir.Graph:
        m = self.model
        cfg = m.get_config()
        if not isinstance(cfg, dict) or "layers" not in cfg:
            raise ir.GraphError(f"model {getattr(m, 'name', '?')!r} ({type(m).__name__}): not a functional or "
                                "Sequential Keras model")
        layers_cfg = cfg["layers"]
        sequential = "input_layers" not in cfg
        if sequential:
            return self.run_sequential(layers_cfg)
        ins_cfg = [tuple(v) for v in (cfg["input_layers"] if isinstance(cfg["input_layers"][0], (list, tuple))
                                      else [cfg["input_layers"]])]
        outs_cfg = [tuple(v) for v in (cfg["output_layers"] if isinstance(cfg["output_layers"][0], (list, tuple))
                                       else [cfg["output_layers"]])]
        if len(ins_cfg) != 1 or len(outs_cfg) != 1:
            raise ir.GraphError(f"the model must have one input and one output (it has {len(ins_cfg)} and "
                                f"{len(outs_cfg)})")
        for lc in layers_cfg:
            lname = lc.get("name") or lc["config"]["name"]
            layer = self.layers[lname]
            lcfg = lc.get("config", {})
            inbound = lc.get("inbound_nodes", [])
            if lc["class_name"] == "InputLayer":
                self.tmap[(lname, 0, 0)] = self.do_input(layer, lcfg)
                continue
            if not inbound:
                continue
            if len(inbound) != 1:
                raise self.fail(layer, f"the layer is called {len(inbound)} times (shared layers are not supported)")
            if lc["class_name"] in ("Functional", "Sequential", "Model"):
                raise self.fail(layer, "nested models are not supported; flatten the model first")
            node = inbound[0]
            hist = _history(node["args"] if isinstance(node, dict) and "args" in node else node)
            try:
                ins = [self.tmap[h] for h in hist]
            except KeyError as e:
                raise self.fail(layer, f"input {e.args[0]} was not imported") from None
            self.tmap[(lname, 0, 0)] = self.do_layer(layer, lcfg, ins)
        out_key = (outs_cfg[0][0], int(outs_cfg[0][1]), int(outs_cfg[0][2]))
        return self.finish(self.tmap[out_key])

    def run_sequential(self, layers_cfg) -> ir.Graph:
        m = self.model
        t = None
        for i, lc in enumerate(layers_cfg):
            lcfg = lc.get("config", {})
            if lc["class_name"] == "InputLayer":
                t = self.do_input(_Named(lcfg.get("name", "input")), lcfg)
                continue
            layer = m.layers[i - (1 if layers_cfg[0]["class_name"] == "InputLayer" else 0)]
            if t is None:
                shape = lcfg.get("batch_input_shape") or lcfg.get("batch_shape") or \
                    (None,) + tuple(m.input_shape[1:])
                t = self.do_input(_Named("input"), {"batch_shape": shape})
            t = self.do_layer(layer, lcfg, [t])
        return self.finish(t)

    def finish(self, out: str) -> ir.Graph:
        if out in self.pending_pad:
            raise ir.GraphError(f"the model ends with a ZeroPadding2D ({out!r})")
        if self.dropped_softmax is not None:
            if self.final_softmax == "error":
                raise ir.GraphError(f"layer {self.dropped_softmax!r}: softmax at the output; the IR has no "
                                    "softmax (pass final_softmax='drop' to output the logits instead)")
            log.info("dropped the final softmax of layer %r: the graph outputs logits (same argmax)",
                     self.dropped_softmax)
        g = ir.Graph(nodes=self.nodes, shapes=self.shapes, input="input", output=out)
        g.validate()
        return g


class _Named:
    def __init__(self, name):
        self.name = name


def import_keras_model(model, normalization=None, final_softmax: str = "drop") -> ir.Graph:
    """Import an in-memory Keras model (functional or Sequential) into an ``ir.Graph``."""
    return _Importer(model, normalization, final_softmax).run()
