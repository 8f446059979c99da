"""PyTorch front end: model file -> torch module -> float graph IR.

``load_torch_model`` reads a model file and returns a module plus the input
normalization it expects; ``import_module`` traces a module into an
``ir.Graph``.

Accepted files
--------------
* a state_dict checkpoint (``torch.save(model.state_dict())`` or a dict with a
  ``'state_dict'`` entry) plus a built-in architecture name (``zoo.ZOO``);
* a ``torch.export`` program (``.pt2``): its graph module is used as is;
* a TorchScript archive (``torch.jit.save``): torch.fx cannot trace a
  ScriptModule (it runs in C++), so its TorchScript graph is converted to an
  fx graph with PyTorch's own TorchScript converter and re-traced with
  ``torch.export`` at the requested input shape;
* a whole pickled ``nn.Module`` (``torch.save(model)``) ONLY with
  ``trust_pickle=True``: unpickling such a file runs arbitrary code.

Tracing
-------
A plain ``nn.Module`` is traced with ``torch.fx.symbolic_trace`` (and, if
that fails, e.g. on data-dependent Python control flow, with
``torch.export``). Torch-level nodes (modules, ``torch.nn.functional``,
``torch.*``, tensor methods) and aten-level nodes (export / TorchScript) are
both mapped. Shapes and every non-tensor value (``x.size()[3]`` and the like)
come from running the graph once on a dummy input (``ShapeProp``); tensors
that do not depend on the input (parameters, transposed weights) are
constants. Anything else raises ``ir.GraphError`` naming the fx node.

IR names are the fx node names, so ``layer1.0.conv1`` becomes
``layer1_0_conv1`` (for aten graphs the name is taken from the weight's module
path). Each IR node's output tensor has the node's name.

A flatten of a 1x1 spatial tensor is the identity in NHWC and emits no node.
A flatten of a larger tensor emits ``flatten`` (HWC order) and the following
linear's weight columns are permuted from torch's CHW order to HWC.
"""
from __future__ import annotations

import io
import logging
import math
import multiprocessing
import operator
import os
import pickle
import re
import signal
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.fx
import torch.nn as nn
import torch.nn.functional as F
from torch.fx.passes.shape_prop import ShapeProp

from dqa_mcu import ir
from dqa_mcu.frontends import zoo
from dqa_mcu.frontends.zoo import Normalization
from dqa_mcu.npconv import out_size

DEFAULT_NORMALIZATION = Normalization(1.0 / 255.0, (0.0,), (1.0,))

__all__ = ["load_torch_model", "import_module", "DEFAULT_NORMALIZATION", "Normalization"]


# --------------------------------------------------------------------------- loading

def _zip_names(path: Path) -> list[str] | None:
    if not zipfile.is_zipfile(path):
        return None
    with zipfile.ZipFile(path) as z:
        return z.namelist()


def _first_line(e: BaseException) -> str:
    """An exception's message cut to its first line (torch's run several lines, with graph dumps)."""
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else ""


class _LoggedErrors(logging.Handler):
    """Keeps the exceptions logged through a logger instead of printing their tracebacks."""

    def __init__(self):
        super().__init__()
        self.errors: list[BaseException] = []

    def emit(self, record):
        if record.exc_info and record.exc_info[1] is not None:
            self.errors.append(record.exc_info[1])


@contextmanager
def _torch_logs_kept():
    """Torch's loggers (each with its own stderr handler) write into a _LoggedErrors meanwhile: torch
    logs the traceback of an error before raising it, and the caller reports it in one line."""
    logged = _LoggedErrors()
    loggers = [log for name, log in logging.Logger.manager.loggerDict.items()
               if name.split(".")[0] == "torch" and isinstance(log, logging.Logger) and log.handlers]
    saved = [(log, log.handlers) for log in loggers]
    for log in loggers:
        log.handlers = [logged]
    try:
        yield logged
    finally:
        for log, handlers in saved:
            log.handlers = handlers


# How long converting a TorchScript archive may take in the child process that does it first
CONVERTER_PROBE_SECONDS = 300


def _torchscript_graph(ts, example: torch.Tensor) -> torch.fx.GraphModule:
    """The fx graph of a ScriptModule, from torch's private TorchScript converter."""
    from torch._export import converter as c

    conv = c.TS2EPConverter(ts, (example,))
    lifted, fqn = c.get_block_to_lifted_attrs(conv.ts_graph)
    g = c.TS2FXGraphConverter(conv.ts_graph, conv.name_to_param, conv.name_to_buffer, lifted,
                              conv.name_to_non_tensor_attributes, conv.name_to_constant, fqn)
    gm = g.convert()
    c.replace_quantized_ops_with_standard_ops(gm)
    return gm


def _convert_saved(archive: bytes, shape: tuple[int, ...]) -> None:
    """The converter on a saved ScriptModule: what the probe child runs."""
    _torchscript_graph(torch.jit.load(io.BytesIO(archive), map_location="cpu").eval(), torch.zeros(shape))


def _silently(work, *args) -> None:
    """A probe child's body: what it would print or raise, the caller's own run reports."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    try:
        work(*args)
    except BaseException:  # noqa: BLE001 - reported by the caller's run in its own process
        pass


def probe_in_a_child(work, *args) -> str | None:
    """Run `work(*args)` in a fresh child process first: None if the child survived (an exception
    there is raised again by the caller's own run), else how it died. A damaged TorchScript archive
    can crash torch's C++ converter, which no handler in this process could catch. (A fresh child, not
    a fork: a forked child of a process that has run torch.export deadlocked here.)"""
    child = multiprocessing.get_context("spawn").Process(target=_silently, args=(work, *args), daemon=True)
    child.start()
    try:
        child.join(CONVERTER_PROBE_SECONDS)
        timed_out = child.exitcode is None
    finally:  # also when the wait is interrupted (a signal, Ctrl-C)
        if child.exitcode is None:
            child.kill()
            child.join()
    if timed_out:
        return f"it ran over {CONVERTER_PROBE_SECONDS} s"
    if child.exitcode < 0:
        number = -child.exitcode
        name = signal.Signals(number).name if number in signal.valid_signals() else f"signal {number}"
        return f"it crashed ({name})"
    return None


def _torchscript_to_fx(ts, example: torch.Tensor) -> torch.fx.GraphModule:
    """Convert a ScriptModule to an aten-level fx GraphModule at the example's shape.

    PyTorch's TorchScript converter turns the TorchScript graph into fx (in a child process first, so
    that a crash in it is one line here); its own re-export uses dynamic shapes, which fails on shape
    arithmetic such as ``avg_pool2d(x, x.size(3))``, so we re-trace with ``torch.export`` at the
    static example shape instead.
    """
    advice = ("Export the model with torch.export (.pt2), or give a state_dict checkpoint with a built-in "
              "--arch.")
    saved = io.BytesIO()
    torch.jit.save(ts, saved)
    death = probe_in_a_child(_convert_saved, saved.getvalue(), tuple(example.shape))
    if death is not None:
        likely = "the machine may be too slow or too busy" if "ran over" in death else "the archive is probably damaged"
        raise ir.GraphError(f"torch's TorchScript converter failed on this archive: {death}; {likely}. {advice}")
    try:
        gm = _torchscript_graph(ts, example)
        with _torch_logs_kept():
            return torch.export.export(gm, (example,), strict=False).module()
    except Exception as e:  # noqa: BLE001 - private converter, any failure is reported the same way
        raise ir.GraphError(
            "cannot convert this TorchScript archive to a traceable graph (torch.fx cannot trace a "
            f"ScriptModule directly): {type(e).__name__}: {_first_line(e)}. {advice}") from e


def _load_archive(load, path: Path, what: str):
    """`load(path)`; a damaged archive is one line naming the file and the first error (torch.export.load
    logs that one with its traceback, then raises a vaguer one)."""
    with _torch_logs_kept() as logged:
        try:
            return load(str(path))
        except Exception as e:  # noqa: BLE001 - torch raises many types (RuntimeError, KeyError, ...) on damage
            cause = (logged.errors or [e])[0]
            raise ValueError(f"{path.name}: cannot load as {what}; the file is damaged ({type(cause).__name__}: "
                             f"{_first_line(cause)})") from None


def _without_debug_records(path: str) -> io.BytesIO:
    """A TorchScript archive without its .debug_pkl entries (source ranges, for torch's own error
    messages): a damaged one crashes the process in torch's graph printer, which converting calls."""
    kept = io.BytesIO()
    with zipfile.ZipFile(path) as archive, zipfile.ZipFile(kept, "w", zipfile.ZIP_STORED) as copy:
        for entry in archive.infolist():
            if not entry.filename.endswith(".debug_pkl"):
                copy.writestr(entry.filename, archive.read(entry))
    kept.seek(0)
    return kept


