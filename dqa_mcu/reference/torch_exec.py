"""PyTorch executor for the IR: a fast float simulation of the deployable quantization.

``TorchExec(graph, plan)`` runs an IR graph (imported or optimized) in float32
PyTorch, NCHW channels_last, vectorized over the batch. Without a plan it is
the float model (it matches ``float_exec.run_float``). With a plan (tensor
name -> ``TensorQuant``) every planned tensor is fake-quantized exactly as the
integer reference stores it (docs/spec.md sections 1-4):

    u = clamp(floor(real / storage_step + 1/2), lo, hi)    # round half up, per channel
    real' = u * storage_step

with the per-channel storage step, range, signedness and activation clamps of
the QModel, DQA important channels at n + m bits on the fine step, the others
at n bits. The pixel input is quantized like the int8 input LUT (spec 5.1).
Weights stay float32 (``weights="float"``, the fast path used by the channel
searches) or are the QModel's int8 weights and integer biases
(``TorchExec.from_qmodel(..., weights="int8")``), which leaves only the
requantization multipliers' rounding (<= 2^-30 relative) and float32
accumulation order between the simulation and the integer reference.

Speed: each tensor is carried in *units* of a fixed per-channel step (its
n-bit scale), and every consumer folds the units of its input and output into
its weights, so storing a tensor costs ``floor_`` + ``clamp_`` in place (the
1/2 of round-half-up is folded into the bias). Use ``torch.set_num_threads(1)``
and one Python thread per core for the best throughput on a busy machine
(OpenMP barriers stall badly when other processes share the cores): see
``parallel_map``.

Building a plan: ``plan_from_qmodel(qmodel)``, or without running quantize()
(no Huffman fitting): ``greedy.quant_params(graph, calib, config)`` gives, per stored
tensor, both the direct n-bit and the all-important (n + m)-bit parameters and
``TensorQuant.mix(important)`` selects per channel.
"""
from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np
import torch
import torch.nn.functional as F

from dqa_mcu import ir

__all__ = ["TensorQuant", "TorchExec", "plan_from_qmodel", "stored_tensors", "parallel_map", "single_thread"]

COPY_OPS = ("maxpool", "concat", "upsample_nearest", "slice", "flatten", "depth_to_space")
LINEAR_OPS = ("conv2d", "linear", "add", "avgpool", "global_avgpool", "upsample_bilinear", "mul")
# the "activation" op's functions (ir.TABLE_FUNCTIONS); also what quantize builds its tables from
TABLE_FUNCTIONS = {"sigmoid": torch.sigmoid, "hardsigmoid": F.hardsigmoid, "hardswish": F.hardswish,
                   "tanh": torch.tanh, "silu": F.silu}
CL = torch.channels_last


@dataclass
class TensorQuant:
    """How one stored tensor is quantized, per channel (numpy float64 arrays of length C)."""
    step: np.ndarray  # real value of one storage-domain step
    lo: np.ndarray  # storage-domain range after the activation (spec section 4)
    hi: np.ndarray

    def mix(self, other: "TensorQuant", use_other: np.ndarray) -> "TensorQuant":
        """Per channel: `other` where `use_other`, else self (e.g. DQA important channels)."""
        w = np.asarray(use_other, dtype=bool)
        return TensorQuant(np.where(w, other.step, self.step), np.where(w, other.lo, self.lo),
                           np.where(w, other.hi, self.hi))


def stored_tensors(graph: ir.Graph) -> list[str]:
    """The tensors quantize() gives their own n-bit quantizer (the DQA quantization
    points), in graph order: conv/linear/add/pool outputs except the graph output."""
    return [n.output for n in graph.nodes
            if n.op in LINEAR_OPS and n.output != graph.output]


def plan_from_qmodel(qmodel) -> dict[str, TensorQuant]:
    """The quantizers of a QModel's stored tensors (not the input, output or aliases)."""
    plan = {}
    for node in qmodel.nodes:
        t = qmodel.tensors[node.output]
        if node.op in LINEAR_OPS and node.output != qmodel.output:
            plan[node.output] = TensorQuant(t.storage_step.astype(np.float64).copy(),
                                            node.arrays["out_min"].astype(np.float64),
                                            node.arrays["out_max"].astype(np.float64))
    return plan