def load_torch_model(path, arch: str | None = None, trust_pickle: bool = False):
    """Load a PyTorch model file; returns ``(module, normalization)``.

    The normalization is the architecture's when ``arch`` is given (or the
    module is a built-in CIFAR ResNet), else ``DEFAULT_NORMALIZATION``
    (pixel / 255, mean 0, std 1), which the caller may override.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    norm = zoo.get_entry(arch).normalization if arch is not None else DEFAULT_NORMALIZATION
    names = _zip_names(path)
    if names is not None and any(n == "archive_format" or n.endswith("/archive_format") for n in names):
        return _load_archive(lambda p: torch.export.load(p).module(), path, "a torch.export program"), norm
    if names is not None and any("/code/__torch__/" in n or n.endswith("constants.pkl") for n in names):
        return _load_archive(lambda p: torch.jit.load(_without_debug_records(p), map_location="cpu").eval(), path,
                             "a TorchScript archive"), norm

    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if not trust_pickle:
            raise ValueError(
                f"{path} is a Python pickle that runs code when loaded (for example a whole "
                "nn.Module saved with torch.save(model)). Pass --trust-pickle (trust_pickle=True) "
                "only if you trust this file, or save a state_dict / torch.export .pt2 instead."
            ) from e
        obj = torch.load(path, map_location="cpu", weights_only=False)

    if isinstance(obj, nn.Module):
        if arch is None and isinstance(obj, zoo.CifarResNet):
            norm = zoo.CIFAR_NORMALIZATION
        return obj.eval(), norm
    if isinstance(obj, dict):
        if arch is None:
            raise ValueError(f"{path} holds only weights (a state_dict); pass the architecture "
                             f"(--arch), one of: {', '.join(sorted(zoo.ZOO))}")
        return zoo.load_state_dict_checkpoint(path, arch), norm
    raise ValueError(f"{path}: unsupported content {type(obj).__name__}; expected a state_dict, "
                     "an nn.Module, a TorchScript archive or a torch.export .pt2 program")


# --------------------------------------------------------------------------- tracing helpers

class _Recorder(ShapeProp):
    """ShapeProp that also keeps every node's value (ints, sizes, constant tensors)."""

    def __init__(self, gm):
        super().__init__(gm)
        self.values: dict[torch.fx.Node, object] = {}

    def run_node(self, n):
        result = super().run_node(n)
        self.values[n] = result
        return result


def _target_name(node: torch.fx.Node, gm) -> str:
    if node.op == "call_module":
        m = gm.get_submodule(node.target)
        return f"{type(m).__module__}.{type(m).__qualname__}"
    if node.op == "call_method":
        return f"Tensor.{node.target}"
    t = node.target
    if isinstance(t, torch._ops.OpOverload):
        return str(t)
    try:
        from torch.fx.node import _get_qualified_name
        return _get_qualified_name(t)
    except Exception:  # noqa: BLE001
        return getattr(t, "__name__", repr(t))


def _pair(v) -> tuple[int, int]:
    if isinstance(v, (list, tuple, torch.Size)):
        if len(v) == 1:
            return int(v[0]), int(v[0])
        if len(v) == 2:
            return int(v[0]), int(v[1])
        raise ValueError(f"expected 1 or 2 values, got {v!r}")
    return int(v), int(v)


def _bind(names, defaults, args, kwargs) -> dict:
    d = dict(defaults)
    for n, a in zip(names, args):
        d[n] = a
    d.update(kwargs)
    return d


def _bind_aten(target, args, kwargs) -> dict:
    d = {}
    schema = target._schema.arguments
    for a in schema:
        if a.has_default_value():
            d[a.name] = a.default_value
    for a, v in zip(schema, args):
        d[a.name] = v
    d.update(kwargs)
    return d


_CONV_FNS = {F.conv2d, torch.conv2d}
_RELU_FNS = {F.relu, torch.relu, F.relu_, torch.relu_}
_RELU6_FNS = {F.relu6}
_TABLE_FNS = {torch.sigmoid: "sigmoid", F.sigmoid: "sigmoid", F.hardsigmoid: "hardsigmoid", F.hardswish: "hardswish",
              torch.tanh: "tanh", F.tanh: "tanh", F.silu: "silu"}
_TABLE_MODULES = {nn.Sigmoid: "sigmoid", nn.Hardsigmoid: "hardsigmoid", nn.Hardswish: "hardswish", nn.Tanh: "tanh",
                  nn.SiLU: "silu"}
_MUL_FNS = {operator.mul, operator.imul, torch.mul}
_LEAKY_FNS = {F.leaky_relu, F.leaky_relu_, torch._C._nn.leaky_relu, torch._C._nn.leaky_relu_}
_HARDTANH_FNS = {F.hardtanh, F.hardtanh_}
_CLAMP_FNS = {torch.clamp, torch.clip, torch.clamp_min}
_ADD_FNS = {operator.add, operator.iadd, torch.add}
_SUB_FNS = {operator.sub, operator.isub, torch.sub, torch.subtract}
_MAXPOOL_FNS = {F.max_pool2d, torch.max_pool2d}
_AVGPOOL_FNS = {F.avg_pool2d, torch._C._nn.avg_pool2d}
_ADAPTIVE_FNS = {F.adaptive_avg_pool2d, torch._C._nn.adaptive_avg_pool2d}
_CAT_FNS = {torch.cat, torch.concat, torch.concatenate}
_INTERP_FNS = {F.interpolate, F.upsample, F.upsample_nearest}
_PIXEL_SHUFFLE_FNS = {F.pixel_shuffle, torch.pixel_shuffle}
_CONV_TRANSPOSE_FNS = {F.conv_transpose2d, torch.conv_transpose2d}
_PAD_FNS = {F.pad, torch.constant_pad_nd}
_IDENTITY_FNS = {F.dropout, F.dropout2d, torch.clone}
_RESHAPE_FNS = {torch.flatten, torch.reshape}
_INPLACE_FNS = {F.relu_, torch.relu_, F.hardtanh_, F.leaky_relu_, torch._C._nn.leaky_relu_, operator.iadd}

# spec: positional names and defaults for torch-level functions / tensor methods
_SPECS = {
    "conv": (("input", "weight", "bias", "stride", "padding", "dilation", "groups"),
             {"bias": None, "stride": 1, "padding": 0, "dilation": 1, "groups": 1}),
    "bn_F": (("input", "running_mean", "running_var", "weight", "bias", "training", "momentum", "eps"),
             {"weight": None, "bias": None, "training": False, "eps": 1e-5}),
    "bn_torch": (("input", "weight", "bias", "running_mean", "running_var", "training", "momentum", "eps"),
                 {"training": False, "eps": 1e-5}),
    "hardtanh": (("input", "min_val", "max_val", "inplace"), {"min_val": -1.0, "max_val": 1.0}),
    "act": (("input", "inplace"), {"inplace": False}),
    "leaky": (("input", "negative_slope", "inplace"), {"negative_slope": 0.01, "inplace": False}),
    "clamp": (("input", "min", "max"), {"min": None, "max": None}),
    "add": (("input", "other", "alpha"), {"alpha": 1}),
    "mul": (("input", "other"), {}),
    "maxpool": (("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode", "return_indices"),
                {"stride": None, "padding": 0, "dilation": 1, "ceil_mode": False, "return_indices": False}),
    "avgpool": (("input", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad",
                 "divisor_override"),
                {"stride": None, "padding": 0, "ceil_mode": False, "count_include_pad": True,
                 "divisor_override": None}),
    "adaptive": (("input", "output_size"), {}),
    "mean": (("input", "dim", "keepdim"), {"dim": None, "keepdim": False}),
    "linear": (("input", "weight", "bias"), {"bias": None}),
    "cat": (("tensors", "dim"), {"dim": 0}),
    "interp": (("input", "size", "scale_factor", "mode", "align_corners"),
               {"size": None, "scale_factor": None, "mode": "nearest", "align_corners": None}),
    "pixel_shuffle": (("input", "upscale_factor"), {}),
    "conv_transpose": (("input", "weight", "bias", "stride", "padding", "output_padding", "groups", "dilation"),
                       {"bias": None, "stride": 1, "padding": 0, "output_padding": 0, "groups": 1, "dilation": 1}),
    "pad": (("input", "pad", "mode", "value"), {"mode": "constant", "value": None}),
    "unary": (("input",), {}),
    "getitem": (("input", "idx"), {}),
}

_METHODS = {
    "relu": "relu", "relu_": "relu", "add": "add", "add_": "add", "sub": "sub", "sub_": "sub",
    "mul": "mul", "mul_": "mul", "view": "reshape",
    "sigmoid": "table", "tanh": "table",
    "reshape": "reshape", "flatten": "reshape", "mean": "mean", "contiguous": "identity",
    "clone": "identity", "clamp": "clamp", "clamp_": "clamp", "clip": "clamp", "clamp_min": "clamp",
    "float": "identity", "detach": "identity",
}
_INPLACE_METHODS = {"relu_", "add_", "clamp_"}

_ATEN = {
    "conv2d": "conv", "convolution": "conv", "_convolution": "conv",
    "batch_norm": "batchnorm", "_native_batch_norm_legit_no_training": "batchnorm",
    "relu": "relu", "relu_": "relu", "relu6": "relu6", "hardtanh": "hardtanh", "hardtanh_": "hardtanh",
    "leaky_relu": "leaky_relu", "leaky_relu_": "leaky_relu", "mul": "mul", "mul_": "mul",
    "sigmoid": "table", "hardsigmoid": "table", "hardswish": "table", "tanh": "table", "silu": "table",
    "hardswish_": "table", "hardsigmoid_": "table", "silu_": "table",
    "clamp": "clamp", "clamp_min": "clamp", "clip": "clamp",
    "add": "add", "add_": "add", "sub": "sub", "sub_": "sub",
    "max_pool2d": "maxpool", "max_pool2d_with_indices": "maxpool",
    "avg_pool2d": "avgpool", "adaptive_avg_pool2d": "adaptive", "_adaptive_avg_pool2d": "adaptive",
    "mean": "mean", "view": "reshape", "reshape": "reshape", "_unsafe_view": "reshape",
    "flatten": "reshape", "linear": "linear", "cat": "cat", "concat": "cat",
    "upsample_nearest2d": "upsample", "_upsample_nearest_exact2d": "upsample_bad",
    "upsample_bilinear2d": "upsample_bilinear", "pixel_shuffle": "pixel_shuffle",
    "conv_transpose2d": "conv_transpose",
    "slice": "slice", "pad": "pad", "constant_pad_nd": "pad",
    "dropout": "identity", "clone": "identity", "contiguous": "identity", "detach": "identity",
    "alias": "identity", "_to_copy": "identity", "to": "identity", "lift_fresh_copy": "identity",
}