def _t(a, shape=None) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(a, dtype=np.float32))
    return t.reshape(shape) if shape is not None else t


def _view_add(out: torch.Tensor, b: torch.Tensor, stride: int, offset: int, ratio: torch.Tensor | None) -> None:
    """out[:, offset:offset + Cb] += b[:, :, ::s, ::s] * ratio (option-A view, in place)."""
    if stride != 1:
        b = b[:, :, ::stride, ::stride]
    if b.shape[2:] != out.shape[2:] or offset + b.shape[1] > out.shape[1]:
        raise ir.GraphError(f"residual view of shape {tuple(b.shape[1:])} (offset {offset}) "
                            f"does not fit {tuple(out.shape[1:])}")
    dst = out if offset == 0 and b.shape[1] == out.shape[1] else out[:, offset:offset + b.shape[1]]
    if ratio is None:
        dst += b
    else:
        dst.addcmul_(b, ratio)


class TorchExec:
    """A compiled IR graph. ``plan`` fixes which tensors are quantized; their
    quantizers (steps, ranges) can be changed later with ``set_quant`` as long
    as the *units* (fixed at construction) stay: that is what the channel
    searches do, one tensor at a time."""

    def __init__(self, graph: ir.Graph, plan: dict[str, TensorQuant] | None = None,
                 units: dict[str, np.ndarray] | None = None, qmodel=None):
        self.graph = graph
        self.plan = dict(plan or {})
        self.qmodel = qmodel
        self.quantize_input = bool(self.plan) or qmodel is not None
        self.last_use: dict[str, int] = {}
        for i, n in enumerate(graph.nodes):
            for t in n.inputs:
                self.last_use[t] = i
        self.last_use[graph.output] = len(graph.nodes)
        inp = graph.nodes[0]
        if inp.op != "input":
            raise ir.GraphError("the first node must be the 'input' node")
        mean = np.asarray(inp.params["mean"], dtype=np.float64)
        std = np.asarray(inp.params["std"], dtype=np.float64)
        self._in_scale = _t(inp.attrs["pixel_scale"] / std, (1, -1, 1, 1))
        self._in_shift = _t(-mean / std, (1, -1, 1, 1))
        # units: the per-channel real value of one unit of the carried representation
        self.units: dict[str, np.ndarray] = {}
        if self.quantize_input:
            x = np.arange(256.0)[None, :] * inp.attrs["pixel_scale"] - mean[:, None]
            x /= std[:, None]
            self._in_step = np.maximum(np.abs(x).max(axis=1), 1e-12) / 127.0
            self.units[graph.input] = self._in_step
        else:
            self.units[graph.input] = np.ones(graph.shapes[graph.input][2])
        units = units or {}
        for n in graph.nodes[1:]:
            c = graph.shapes[n.output][2]
            if n.output in units:
                self.units[n.output] = np.asarray(units[n.output], dtype=np.float64)
            elif n.output in self.plan:
                self.units[n.output] = self.plan[n.output].step.copy()
            elif n.op in ("maxpool", "upsample_nearest", "slice"):
                self.units[n.output] = self.units[n.inputs[0]]
            elif n.op == "concat":
                self.units[n.output] = np.concatenate([self.units[i] for i in n.inputs])
            elif n.op == "depth_to_space":  # the quantizer gives each block of channels one step
                self.units[n.output] = self.units[n.inputs[0]][::n.attrs["block"] ** 2]
            elif n.op == "flatten":
                h, w, _ = graph.shapes[n.inputs[0]]
                self.units[n.output] = np.tile(self.units[n.inputs[0]], h * w)
            elif n.op == "pad_channels":
                a = n.attrs
                self.units[n.output] = np.concatenate([np.ones(a["before"]), self.units[n.inputs[0]],
                                                       np.ones(a["after"])])
            else:
                self.units[n.output] = np.ones(c)
        self._index = {n.name: i for i, n in enumerate(graph.nodes)}
        self._prep: dict[str, dict] = {}
        self._quant: dict[str, dict] = {}
        for n in graph.nodes[1:]:
            self._prep[n.name] = self._prepare(n)
        for name, q in self.plan.items():
            self.set_quant(name, q)

    # -- construction ----------------------------------------------------------
    @classmethod
    def from_qmodel(cls, graph: ir.Graph, qmodel, weights: str = "float") -> "TorchExec":
        """Simulate `qmodel` (quantized from `graph`). weights: "float" (the float
        graph's) or "int8" (the QModel's integer weights and biases)."""
        if weights not in ("float", "int8"):
            raise ValueError(f"weights must be 'float' or 'int8', not {weights!r}")
        plan = plan_from_qmodel(qmodel)
        return cls(graph, plan, qmodel=qmodel if weights == "int8" else None)

    def _weights(self, n: ir.Node) -> tuple[np.ndarray, np.ndarray]:
        """Real-valued weights (OHWI / (Cout, Cin)) and bias of a conv/linear node."""
        if self.qmodel is None:
            return (np.asarray(n.params["weight"], dtype=np.float64),
                    np.asarray(n.params["bias"], dtype=np.float64))
        qn = next(q for q in self.qmodel.nodes if q.name == n.name)
        out_t = self.qmodel.tensors[n.output]
        in_t = self.qmodel.tensors[n.inputs[0]]
        real_mult = qn.arrays["multiplier"] / 2.0 ** qn.arrays["shift"]
        w_scale = real_mult * out_t.storage_step  # real value of one accumulator step
        w = qn.arrays["weight"].astype(np.float64)
        in_step = np.asarray(in_t.fine_step, dtype=np.float64)  # the input LUT's step for the input
        if n.op == "linear":
            real = w * w_scale[:, None] / in_step[None, :]
        else:
            g = n.attrs["groups"]
            cout, cin_g = w.shape[0], w.shape[3]
            idx = (np.arange(cout) // (cout // g))[:, None] * cin_g + np.arange(cin_g)[None, :]
            real = w * w_scale[:, None, None, None] / in_step[idx][:, None, None, :]
        return real, qn.arrays["bias"].astype(np.float64) * w_scale

    def _prepare(self, n: ir.Node) -> dict:
        a, p = n.attrs, {}
        u_out = self.units[n.output]
        if n.op in ("conv2d", "linear"):
            w, b = self._weights(n)
            u_in = self.units[n.inputs[0]]
            if n.op == "conv2d":
                g = a["groups"]
                cout, cin_g = w.shape[0], w.shape[3]
                idx = (np.arange(cout) // (cout // g))[:, None] * cin_g + np.arange(cin_g)[None, :]
                w = w * u_in[idx][:, None, None, :] / u_out[:, None, None, None]
                p["weight"] = torch.from_numpy(w.transpose(0, 3, 1, 2).astype(np.float32)).contiguous(
                    memory_format=CL)
                pt, pb, pl, pr = a["padding"]
                p["sym_pad"] = (pt, pl) if (pt == pb and pl == pr) else None
                p["pad"] = (pl, pr, pt, pb)
            else:
                h, wd, c = self.graph.shapes[n.inputs[0]]
                w = w * u_in[None, :] / u_out[:, None]
                p["weight"] = torch.from_numpy(w.astype(np.float32))
                p["hwc"] = (h, wd, c)
            p["bias"] = b / u_out
            p["bias_t"] = _t(p["bias"])
            if len(n.inputs) > 1:
                p["res_ratio"] = self._ratio(n.output, n.inputs[1], a.get("residual_channel_offset", 0))
        elif n.op == "add":
            p["a_ratio"] = self._ratio(n.output, n.inputs[0], 0)
            p["res_ratio"] = self._ratio(n.output, n.inputs[1], a.get("b_channel_offset", 0))
            if a.get("b_sign", 1) == -1:  # a - b
                ratio = p["res_ratio"]
                p["res_ratio"] = -ratio if ratio is not None else _t(-np.ones(self.graph.shapes[n.inputs[1]][2]),
                                                                       (1, -1, 1, 1))
        elif n.op in ("avgpool", "global_avgpool", "upsample_bilinear"):
            p["ratio"] = self._ratio(n.output, n.inputs[0], 0)
        elif n.op == "mul":
            r = self.units[n.inputs[0]] * self.units[n.inputs[1]] / u_out
            p["ratio"] = None if np.allclose(r, 1.0, rtol=0, atol=0) else _t(r, (1, -1, 1, 1))
        elif n.op == "batchnorm":
            q = n.params
            scale = q["gamma"] / np.sqrt(q["var"] + a["eps"])
            u_in = self.units[n.inputs[0]]
            p["scale"] = _t(scale * u_in / u_out, (1, -1, 1, 1))
            p["shift"] = _t((q["beta"] - q["mean"] * scale) / u_out, (1, -1, 1, 1))
        elif n.op in ("relu", "relu6", "leaky_relu", "clamp"):
            if not np.allclose(self.units[n.inputs[0]], 1.0):
                raise ir.GraphError(f"node {n.name!r}: a separate {n.op} after a quantized tensor "
                                    "(run the graph passes first)")
        return p

    def _ratio(self, out: str, src: str, offset: int) -> torch.Tensor | None:
        """Per channel of `src`: unit(src) / unit(out channel it lands on); None if all 1."""
        u_src = self.units[src]
        u_out = self.units[out][offset:offset + len(u_src)]
        r = u_src / u_out
        return None if np.allclose(r, 1.0, rtol=0, atol=0) else _t(r, (1, -1, 1, 1))

    def set_quant(self, name: str, q: TensorQuant | None) -> None:
        """(Re)define the quantizer of stored tensor `name` (its units stay as built)."""
        node = self.graph.producer(name)
        bias = self._prep[node.name].get("bias")
        if q is None:
            self._quant.pop(name, None)
            self.plan.pop(name, None)
            if bias is not None:
                self._prep[node.name]["bias_t"] = _t(bias)
            return
        self.plan[name] = q
        unit = self.units[name]
        ratio = unit / q.step  # storage steps per unit
        simple = np.allclose(ratio, 1.0, rtol=1e-12, atol=0)
        d = {"simple": simple}
        lo, hi = q.lo.astype(np.float64), q.hi.astype(np.float64)
        if simple and np.all(lo == lo[0]) and np.all(hi == hi[0]):
            d["scalar"] = (float(lo[0]), float(hi[0]))
        else:
            d["lo"] = _t(lo, (1, -1, 1, 1))
            d["hi"] = _t(hi, (1, -1, 1, 1))
        if not simple:
            d["to_steps"] = _t(ratio, (1, -1, 1, 1))
            d["to_units"] = _t(1.0 / ratio, (1, -1, 1, 1))
        self._quant[name] = d
        if bias is not None:  # round half up: + 1/2 folded into the bias when storage step == unit
            self._prep[node.name]["bias_t"] = _t(bias + (0.5 if simple else 0.0))

    # -- execution ---------------------------------------------------------------
    def input(self, pixels: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 NHWC pixels -> the input tensor (NCHW channels_last, in units)."""
        x = torch.as_tensor(np.asarray(pixels)).permute(0, 3, 1, 2).float().contiguous(memory_format=CL)
        x = x * self._in_scale + self._in_shift
        if self.quantize_input:
            x = x * _t(1.0 / self._in_step, (1, -1, 1, 1))
            x = torch.floor(x + 0.5).clamp_(-127, 127)
        return x

    def preact(self, n: ir.Node, xs: list[torch.Tensor]) -> torch.Tensor:
        """Node `n`'s output before its activation and storage quantization, in output units
        (for a stored tensor with a simple quantizer: including the + 1/2 of rounding)."""
        a, p, op = n.attrs, self._prep[n.name], n.op
        x = xs[0]
        if op == "conv2d":
            if p["sym_pad"] is not None:
                y = F.conv2d(x, p["weight"], p["bias_t"], a["stride"], p["sym_pad"], a["dilation"], a["groups"])
            else:
                y = F.conv2d(F.pad(x, p["pad"]), p["weight"], p["bias_t"], a["stride"], 0, a["dilation"],
                             a["groups"])
            if len(xs) > 1:
                _view_add(y, xs[1], a.get("residual_stride", 1), a.get("residual_channel_offset", 0),
                          p["res_ratio"])
            return y
        if op == "linear":
            h, w, c = p["hwc"]
            flat = x.reshape(x.shape[0], -1) if h * w == 1 else x.permute(0, 2, 3, 1).reshape(x.shape[0], -1)
            y = torch.addmm(p["bias_t"], flat, p["weight"].T)
            return y.reshape(y.shape[0], -1, 1, 1)
        if op == "add":
            y = x * p["a_ratio"] if p["a_ratio"] is not None else x.clone()
            _view_add(y, xs[1], a.get("b_stride", 1), a.get("b_channel_offset", 0), p["res_ratio"])
            return self._half(n, y)
        if op == "global_avgpool":
            y = x.mean(dim=(2, 3), keepdim=True)
            return self._half(n, y * p["ratio"] if p["ratio"] is not None else y)
        if op == "avgpool":
            kh, kw = a["kernel"]
            pt, pb, pl, pr = a["padding"]
            if any(a["padding"]):
                x = F.pad(x, (pl, pr, pt, pb))
            y = F.avg_pool2d(x, (kh, kw), a["stride"])
            return self._half(n, y * p["ratio"] if p["ratio"] is not None else y)
        if op == "mul":
            y = x * xs[1]
            return self._half(n, y * p["ratio"] if p["ratio"] is not None else y)
        if op == "upsample_bilinear":
            y = F.interpolate(x, scale_factor=a["scale"], mode="bilinear", align_corners=False)
            return self._half(n, y * p["ratio"] if p["ratio"] is not None else y)
        if op == "batchnorm":
            return x * p["scale"] + p["shift"]
        raise ir.GraphError(f"node {n.name!r}: op {op!r} has no pre-activation form")

    def _half(self, n: ir.Node, y: torch.Tensor) -> torch.Tensor:
        q = self._quant.get(n.output)
        return y.add_(0.5) if q is not None and q["simple"] else y

    def finish(self, n: ir.Node, y: torch.Tensor) -> torch.Tensor:
        """Activation and storage quantization of a pre-activation (in place when possible)."""
        q = self._quant.get(n.output)
        act = n.attrs.get("act", "none")
        if act == "leaky_relu":  # positively homogeneous: units and steps commute with it
            half = 0.5 if q is not None and q["simple"] else 0.0  # round half up's 1/2 is in the bias
            y = F.leaky_relu(y.sub_(half), n.attrs["negative_slope"]).add_(half)
        if q is None:
            lo, hi = ir.act_bounds(n.attrs)
            u = self.units[n.output]
            if (lo, hi) == (-np.inf, np.inf):
                return y
            if np.allclose(u, 1.0):
                y.clamp_(None if lo == -np.inf else lo, None if hi == np.inf else hi)
            else:  # bounds in the tensor's units, per channel
                if lo > -np.inf:
                    torch.maximum(y, _t(lo / u, (1, -1, 1, 1)), out=y)
                if hi < np.inf:
                    torch.minimum(y, _t(hi / u, (1, -1, 1, 1)), out=y)
            return y
        if not q["simple"]:
            y = y * q["to_steps"]
            y.add_(0.5)
        y.floor_()
        if "scalar" in q:
            y.clamp_(*q["scalar"])
        else:
            torch.maximum(y, q["lo"], out=y)
            torch.minimum(y, q["hi"], out=y)
        if not q["simple"]:
            y.mul_(q["to_units"])
        return y

    def run_node(self, n: ir.Node, env: dict[str, torch.Tensor]) -> torch.Tensor:
        xs = [env[t] for t in n.inputs]
        op, a = n.op, n.attrs
        if op in LINEAR_OPS + ("batchnorm",):
            return self.finish(n, self.preact(n, xs))
        x = xs[0]
        if op == "relu":
            return torch.relu(x)
        if op == "relu6":
            return x.clamp(0, 6)
        if op == "clamp":
            return x.clamp(a["clamp_min"], a["clamp_max"])
        if op == "leaky_relu":
            return F.leaky_relu(x, a["negative_slope"])
        if op == "activation":  # its output is never in a plan: real values (units 1)
            return TABLE_FUNCTIONS[a["function"]](self.to_real(n.inputs[0], x))
        if op == "maxpool":
            kh, kw = a["kernel"]
            pt, pb, pl, pr = a["padding"]
            if any(a["padding"]):
                x = F.pad(x, (pl, pr, pt, pb), value=float("-inf"))
            return F.max_pool2d(x, (kh, kw), a["stride"])
        if op == "flatten":
            return x.permute(0, 2, 3, 1).reshape(x.shape[0], -1, 1, 1)
        if op == "concat":
            return torch.cat(xs, dim=1)
        if op == "upsample_nearest":
            s = a["scale"]
            sh, sw = (s, s) if np.isscalar(s) else s
            return x.repeat_interleave(sh, dim=2).repeat_interleave(sw, dim=3)
        if op == "depth_to_space":
            return F.pixel_shuffle(x, a["block"]).contiguous(memory_format=CL)
        if op == "slice":
            (h0, w0), (sh, sw) = a["start"], a["step"]
            return x[:, :, h0::sh, w0::sw]
        if op == "pad_channels":
            return F.pad(x, (0, 0, 0, 0, a["before"], a["after"]))
        raise ir.GraphError(f"node {n.name!r}: the torch executor does not support op {op!r}")

    def to_real(self, name: str, x: torch.Tensor) -> torch.Tensor:
        u = self.units[name]
        return x if np.allclose(u, 1.0) else x * _t(u, (1, -1, 1, 1))

    def run(self, env: dict[str, torch.Tensor], nodes: Iterable[ir.Node], keep: set[str] = frozenset()) -> dict:
        """Run `nodes` (in order) on `env` (updated in place); frees tensors after their last use
        unless in `keep`."""
        for n in nodes:
            env[n.output] = self.run_node(n, env)
            i = self._index[n.name]
            for t in n.inputs:
                if self.last_use.get(t, -1) <= i and t not in keep:
                    env.pop(t, None)
        return env

    def forward_batch(self, pixels, collect: Callable[[str, torch.Tensor], None] | None = None) -> torch.Tensor:
        """One batch through the graph; `collect(name, values)` sees every tensor as it is produced
        (NCHW, in units: real values for the float model). Do not modify what it is given."""
        env = {self.graph.input: self.input(pixels)}
        if collect is None:
            self.run(env, self.graph.nodes[1:])
        else:
            collect(self.graph.input, env[self.graph.input])
            for n in self.graph.nodes[1:]:
                self.run(env, [n])
                collect(n.output, env[n.output])
        out = self.to_real(self.graph.output, env[self.graph.output])
        return out.reshape(out.shape[0], -1) if out.shape[2:] == (1, 1) else out

    def logits(self, pixels: np.ndarray, batch: int = 100, threads: int | None = None,
               progress: Callable | None = None) -> np.ndarray:
        """(N, C) float32 logits (or NHWC outputs) for uint8 NHWC pixels."""
        starts = list(range(0, len(pixels), batch))

        def one(s):
            with torch.inference_mode():
                y = self.forward_batch(pixels[s:s + batch])
            y = y.numpy()
            return y if y.ndim == 2 else y.transpose(0, 2, 3, 1)
        return np.concatenate(parallel_map(one, starts, threads, progress))


@contextlib.contextmanager
def single_thread():
    """Intra-op threads = 1 for the duration (restored after): parallelize with threads instead."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def default_workers() -> int:
    import os
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def parallel_map(fn: Callable, items: list, workers: int | None = None, progress: Callable | None = None) -> list:
    """fn over items on `workers` Python threads, each with one intra-op torch thread
    (torch kernels release the GIL). Results in item order; `progress(k)` after each item."""
    workers = workers or default_workers()
    with single_thread():
        if workers == 1:
            out = []
            for it in items:
                out.append(fn(it))
                if progress:
                    progress(1)
            return out
        with ThreadPoolExecutor(workers) as ex:
            futures = [ex.submit(fn, it) for it in items]
            out = []
            for f in futures:
                out.append(f.result())
                if progress:
                    progress(1)
            return out