def _classify(node: torch.fx.Node, gm) -> tuple[str | None, dict, bool]:
    """(kind, canonical fields, in_place) of a node; kind None when unsupported."""
    args, kwargs = node.args, node.kwargs
    if node.op == "call_module":
        m = gm.get_submodule(node.target)
        x = args[0] if args else kwargs.get("input")
        inplace = bool(getattr(m, "inplace", False))
        if isinstance(m, nn.Conv2d):
            if m.padding_mode != "zeros":
                return None, {}, False
            return "conv", dict(input=x, weight=m.weight, bias=m.bias, stride=m.stride, padding=m.padding,
                                dilation=m.dilation, groups=m.groups), False
        if isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            if m.running_mean is None:
                return None, {}, False
            return "batchnorm", dict(input=x, weight=m.weight, bias=m.bias, running_mean=m.running_mean,
                                     running_var=m.running_var, eps=m.eps), False
        if isinstance(m, nn.ReLU):
            return "relu", dict(input=x), inplace
        if type(m) in _TABLE_MODULES:
            return "table", dict(input=x, function=_TABLE_MODULES[type(m)]), inplace
        if isinstance(m, nn.LeakyReLU):
            return "leaky_relu", dict(input=x, negative_slope=m.negative_slope), inplace
        if isinstance(m, nn.Hardtanh):  # includes ReLU6
            return "hardtanh", dict(input=x, min_val=m.min_val, max_val=m.max_val), inplace
        if isinstance(m, nn.MaxPool2d):
            return "maxpool", dict(input=x, kernel_size=m.kernel_size, stride=m.stride, padding=m.padding,
                                   dilation=m.dilation, ceil_mode=m.ceil_mode,
                                   return_indices=m.return_indices), False
        if isinstance(m, nn.AvgPool2d):
            return "avgpool", dict(input=x, kernel_size=m.kernel_size, stride=m.stride, padding=m.padding,
                                   ceil_mode=m.ceil_mode, count_include_pad=m.count_include_pad,
                                   divisor_override=m.divisor_override), False
        if isinstance(m, nn.AdaptiveAvgPool2d):
            return "adaptive", dict(input=x, output_size=m.output_size), False
        if isinstance(m, nn.Flatten):
            return "reshape", dict(input=x), False
        if isinstance(m, nn.Linear):
            return "linear", dict(input=x, weight=m.weight, bias=m.bias), False
        if isinstance(m, nn.Upsample):
            return "interp", dict(input=x, mode=m.mode, align_corners=m.align_corners), False
        if isinstance(m, nn.PixelShuffle):
            return "pixel_shuffle", dict(input=x, upscale_factor=m.upscale_factor), False
        if isinstance(m, nn.ConvTranspose2d):
            return "conv_transpose", dict(input=x, weight=m.weight, bias=m.bias, stride=m.stride,
                                          padding=m.padding, output_padding=m.output_padding, groups=m.groups,
                                          dilation=m.dilation, padding_mode=m.padding_mode), False
        if isinstance(m, (nn.Identity, nn.Dropout, nn.Dropout2d)):
            return "identity", dict(input=x), False
        return None, {}, False

    if node.op == "call_method":
        kind = _METHODS.get(node.target)
        if kind is None:
            return None, {}, False
        spec = {"relu": "unary", "identity": "unary", "reshape": "unary", "table": "unary"}.get(kind, kind)
        names, defaults = _SPECS[spec]
        d = _bind(names, defaults, args, kwargs)
        if kind == "table":
            d["function"] = node.target.rstrip("_")
        return kind, d, node.target in _INPLACE_METHODS

    if node.op != "call_function":
        return None, {}, False
    t = node.target
    if isinstance(t, torch._ops.OpOverload):
        base = t._schema.name.split("::")[-1]
        kind = _ATEN.get(base)
        if kind is None or kind == "upsample_bad":
            return None, {}, False
        d = _bind_aten(t, args, kwargs)
        if "self" in d:
            d["input"] = d.pop("self")
        if kind == "conv" and d.get("transposed", False):
            kind = "conv_transpose"
        if kind == "upsample":
            d["mode"] = "nearest"
        if kind == "table":
            d["function"] = base.rstrip("_")
        if kind == "mul" and "other" not in d:
            return None, {}, False
        return kind, d, False
    if t is operator.getitem:
        return "getitem", _bind(*_SPECS["getitem"], args, kwargs), False
    if t in _TABLE_FNS:
        return "table", dict(_bind(*_SPECS["unary"], args, kwargs), function=_TABLE_FNS[t]), False
    table = [
        (_CONV_FNS, "conv", "conv"), (_RELU_FNS, "relu", "act"), (_RELU6_FNS, "relu6", "act"),
        (_LEAKY_FNS, "leaky_relu", "leaky"), (_HARDTANH_FNS, "hardtanh", "hardtanh"), (_CLAMP_FNS, "clamp", "clamp"),
        (_ADD_FNS, "add", "add"), (_SUB_FNS, "sub", "add"), (_MUL_FNS, "mul", "mul"),
        (_MAXPOOL_FNS, "maxpool", "maxpool"), (_AVGPOOL_FNS, "avgpool", "avgpool"),
        (_ADAPTIVE_FNS, "adaptive", "adaptive"), (_CAT_FNS, "cat", "cat"), (_INTERP_FNS, "interp", "interp"),
        (_PAD_FNS, "pad", "pad"), (_IDENTITY_FNS, "identity", "unary"), (_RESHAPE_FNS, "reshape", "unary"),
        ({F.linear}, "linear", "linear"), ({torch.mean}, "mean", "mean"),
        (_PIXEL_SHUFFLE_FNS, "pixel_shuffle", "pixel_shuffle"),
        (_CONV_TRANSPOSE_FNS, "conv_transpose", "conv_transpose"),
        ({F.batch_norm}, "batchnorm", "bn_F"), ({torch.batch_norm}, "batchnorm", "bn_torch"),
    ]
    for fns, kind, spec in table:
        if any(t is f for f in fns):
            d = _bind(*_SPECS[spec], args, kwargs)
            if kind == "clamp" and t is torch.clamp_min:
                d = {"input": d["input"], "min": d["min"], "max": None}
            inplace = d.get("inplace", False)
            return kind, d, t in _INPLACE_FNS or (isinstance(inplace, bool) and inplace)
    return None, {}, False


# (words in an unsupported op's name, the nearest supported alternative), for the refusal message
_ALTERNATIVES = (
    (("gelu", "softplus", "mish", "softsign"),
     "this smooth activation has no table yet; supported: sigmoid, hardsigmoid, hardswish, tanh, SiLU, ReLU, "
     "ReLU6, LeakyReLU"),
    (("prelu", "elu", "selu"), "no integer kernel for it yet; the nearest supported are ReLU and LeakyReLU"),
    (("div",), "division has no integer kernel; fold a constant divisor into the convolution before it"),
    (("neg",), "negation has no integer kernel; fold the sign into the producing convolution's weights"),
    (("upsample", "interpolate"), "only nearest and bilinear (align_corners=False) upsampling by integer factors"),
    (("softmax",), "end the model with the logits (argmax, top-1 and KL work on them)"),
)


# --------------------------------------------------------------------------- importer

class _Importer:
    def __init__(self, gm: torch.fx.GraphModule, example: torch.Tensor, normalization: Normalization,
                 aten_names: bool):
        self.gm = gm
        self.aten_names = aten_names
        self.norm = normalization
        placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
        if len(placeholders) != 1:
            raise ir.GraphError(f"the model must have exactly one input, it has {len(placeholders)}: "
                                f"{[p.name for p in placeholders]}")
        rec = _Recorder(gm)
        try:
            with torch.no_grad():
                rec.run(example)
        except Exception as e:  # noqa: BLE001 - the model itself fails on an input of the shape it was given
            raise ir.GraphError(f"the model fails on an input of shape {tuple(example.shape)} (NCHW): "
                                f"{type(e).__name__}: {_first_line(e)}") from None
        self.values = rec.values
        self.batch = example.shape[0]
        self.nodes: list[ir.Node] = []
        self.shapes: dict[str, tuple[int, int, int]] = {}
        self.tmap: dict[torch.fx.Node, str] = {}  # fx node -> IR tensor
        self.flat_origin: dict[str, tuple[int, int, int]] = {}  # spatial flatten outputs -> (H, W, C)
        self.used_names: set[str] = set()
        self.dyn: set[torch.fx.Node] = set()
        self.input_name: str | None = None
        self.output_name: str | None = None

    # ---- helpers
    def fail(self, node, why: str = "") -> ir.GraphError:
        msg = f"unsupported op at node {node.name!r} ({node.op} {_target_name(node, self.gm)})"
        return ir.GraphError(msg + (f": {why}" if why else ""))

    def val(self, a):
        if isinstance(a, torch.fx.Node):
            return self.values[a]
        if isinstance(a, (list, tuple)):
            return type(a)(self.val(x) for x in a)
        return a

    def const(self, node, a, what: str):
        if isinstance(a, torch.fx.Node) and a in self.dyn:
            raise self.fail(node, f"{what} depends on the input")
        return self.val(a)

    def param(self, node, a, what: str) -> np.ndarray | None:
        v = self.const(node, a, what)
        if v is None:
            return None
        if isinstance(v, (int, float)):
            return np.asarray(v, np.float32)
        return v.detach().to(torch.float32).cpu().numpy().copy()

    def tensor(self, node, a) -> str:
        if not isinstance(a, torch.fx.Node) or a not in self.dyn:
            raise self.fail(node, "an input is a constant, not a tensor computed from the model input")
        if a not in self.tmap:
            raise self.fail(node, f"its input {a.name!r} has no IR tensor")
        return self.tmap[a]

    def shape_of(self, fxnode) -> tuple[int, int, int]:
        v = self.values[fxnode]
        if isinstance(v, (tuple, list)):
            v = v[0]
        if v.dim() == 4:
            return (int(v.shape[2]), int(v.shape[3]), int(v.shape[1]))
        if v.dim() == 2:
            return (1, 1, int(v.shape[1]))
        raise self.fail(fxnode, f"tensor of rank {v.dim()} (shape {tuple(v.shape)}); only NCHW and (N, C)")

    def rank(self, fxnode) -> int:
        v = self.values[fxnode]
        if isinstance(v, (tuple, list)):
            v = v[0]
        return v.dim()

    def name_for(self, node: torch.fx.Node, d: dict) -> str:
        base = node.name
        if self.aten_names:
            w = d.get("weight")
            if isinstance(w, torch.fx.Node) and w.op == "get_attr" and "." in str(w.target):
                base = str(w.target).rsplit(".", 1)[0]
            else:
                stack = node.meta.get("nn_module_stack") or {}
                path = list(stack.values())[-1][0] if stack else ""
                if path and not path.startswith("L[") and "<locals>" not in path:
                    base = path + "_" + re.sub(r"_+\d*$", "", node.name)
        return ir.unique_name(base, self.used_names)

    def emit(self, fxnode, d, op, inputs, attrs=None, params=None) -> str:
        name = self.name_for(fxnode, d)
        self.nodes.append(ir.Node(name=name, op=op, inputs=list(inputs), output=name,
                                  attrs=attrs or {}, params=params or {}))
        self.shapes[name] = self.shape_of(fxnode)
        return name

    # ---- main loop
    def run(self) -> ir.Graph:
        for node in self.gm.graph.nodes:
            if node.op == "placeholder":
                self.dyn.add(node)
                self.do_input(node)
            elif node.op == "output":
                self.do_output(node)
            elif node.op == "get_attr":
                continue
            else:
                v = self.values.get(node)
                is_t = isinstance(v, torch.Tensor) or (
                    isinstance(v, (tuple, list)) and v and all(isinstance(x, torch.Tensor) for x in v))
                dead_getitem = node.target is operator.getitem and not node.users
                if is_t and not dead_getitem and any(a in self.dyn for a in node.all_input_nodes):
                    self.dyn.add(node)
                    self.do_node(node)
        g = ir.Graph(nodes=self.nodes, shapes=self.shapes, input=self.input_name, output=self.output_name)
        g = _merge_slices(g)
        g.validate()
        return g

    def do_input(self, node):
        v = self.values[node]
        if not isinstance(v, torch.Tensor) or v.dim() not in (2, 4):
            raise ir.GraphError(f"the model input {node.name!r} must be an NCHW tensor or an (N, features) vector")
        c = int(v.shape[1])
        mean = np.broadcast_to(np.asarray(self.norm.mean, np.float32), (c,)).copy()
        std = np.broadcast_to(np.asarray(self.norm.std, np.float32), (c,)).copy()
        self.used_names.add("input")
        self.nodes.append(ir.Node("input", "input", [], "input", attrs={"pixel_scale": float(self.norm.pixel_scale)},
                                  params={"mean": mean, "std": std}))
        self.shapes["input"] = self.shape_of(node)
        self.tmap[node] = "input"
        self.input_name = "input"

    def do_output(self, node):
        flat, _ = torch.utils._pytree.tree_flatten(node.args)
        outs = [a for a in flat if isinstance(a, torch.fx.Node)]
        if len(outs) != 1:
            raise ir.GraphError(f"the model must have exactly one output, it has {len(outs)}")
        if outs[0] not in self.tmap:
            raise ir.GraphError(f"the model output {outs[0].name!r} is not computed from the input")
        self.output_name = self.tmap[outs[0]]

    def do_node(self, node):
        kind, d, inplace = _classify(node, self.gm)
        if kind is None:
            target = _target_name(node, self.gm).lower()
            raise self.fail(node, next((alt for words, alt in _ALTERNATIVES if any(w in target for w in words)),
                                       "no integer kernel for it yet"))
        handler = getattr(self, "op_" + kind)
        out = handler(node, d)
        if out is None:
            raise self.fail(node)
        self.tmap[node] = out
        if inplace:  # later uses of the mutated tensor see the new value
            x = d.get("input")
            if isinstance(x, torch.fx.Node):
                self.tmap[x] = out

    # ---- op handlers: return the IR tensor name
    def op_identity(self, node, d):
        return self.tensor(node, d["input"])

    def op_conv(self, node, d):
        x = self.tensor(node, d["input"])
        if self.rank(d["input"]) != 4:
            raise self.fail(node, "conv2d input must be NCHW")
        w = self.param(node, d["weight"], "weight")
        b = self.param(node, d.get("bias"), "bias")
        cout, cin_g, kh, kw = w.shape
        stride, dilation, groups = _pair(self.val(d["stride"])), _pair(self.val(d["dilation"])), int(self.val(d["groups"]))
        pad = self.val(d["padding"])
        if isinstance(pad, str):
            if pad == "valid":
                padding = (0, 0, 0, 0)
            elif pad == "same":
                th, tw = dilation[0] * (kh - 1), dilation[1] * (kw - 1)
                padding = (th // 2, th - th // 2, tw // 2, tw - tw // 2)
            else:
                raise self.fail(node, f"padding {pad!r}")
        else:
            ph, pw = _pair(pad)
            padding = (ph, ph, pw, pw)
        h, wd, c = self.shapes[x]
        oh, ow, oc = self.shape_of(node)
        if (out_size(h, kh, stride[0], padding[0], padding[1], dilation[0]),
                out_size(wd, kw, stride[1], padding[2], padding[3], dilation[1]), cout) != (oh, ow, oc):
            raise self.fail(node, "output shape does not match a plain zero-padded convolution")
        if b is None:
            b = np.zeros(cout, np.float32)
        return self.emit(node, d, "conv2d", [x],
                         attrs=dict(stride=stride, padding=padding, dilation=dilation, groups=groups, act="none"),
                         params=dict(weight=np.ascontiguousarray(w.transpose(0, 2, 3, 1)), bias=b.astype(np.float32)))

    def op_batchnorm(self, node, d):
        x = self.tensor(node, d["input"])
        if self.val(d.get("training", False)):
            raise self.fail(node, "batch norm in training mode (call model.eval())")
        mean = self.param(node, d["running_mean"], "running_mean")
        var = self.param(node, d["running_var"], "running_var")
        if mean is None or var is None:
            raise self.fail(node, "batch norm without running statistics")
        c = mean.shape[0]
        gamma = self.param(node, d.get("weight"), "weight")
        beta = self.param(node, d.get("bias"), "bias")
        gamma = np.ones(c, np.float32) if gamma is None else gamma
        beta = np.zeros(c, np.float32) if beta is None else beta
        return self.emit(node, d, "batchnorm", [x], attrs=dict(eps=float(self.val(d["eps"]))),
                         params=dict(gamma=gamma, beta=beta, mean=mean, var=var))

    def op_relu(self, node, d):
        return self.emit(node, d, "relu", [self.tensor(node, d["input"])])

    def op_table(self, node, d):
        return self.emit(node, d, "activation", [self.tensor(node, d["input"])], attrs=dict(function=d["function"]))

    def computed_operands(self, node, d, constant_hint: str) -> tuple[str, str]:
        """The IR tensors of a binary op's two operands; an operand that is a constant is refused."""
        a, b = d["input"], d["other"]
        if not all(isinstance(v, torch.fx.Node) and v in self.dyn for v in (a, b)):
            raise self.fail(node, constant_hint)
        return self.tensor(node, a), self.tensor(node, b)

    def op_mul(self, node, d):
        ta, tb = self.computed_operands(node, d, "multiply by a constant: fold it into the convolution or "
                                                 "BatchNorm before it")
        if self.shapes[ta][:2] == (1, 1) and self.shapes[tb][:2] != (1, 1):
            ta, tb = tb, ta  # the vector second
        sa, sb = self.shapes[ta], self.shapes[tb]
        if sb != sa and sb != (1, 1, sa[2]):
            raise self.fail(node, f"multiply of shapes {sa} and {sb}; only equal shapes or a per-channel "
                                  "(N, C, 1, 1) vector (squeeze-excite)")
        return self.emit(node, d, "mul", [ta, tb])

    def op_leaky_relu(self, node, d):
        slope = float(self.val(d.get("negative_slope", 0.01)))
        if slope == 0.0:
            return self.op_relu(node, d)
        if not 0.0 < slope < 1.0:
            raise self.fail(node, f"leaky_relu with negative_slope {slope}; only 0 <= slope < 1")
        return self.emit(node, d, "leaky_relu", [self.tensor(node, d["input"])], attrs=dict(negative_slope=slope))

    def op_relu6(self, node, d):
        return self.emit(node, d, "relu6", [self.tensor(node, d["input"])])

    def _bounded(self, node, d, lo, hi):
        lo, hi = self.val(lo), self.val(hi)
        lo, hi = -math.inf if lo is None else float(lo), math.inf if hi is None else float(hi)
        if not lo < hi:
            raise self.fail(node, f"clamp to [{lo}, {hi}]; the minimum must be below the maximum")
        bounded = ir.clamp_act(lo, hi)
        if bounded["act"] == "none":
            return self.tensor(node, d["input"])
        if bounded["act"] in ("relu", "relu6"):
            return self.emit(node, d, bounded["act"], [self.tensor(node, d["input"])])
        return self.emit(node, d, "clamp", [self.tensor(node, d["input"])],
                         attrs={k: bounded[k] for k in ("clamp_min", "clamp_max")})

    def op_hardtanh(self, node, d):
        return self._bounded(node, d, d["min_val"], d["max_val"])

    def op_clamp(self, node, d):
        return self._bounded(node, d, d.get("min"), d.get("max"))

    def op_add(self, node, d, b_sign: int = 1):
        what = "add" if b_sign == 1 else "subtract"
        if self.val(d.get("alpha", 1)) != 1:
            raise self.fail(node, f"{what} with alpha != 1")
        ta, tb = self.computed_operands(node, d, f"{what} a constant: fold it into the bias of the convolution "
                                                 "before it")
        if self.shapes[ta] != self.shapes[tb] or self.rank(d["input"]) != self.rank(d["other"]):
            raise self.fail(node, f"{what} of different shapes {self.shapes[ta]} and {self.shapes[tb]} (broadcast)")
        attrs = dict(act="none") if b_sign == 1 else dict(act="none", b_sign=-1)
        return self.emit(node, d, "add", [ta, tb], attrs=attrs)

    def op_sub(self, node, d):
        return self.op_add(node, d, b_sign=-1)

    def _pool_geometry(self, node, d, x):
        k = _pair(self.val(d["kernel_size"]))
        s = self.val(d.get("stride"))
        s = k if s is None or (isinstance(s, (list, tuple)) and len(s) == 0) else _pair(s)
        ph, pw = _pair(self.val(d.get("padding", 0)))
        return k, s, (ph, ph, pw, pw)

    def op_maxpool(self, node, d):
        x = self.tensor(node, d["input"])
        if self.rank(d["input"]) != 4:
            raise self.fail(node, "max pooling input must be NCHW")
        if _pair(self.val(d.get("dilation", 1))) != (1, 1):
            raise self.fail(node, "max pooling with dilation")
        k, s, p = self._pool_geometry(node, d, x)
        h, w, _ = self.shapes[x]
        oh, ow, _ = self.shape_of(node)
        fh, fw = out_size(h, k[0], s[0], p[0], p[1]), out_size(w, k[1], s[1], p[2], p[3])
        if (fh, fw) != (oh, ow):
            if not self.val(d.get("ceil_mode", False)) or oh < fh or ow < fw:
                raise self.fail(node, "unexpected max pooling output shape")
            p = (p[0], p[1] + (oh - fh) * s[0], p[2], p[3] + (ow - fw) * s[1])  # ceil mode: -inf pad
        return self.emit(node, d, "maxpool", [x], attrs=dict(kernel=k, stride=s, padding=p))

    def op_avgpool(self, node, d):
        x = self.tensor(node, d["input"])
        if self.rank(d["input"]) != 4:
            raise self.fail(node, "average pooling input must be NCHW")
        if self.val(d.get("divisor_override")) is not None:
            raise self.fail(node, "avg_pool2d with divisor_override")
        k, s, p = self._pool_geometry(node, d, x)
        h, w, _ = self.shapes[x]
        oh, ow, _ = self.shape_of(node)
        if any(p) and not self.val(d.get("count_include_pad", True)):
            raise self.fail(node, "avg_pool2d with padding and count_include_pad=False")
        if (out_size(h, k[0], s[0], p[0], p[1]), out_size(w, k[1], s[1], p[2], p[3])) != (oh, ow):
            raise self.fail(node, "avg_pool2d output shape differs (ceil_mode is not supported)")
        if k == (h, w) and not any(p):
            return self.emit(node, d, "global_avgpool", [x])
        return self.emit(node, d, "avgpool", [x], attrs=dict(kernel=k, stride=s, padding=p))

    def op_adaptive(self, node, d):
        x = self.tensor(node, d["input"])
        h, w, _ = self.shapes[x]
        oh, ow, _ = self.shape_of(node)
        if (oh, ow) == (1, 1):
            return self.emit(node, d, "global_avgpool", [x])
        if h % oh or w % ow:
            raise self.fail(node, f"adaptive average pooling {h}x{w} -> {oh}x{ow} is not a uniform pooling")
        k = (h // oh, w // ow)
        return self.emit(node, d, "avgpool", [x], attrs=dict(kernel=k, stride=k, padding=(0, 0, 0, 0)))

    def op_mean(self, node, d):
        x = self.tensor(node, d["input"])
        dims = self.val(d.get("dim"))
        dims = [dims] if isinstance(dims, int) else list(dims or [])
        r = self.rank(d["input"])
        if r != 4 or sorted(int(a) % 4 for a in dims) != [2, 3]:
            raise self.fail(node, f"mean over dims {dims}; only the spatial dims (2, 3)")
        return self.emit(node, d, "global_avgpool", [x])

    def op_reshape(self, node, d):
        src = d["input"]
        x = self.tensor(node, src)
        vin, vout = self.values[src], self.values[node]
        if tuple(vin.shape) == tuple(vout.shape):
            return x
        if vout.dim() != 2 or vout.shape[0] != self.batch or vin.shape[0] != self.batch \
                or vout.shape[1] != vin[0].numel():
            raise self.fail(node, f"reshape {tuple(vin.shape)} -> {tuple(vout.shape)}; only flatten to (N, -1)")
        h, w, c = self.shapes[x]
        if h * w == 1:
            return x
        for user in node.users:
            kind, ud, _ = _classify(user, self.gm)
            if kind != "linear" or ud.get("input") is not node:
                raise self.fail(node, f"flatten of a {h}x{w} spatial tensor must feed only linear layers "
                                      f"(it feeds {user.name!r})")
        out = self.emit(node, d, "flatten", [x])
        self.flat_origin[out] = (h, w, c)
        return out

    def op_linear(self, node, d):
        x = self.tensor(node, d["input"])
        if self.rank(d["input"]) != 2:
            raise self.fail(node, "linear input must be (N, C)")
        w = self.param(node, d["weight"], "weight")
        b = self.param(node, d.get("bias"), "bias")
        if x in self.flat_origin:
            h, ww, c = self.flat_origin[x]
            w = w.reshape(w.shape[0], c, h, ww).transpose(0, 2, 3, 1).reshape(w.shape[0], -1)
        if b is None:
            b = np.zeros(w.shape[0], np.float32)
        return self.emit(node, d, "linear", [x], attrs=dict(act="none"),
                         params=dict(weight=np.ascontiguousarray(w), bias=b))

    def op_cat(self, node, d):
        ts = d["tensors"]
        dim = int(self.val(d.get("dim", 0)))
        r = self.rank(ts[0])
        if dim % r != 1:
            raise self.fail(node, f"cat along dim {dim}; only channels (dim 1)")
        xs = [self.tensor(node, t) for t in ts]
        if len({self.shapes[t][:2] for t in xs}) != 1:
            raise self.fail(node, "cat of different spatial sizes")
        return self.emit(node, d, "concat", xs)

    def op_interp(self, node, d):
        mode = self.val(d.get("mode", "nearest"))
        if mode == "bilinear":
            return self.op_upsample_bilinear(node, d)
        if mode != "nearest":
            raise self.fail(node, f"interpolation mode {mode!r}; only 'nearest' and 'bilinear' "
                                  "(align_corners=False)")
        return self.op_upsample(node, d)

    def _integer_scale(self, node, d, what: str) -> tuple[int, int]:
        x = self.tensor(node, d["input"])
        h, w, c = self.shapes[x]
        oh, ow, oc = self.shape_of(node)
        if oh % h or ow % w or oh < h or ow < w or oc != c:
            raise self.fail(node, f"{what} {h}x{w} -> {oh}x{ow}; only integer scale factors "
                                  "(use a strided convolution or pooling to downsample)")
        return oh // h, ow // w

    def op_upsample(self, node, d):
        scale = self._integer_scale(node, d, "nearest upsampling")
        return self.emit(node, d, "upsample_nearest", [self.tensor(node, d["input"])], attrs=dict(scale=scale))

    def op_upsample_bilinear(self, node, d):
        if self.val(d.get("align_corners")):
            raise self.fail(node, "bilinear upsampling with align_corners=True; only align_corners=False "
                                  "(PyTorch's default)")
        if self.val(d.get("antialias", False)):
            raise self.fail(node, "antialiased bilinear resampling")
        scale = self._integer_scale(node, d, "bilinear upsampling")
        return self.emit(node, d, "upsample_bilinear", [self.tensor(node, d["input"])], attrs=dict(scale=scale))

    def op_pixel_shuffle(self, node, d):
        x = self.tensor(node, d["input"])
        r = int(self.val(d["upscale_factor"]))
        if self.rank(d["input"]) != 4 or r < 1:
            raise self.fail(node, "pixel_shuffle of an NCHW tensor by a positive factor")
        return x if r == 1 else self.emit(node, d, "depth_to_space", [x], attrs=dict(block=r))

    def op_conv_transpose(self, node, d):
        """A transposed convolution whose kernel equals its stride (the usual U-Net decoder step):
        each input pixel writes its own k x k output block, which is a 1x1 convolution to
        C_out * k * k channels followed by pixel_shuffle(k)."""
        x = self.tensor(node, d["input"])
        w = self.param(node, d["weight"], "weight")  # (C_in, C_out / groups, kh, kw)
        k, s = _pair(w.shape[2:]), _pair(self.val(d.get("stride", 1)))
        pad, out_pad = _pair(self.val(d.get("padding", 0))), _pair(self.val(d.get("output_padding", 0)))
        groups, dil = int(self.val(d.get("groups", 1))), _pair(self.val(d.get("dilation", 1)))
        if (k != s or k[0] != k[1] or pad != (0, 0) or out_pad != (0, 0) or groups != 1 or dil != (1, 1)
                or self.val(d.get("padding_mode", "zeros")) != "zeros"):
            raise self.fail(node, f"transposed convolution with kernel {k}, stride {s}, padding {pad}, "
                                  f"output_padding {out_pad}, groups {groups}, dilation {dil}; only kernel == "
                                  "stride (square), no padding, groups 1 (else use nn.Upsample + Conv2d)")
        r, cout = k[0], w.shape[1]
        b = self.param(node, d.get("bias"), "bias")
        attrs, params = ir.block_conv_attrs_params(w.transpose(1, 2, 3, 0),  # (C_out, r, r, C_in)
                                                   np.zeros(cout, np.float32) if b is None else b)
        name = self.name_for(node, d)
        conv = ir.unique_name(name + "_blocks", self.used_names)
        self.nodes.append(ir.Node(conv, "conv2d", [x], conv, attrs=attrs, params=params))
        h, ww, _ = self.shapes[x]
        self.shapes[conv] = (h, ww, cout * r * r)
        self.nodes.append(ir.Node(name, "depth_to_space", [conv], name, attrs=dict(block=r)))
        self.shapes[name] = self.shape_of(node)
        return name

    def op_getitem(self, node, d):
        src, idx = d["input"], self.val(d["idx"])
        vsrc = self.values[src]
        if isinstance(vsrc, (tuple, list)):  # multi-output aten op: output 0 is the tensor
            if idx == 0:
                return self.tensor(node, src)
            raise self.fail(node, f"uses output {idx} of a multi-output op")
        if not isinstance(idx, tuple):
            idx = (idx,)
        if any(i is Ellipsis for i in idx):
            e = idx.index(Ellipsis)
            idx = idx[:e] + (slice(None),) * (vsrc.dim() - len(idx) + 1) + idx[e + 1:]
        idx = idx + (slice(None),) * (vsrc.dim() - len(idx))
        if vsrc.dim() != 4 or len(idx) != 4 or not all(isinstance(i, slice) for i in idx):
            raise self.fail(node, f"indexing {idx}; only x[:, :, a::s, b::s]")
        start, step = [], []
        for dim, sl in ((2, idx[2]), (3, idx[3])):
            st, sp = self._check_slice(node, sl.start, sl.stop, sl.step, vsrc.shape[dim], True)
            start.append(st)
            step.append(sp)
        for dim in (0, 1):
            self._check_slice(node, idx[dim].start, idx[dim].stop, idx[dim].step, vsrc.shape[dim], False)
        return self._emit_slice(node, d, src, tuple(start), tuple(step))

    def _check_slice(self, node, start, stop, step, size, spatial):
        start = 0 if start is None else int(self.val(start))
        step = 1 if step is None else int(self.val(step))
        stop = self.val(stop)
        full_stop = stop is None or int(stop) >= size
        if not spatial:
            if (start, step) != (0, 1) or not full_stop:
                raise self.fail(node, "slicing of the batch or channel dimension")
        elif start < 0 or start >= size or step < 1 or not full_stop:
            raise self.fail(node, "only x[:, :, a::s, b::s] slices (no crops, no negative indices)")
        return start, step

    def _emit_slice(self, node, d, src, start, step):
        x = self.tensor(node, src)
        if start == (0, 0) and step == (1, 1):
            return x
        h, w, _ = self.shapes[x]
        oh, ow, _ = self.shape_of(node)
        if (oh, ow) != (-(-(h - start[0]) // step[0]), -(-(w - start[1]) // step[1])):
            raise self.fail(node, "unexpected slice output shape")
        return self.emit(node, d, "slice", [x], attrs=dict(start=start, step=step))

    def op_slice(self, node, d):  # aten.slice.Tensor(x, dim, start, end, step)
        src = d["input"]
        vsrc = self.values[src]
        dim = int(self.val(d.get("dim", 0))) % vsrc.dim()
        size = vsrc.shape[dim]
        if vsrc.dim() != 4 or dim < 2:
            self._check_slice(node, d.get("start"), d.get("end"), d.get("step"), size, False)
            return self.tensor(node, src)
        st, sp = self._check_slice(node, d.get("start"), d.get("end"), d.get("step"), size, True)
        start = (st, 0) if dim == 2 else (0, st)
        step = (sp, 1) if dim == 2 else (1, sp)
        return self._emit_slice(node, d, src, start, step)

    def op_pad(self, node, d):
        x = self.tensor(node, d["input"])
        pad = [int(p) for p in self.val(d["pad"])]
        mode = self.val(d.get("mode", "constant"))
        value = self.val(d.get("value"))
        if mode != "constant" or (value is not None and value != 0):
            raise self.fail(node, f"pad mode {mode!r} value {value!r}; only zero padding")
        pad = pad + [0] * (8 - len(pad))
        if self.rank(d["input"]) != 4 or any(pad[:4]) or any(pad[6:]) or min(pad) < 0:
            raise self.fail(node, f"pad {self.val(d['pad'])}; only zero padding of channels")
        if pad[4] == pad[5] == 0:
            return x
        return self.emit(node, d, "pad_channels", [x], attrs=dict(before=pad[4], after=pad[5]))


def _merge_slices(g: ir.Graph) -> ir.Graph:
    """Compose slice -> slice chains (aten graphs slice one dimension at a time)."""
    nodes = list(g.nodes)
    changed = True
    while changed:
        changed = False
        for i, n in enumerate(nodes):
            if n.op != "slice":
                continue
            prod = next((p for p in nodes if p.output == n.inputs[0]), None)
            users = [u for u in nodes if prod is not None and prod.output in u.inputs]
            if prod is None or prod.op != "slice" or len(users) != 1 or prod.output == g.output:
                continue
            (a1h, a1w), (s1h, s1w) = prod.attrs["start"], prod.attrs["step"]
            (a2h, a2w), (s2h, s2w) = n.attrs["start"], n.attrs["step"]
            merged = ir.Node(n.name, "slice", list(prod.inputs), n.output,
                             attrs=dict(start=(a1h + a2h * s1h, a1w + a2w * s1w), step=(s1h * s2h, s1w * s2w)))
            nodes[i] = merged
            nodes.remove(prod)
            g.shapes.pop(prod.output, None)
            changed = True
            break
    return ir.Graph(nodes=nodes, shapes=g.shapes, input=g.input, output=g.output)


def _as_normalization(n) -> Normalization:
    if n is None:
        return DEFAULT_NORMALIZATION
    if isinstance(n, Normalization):
        return n
    if isinstance(n, dict):
        return Normalization(float(n.get("pixel_scale", 1 / 255)), tuple(np.atleast_1d(n.get("mean", 0.0))),
                             tuple(np.atleast_1d(n.get("std", 1.0))))
    raise TypeError(f"normalization must be a Normalization, a dict or None, not {type(n).__name__}")


def import_module(module, input_shape_hwc, normalization=None) -> ir.Graph:
    """Trace `module` (NCHW float input of H x W x C pixels, or (N, F) vectors when `input_shape_hwc`
    is (F,): see ``features``) into a float ir.Graph.

    `module` may be an nn.Module (put in eval mode, then traced with torch.fx, or
    torch.export if fx fails), a TorchScript ScriptModule, an fx GraphModule
    (e.g. ``ExportedProgram.module()``, whose example input shape must match) or
    an ``ExportedProgram``. `normalization` (``zoo.Normalization``, a dict with
    pixel_scale/mean/std, or None for pixel/255, mean 0, std 1) goes into the
    IR input node. Raises ``ir.GraphError`` naming the fx node for anything
    that cannot be represented.
    """
    norm = _as_normalization(normalization)
    vector = len(input_shape_hwc) == 1
    h, w, c = (1, 1, int(input_shape_hwc[0])) if vector else (int(v) for v in input_shape_hwc)
    expected = (c,) if vector else (c, h, w)
    if isinstance(module, torch.export.ExportedProgram):
        module = module.module()
    batch = 2
    if isinstance(module, torch.fx.GraphModule):
        ph = [n for n in module.graph.nodes if n.op == "placeholder"]
        val = ph[0].meta.get("val") if len(ph) == 1 else None
        if val is not None and hasattr(val, "shape"):
            shape = tuple(int(s) for s in val.shape)
            if shape[1:] != expected:
                raise ir.GraphError(f"the exported program expects input shape {shape}, not "
                                    + (f"{c} features" if vector else f"H x W x C = {h} x {w} x {c} (NCHW)"))
            batch = shape[0]
    example = torch.rand(batch, *expected) * 2 - 1

    if isinstance(module, torch.jit.ScriptModule):
        gm, aten_names = _torchscript_to_fx(module, example), True
    elif isinstance(module, torch.fx.GraphModule):
        gm = module
        aten_names = any(isinstance(n.target, torch._ops.OpOverload) for n in gm.graph.nodes)
    else:
        module.eval()
        aten_names = False
        try:
            gm = torch.fx.symbolic_trace(module)
        except Exception as e:  # noqa: BLE001 - fall back to torch.export, report both on failure
            try:
                with _torch_logs_kept():
                    gm = torch.export.export(module, (example,), strict=False).module()
                aten_names = True
            except Exception as e2:  # noqa: BLE001
                raise ir.GraphError(f"cannot trace the model: torch.fx: {type(e).__name__}: {_first_line(e)}; "
                                    f"torch.export: {type(e2).__name__}: {_first_line(e2)}") from e2
    return _Importer(gm, example, norm, aten_names).run()
