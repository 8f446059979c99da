"""Whole-network channel rankings: the paper's greedy search and a fast Taylor proxy.

Both return ``{tensor name: channel indices, most important first}`` for every
stored activation tensor (``torch_exec.stored_tensors``), ready for
``quantize(graph, calib, config, images, rankings=...)``, and both evaluate a
float simulation of *our deployable* quantization (``torch_exec``): every
stored tensor fake-quantized with the per-channel steps, clipping ranges and
signedness that ``quantize`` chooses for ``config``; DQA important channels at
n + m bits on their fine step, the others at n bits. Weights stay float32 in
these searches (int8 weights move the accuracy by a few tenths of a point and
would couple each tensor's weights to the next tensor's important set).

Greedy (``greedy_rankings``, the paper's method, arXiv 2412.09687)
------------------------------------------------------------------
Tensors are ranked in graph order. For tensor T, every channel c in turn is
made the only important channel of T and the top-1 accuracy of the whole
network on the calibration images is measured; channels are ranked by that
accuracy (ties: the local 'noise' criterion). Then T's top
``important_ratio`` channels are fixed as important and the search moves on,
so earlier tensors carry their chosen DQA sets and later tensors are direct
n-bit (``later="direct"``; ``later="float"`` leaves them unquantized). One
evaluation per channel: 1,200 for ResNet-32 (32 stored tensors). Without
labels the score is agreement with the FP32 model's top-1 (what a user without
labels has too).

What makes it fast (same results as re-running the network per candidate, up
to float32 summation order):

* the activations in front of T are cached (computed once for the whole
  search, advancing tensor by tensor); only the network after T runs per
  candidate;
* a candidate differs from T's direct quantization in one channel c by
  e_c = fine(T_c) - coarse(T_c), so T's convolution consumers get
  ``conv(coarse T) + conv_c(e_c)``: the first is computed once per image
  chunk, the second, for K candidates at once, is one grouped convolution
  (1 input channel per group), i.e. the cost of one convolution for all
  channels of T;
* candidates are stacked along the batch (K candidates x B images per call);
  channels whose e_c is zero on a chunk take the chunk's baseline result;
* each tensor is carried in units of its n-bit step with the steps folded into
  the weights, so storing a tensor is floor + clamp in place;
* inference_mode, channels_last float32, one intra-op thread per Python worker
  thread (OpenMP barriers stall on a shared machine).

Taylor (``taylor_rankings``, the fast everyday criterion)
--------------------------------------------------------
Making channel c important shrinks its rounding noise from step_n^2/12 to
step_(n+m)^2/12 (uniform rounding error, independent per element). To first
order the loss change caused by noise delta is g . delta, so the expected
squared loss perturbation removed is

    importance_c = (1 - (step_fine_c / step_c)^2) / 12 * sum_{images, positions} g_c^2 * [unclipped, nonzero]

with g = dL/dT (in units of the n-bit step) from one backward pass of the
quantized network (all stored tensors at direct n bits, straight-through
rounding), L the cross-entropy to the labels (or the FP32 top-1), and the
indicator excluding elements that quantize exactly (ReLU zeros) or are clipped
(their error does not shrink with more bits). This is the diagonal-Fisher /
OBD-style sensitivity used by HAWQ-like mixed-precision methods, applied per
channel. Why this one: it sees the whole network like the greedy search
(a channel feeding weights that the rest of the net amplifies ranks high;
the local 'noise' and 'range' criteria cannot see that), weights the images
that are close to a decision (large CE gradient) as the greedy accuracy does,
and costs one forward + backward pass over the images instead of 1,200
network evaluations.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from dqa_mcu import ir
from dqa_mcu.quantize.quantizer import activation_tensors, out_range
from dqa_mcu.quantize.ranking import GLOBAL_RANKINGS, rank_by_noise
from dqa_mcu.reference.torch_exec import TensorQuant, TorchExec, default_workers, parallel_map, stored_tensors

__all__ = ["greedy_rankings", "greedy_search", "taylor_rankings", "RankingResult", "save_rankings",
           "load_rankings", "SEARCHES", "compute_rankings", "RankingError", "taylor_search", "rankings_for",
           "QuantParams", "quant_params"]

RANKING_FORMAT = "dqa-mcu-rankings"


class RankingError(ValueError):
    """A ranking that cannot be computed or loaded; the message says why."""


@dataclass
class RankingResult:
    rankings: dict[str, np.ndarray]  # tensor -> channels, most important first
    scores: dict[str, np.ndarray] = field(default_factory=dict)  # tensor -> per-channel score
    meta: dict = field(default_factory=dict)


# -- the quantizers a search chooses between ----------------------------------------

@dataclass
class QuantParams:
    """Both candidate quantizers of one stored tensor: direct n-bit and important (n + m)-bit."""
    coarse: TensorQuant
    fine: TensorQuant
    signed: bool

    def with_important(self, important: np.ndarray) -> TensorQuant:
        return self.coarse.mix(self.fine, important)


def _quantizer(t, bounds: tuple[float, float]) -> TensorQuant:
    lo, hi = out_range(t, bounds)
    return TensorQuant(t.storage_step.copy(), lo.astype(np.float64), hi.astype(np.float64))


def quant_params(graph: ir.Graph, calib, config) -> dict[str, QuantParams]:
    """Per stored tensor: the direct n-bit quantizer and the all-important (n + m)-bit one
    that quantize() would choose for `config` (same clipping method and percentile)."""
    direct = activation_tensors(graph, calib, replace(config, extra_bits=0))
    if config.extra_bits > 0:
        every = activation_tensors(graph, calib, replace(config, important_ratio=1.0))
    else:
        every = direct
    out = {}
    for name in stored_tensors(graph):
        bounds = ir.act_bounds(graph.producer(name).attrs)
        d, e = direct[name], every[name]
        out[name] = QuantParams(_quantizer(d, bounds), _quantizer(e, bounds), bool(d.signed))
    return out



# -- shared helpers ----------------------------------------------------------------

def _reference_labels(graph: ir.Graph, images: np.ndarray, labels, workers,
                      regress: bool = False) -> tuple[np.ndarray, str]:
    """What the search scores against: class labels, FP32's top-1, or (`regress`: an image, mask or
    reconstruction output) FP32's outputs themselves."""
    if regress:
        return TorchExec(graph).logits(images, threads=workers).reshape(len(images), -1), "fp32-outputs"
    if labels is not None:
        if len(labels) != len(images):
            raise RankingError(f"{len(images)} images but {len(labels)} labels")
        return np.asarray(labels, dtype=np.int64), "labels"
    logits = TorchExec(graph).logits(images, threads=workers)
    return logits.argmax(axis=1), "fp32-agreement"


def _check(config):
    """The config the search quantizes with."""
    config.validate()
    if config.extra_bits <= 0:
        raise RankingError("a DQA channel ranking needs extra bits (m > 0): with m = 0 no channel is important")
    # the search's quantizers make all channels or none important, so no ranking enters them;
    # a whole-network name in config.rank has no local ranker for quantize's plan to call
    return replace(config, rank="noise") if config.rank in GLOBAL_RANKINGS else config


def _tiebreak(calib, name: str, params) -> np.ndarray:
    """Rank position by the local 'noise' criterion (0 = most important), for ties."""
    stats = calib.tensors[name]
    clip = params.coarse.step * params.coarse.hi.max()  # the n-bit clipping range
    order = rank_by_noise(stats, clip, None)
    pos = np.empty(len(order), dtype=np.int64)
    pos[order] = np.arange(len(order))
    return pos


def _order(scores: np.ndarray, tiebreak_pos: np.ndarray) -> np.ndarray:
    """Highest score first, ties by the tie-break position."""
    return np.lexsort((tiebreak_pos, -scores)).astype(np.int64)


def _macs(graph: ir.Graph, node: ir.Node) -> float:
    h, w, c = graph.shapes[node.output]
    if node.op == "conv2d":
        wt = node.params["weight"]
        return float(h * w * c * wt.shape[1] * wt.shape[2] * wt.shape[3])
    if node.op == "linear":
        return float(np.asarray(node.params["weight"]).size)
    return float(h * w * c)


# -- greedy ---------------------------------------------------------------------------

class _Greedy:
    def __init__(self, graph, calib, config, images, ref, later, chunk, samples, workers, show_progress):
        self.graph, self.calib, self.config = graph, calib, config
        self.images, self.ref = images, ref
        self.params = quant_params(graph, calib, config)
        self.targets = stored_tensors(graph)
        plan = {t: p.coarse for t, p in self.params.items()}
        self.ex = TorchExec(graph, plan)
        if later == "float":
            for t in self.targets:
                self.ex.set_quant(t, None)
        elif later != "direct":
            raise RankingError(f"later must be 'direct' or 'float', not {later!r}")
        self.later = later
        self.chunk, self.samples, self.workers = chunk, samples, workers
        self.show_progress = show_progress
        self.index = {n.name: i for i, n in enumerate(graph.nodes)}

    # which consumers of T take e_c as a cheap delta
    def _delta_nodes(self, T: str, suffix: list[ir.Node]) -> set[str]:
        changed = {T}
        out = set()
        for n in suffix:
            ins = n.inputs
            if not any(t in changed for t in ins):
                continue
            others_base = all(t not in changed for t in ins[1:])
            if ins[0] == T and others_base and (
                    (n.op == "conv2d" and n.attrs["groups"] == 1) or
                    (n.op == "linear" and tuple(self.graph.shapes[T][:2]) == (1, 1))):
                out.add(n.name)
            changed.add(n.output)
        return out

    def _cost(self, T: str) -> float:
        i = self.index[self.graph.producer(T).name]
        return sum(_macs(self.graph, n) for n in self.graph.nodes[i + 1:])

    def run(self) -> RankingResult:
        g, ex = self.graph, self.ex
        n_img = len(self.images)
        starts = list(range(0, n_img, self.chunk))
        envs = [None] * len(starts)

        def init(k):
            with torch.inference_mode():
                s = starts[k]
                envs[k] = {g.input: ex.input(self.images[s:s + self.chunk])}
        parallel_map(init, list(range(len(starts))), self.workers)

        total = sum(self._cost(t) * g.shapes[t][2] for t in self.targets) * n_img
        bar = tqdm(total=total, desc="greedy ranking", unit="MAC", unit_scale=True, disable=not self.show_progress,
                   bar_format="{l_bar}{bar}| {percentage:3.0f}% [{elapsed}<{remaining}] {postfix}")
        rankings, scores = {}, {}
        t0 = time.perf_counter()
        for i, node in enumerate(g.nodes[1:], start=1):
            if node.output in self.params:
                T = node.output
                bar.set_postfix_str(T)
                sc = self._rank_tensor(node, envs, starts, bar)
                order = _order(sc, _tiebreak(self.calib, T, self.params[T]))
                count = int(round(self.config.important_ratio * len(order)))
                important = np.zeros(len(order), dtype=bool)
                important[order[:count]] = True
                rankings[T], scores[T] = order, sc / n_img
                ex.set_quant(T, self.params[T].with_important(important))  # fixed from now on

            def step(k, node=node, i=i):
                with torch.inference_mode():
                    env = envs[k]
                    env[node.output] = ex.run_node(node, env)
                    for t in node.inputs:
                        if ex.last_use.get(t, -1) <= i:
                            env.pop(t, None)
            parallel_map(step, list(range(len(starts))), self.workers)
        bar.close()
        meta = {"method": "greedy", "images": int(n_img), "later": self.later,
                "seconds": round(time.perf_counter() - t0, 1), "bits": self.config.bits,
                "extra_bits": self.config.extra_bits, "important_ratio": self.config.important_ratio,
                "clip": self.config.clip}
        return RankingResult(rankings, scores, meta)

    def _rank_tensor(self, P: ir.Node, envs, starts, bar):
        """Per-channel score (correct count over all images) of tensor P.output."""
        g, ex = self.graph, self.ex
        T = P.output
        pq = self.params[T]
        C = g.shapes[T][2]
        i = self.index[P.name]
        suffix = g.nodes[i + 1:]
        delta_nodes = self._delta_nodes(T, suffix)
        # T's quantizers in units of its (coarse) step: unit == coarse step by construction
        unit = ex.units[T]
        r_f = unit / pq.fine.step
        sh = (1, -1, 1, 1)
        q_c = (torch.tensor(pq.coarse.lo, dtype=torch.float32).view(sh),
               torch.tensor(pq.coarse.hi, dtype=torch.float32).view(sh))
        q_f = (torch.tensor(pq.fine.lo, dtype=torch.float32).view(sh),
               torch.tensor(pq.fine.hi, dtype=torch.float32).view(sh),
               torch.tensor(r_f, dtype=torch.float32).view(sh))
        if not np.allclose(unit, pq.coarse.step):
            raise RankingError(f"tensor {T!r}: units differ from the n-bit step")
        saved = ex.plan.get(T)
        ex.set_quant(T, None)  # preact(P) without the + 1/2: raw value in units
        elems = max([int(np.prod(g.shapes[n.output])) for n in suffix] + [1])
        group = max(1, min(C, self.samples // max(1, self.chunk) * 16384 // elems))
        groups = [list(range(s, min(C, s + group))) for s in range(0, C, group)]
        cost_per = self._cost(T)
        ref = torch.as_tensor(self.ref)

        def chunk_scores(k):
            with torch.inference_mode():
                env = envs[k]
                s = starts[k]
                b = len(next(iter(env.values())))
                labels = ref[s:s + b]
                y = ex.preact(P, [env[t] for t in P.inputs])
                coarse = torch.floor(y + 0.5)
                torch.maximum(coarse, q_c[0], out=coarse)
                torch.minimum(coarse, q_c[1], out=coarse)
                fine = torch.floor(y * q_f[2] + 0.5)
                torch.maximum(fine, q_f[0], out=fine)
                torch.minimum(fine, q_f[1], out=fine)
                fine /= q_f[2]
                e = (fine - coarse).contiguous(memory_format=torch.channels_last)
                del fine, y
                live = (e.reshape(b, C, -1).abs().amax(dim=(0, 2)) > 0).tolist()
                base_env = dict(env)
                base_env[T] = coarse
                out = np.zeros(C)
                if not all(live):  # e_c = 0 on this chunk: the baseline (T direct) result
                    out[:] = self._suffix(base_env, suffix, T, None, None, None, delta_nodes, labels)[0]
                base_pre = {}
                for n in suffix:
                    if n.name in delta_nodes:
                        base_pre[n.name] = ex.preact(n, [base_env[t] for t in n.inputs])
                for chans in groups:
                    alive = [c for c in chans if live[c]]
                    if alive:
                        out[alive] = self._suffix(base_env, suffix, T, e, alive, base_pre, delta_nodes, labels)
                    bar.update(cost_per * len(chans) * b)
                return out

        results = parallel_map(chunk_scores, list(range(len(starts))), self.workers)
        ex.set_quant(T, saved)
        return np.sum(results, axis=0)

    def _suffix(self, base, suffix, T, e, chans, base_pre, delta_nodes, labels) -> np.ndarray:
        """Correct counts on one chunk of the K candidates `chans` (channel c of T made
        important), or of the baseline (T direct) when chans is None.

        `base` holds the chunk's unchanged tensors (batch B) and gains the values of
        suffix nodes that do not depend on T; candidates are stacked K x B."""
        ex = self.ex
        b = len(labels)
        K = 1 if chans is None else len(chans)
        last = {}
        for j, n in enumerate(suffix):
            for t in n.inputs:
                last[t] = j
        cand: dict[str, torch.Tensor] = {}
        for j, n in enumerate(suffix):
            if chans is None:
                cand[n.output] = ex.run_node(n, {t: cand[t] if t in cand else base[t] for t in n.inputs})
            elif not any(t == T or t in cand for t in n.inputs):
                if n.output not in base:
                    base[n.output] = ex.run_node(n, base)
            elif n.name in delta_nodes:
                cand[n.output] = ex.finish(n, self._delta(n, e, chans, base_pre[n.name]))
            else:
                xs = {}
                for t in n.inputs:
                    if t in cand:
                        xs[t] = cand[t]
                    elif t == T:
                        xs[t] = self._materialize(base[T], e, chans)
                    else:
                        xs[t] = base[t].repeat(K, 1, 1, 1) if K > 1 else base[t]
                cand[n.output] = ex.run_node(n, xs)
            for t in n.inputs:
                if last.get(t) == j and t in cand and t != self.graph.output:
                    del cand[t]
        out_name = self.graph.output
        logits = cand[out_name] if out_name in cand else base[out_name].repeat(K, 1, 1, 1)
        pred = logits.reshape(logits.shape[0], -1).argmax(dim=1).view(K, b)
        return (pred == labels.view(1, b)).sum(dim=1).numpy().astype(np.float64)

    @staticmethod
    def _materialize(coarse: torch.Tensor, e: torch.Tensor, chans: list[int]) -> torch.Tensor:
        """K copies of T's direct quantization, copy k with channel chans[k] made fine."""
        K = len(chans)
        x = coarse.repeat(K, 1, 1, 1)
        b = coarse.shape[0]
        for k, c in enumerate(chans):
            x[k * b:(k + 1) * b, c] += e[:, c]
        return x

    def _delta(self, n: ir.Node, e: torch.Tensor, chans: list[int], base_pre: torch.Tensor) -> torch.Tensor:
        """Pre-activation of consumer n for each candidate, (K*B, Cout, H, W) channels_last:
        base_pre + the contribution of e_c alone (one grouped convolution for all K)."""
        p = self.ex._prep[n.name]
        K, b = len(chans), e.shape[0]
        idx = torch.as_tensor(chans)
        if n.op == "linear":
            w = p["weight"][:, idx]  # (Cout, K)
            ec = e[:, idx, 0, 0]  # (B, K)
            d = ec.T[:, :, None] * w.T[:, None, :]  # (K, B, Cout)
            d += base_pre.reshape(1, b, -1)
            return d.reshape(K * b, -1, 1, 1)
        a = n.attrs
        w = p["weight"][:, idx]  # (Cout, K, kh, kw)
        cout = w.shape[0]
        wg = w.permute(1, 0, 2, 3).reshape(K * cout, 1, w.shape[2], w.shape[3]).contiguous(
            memory_format=torch.channels_last)
        x = e[:, idx].contiguous(memory_format=torch.channels_last)
        if p["sym_pad"] is not None:
            d = F.conv2d(x, wg, None, a["stride"], p["sym_pad"], a["dilation"], K)
        else:
            d = F.conv2d(F.pad(x, p["pad"]), wg, None, a["stride"], 0, a["dilation"], K)
        oh, ow = d.shape[2], d.shape[3]
        # d is (B, K*Cout, H, W) channels_last, i.e. memory (B, H, W, K, Cout): one pass
        # transposes it to candidate-major memory (K, B, H, W, Cout) and adds base_pre
        out = torch.empty((K, b, oh, ow, cout), dtype=d.dtype)
        torch.add(d.permute(0, 2, 3, 1).reshape(b, oh, ow, K, cout).permute(3, 0, 1, 2, 4),
                  base_pre.permute(0, 2, 3, 1).unsqueeze(0), out=out)
        return out.view(K * b, oh, ow, cout).permute(0, 3, 1, 2)


def greedy_search(graph: ir.Graph, calib, config, images: np.ndarray, labels: np.ndarray | None = None, *,
                  later: str = "direct", chunk: int = 50, samples: int = 256, workers: int | None = None,
                  show_progress: bool = True, regress: bool = False) -> RankingResult:
    """The paper's greedy ranking of every stored tensor's channels (module docstring).

    images: uint8 NHWC calibration images (the paper: 5,000 training images);
    labels: their classes, or None to score agreement with the FP32 top-1.
    chunk: images per cached chunk; samples: target batch of (candidate, image)
    pairs per call at 32x32x16-sized activations (scaled by activation size).
    """
    if regress:
        raise RankingError("the greedy search scores top-1 accuracy, which a model without class outputs does "
                           "not have: use --rank taylor (it follows the output error)")
    config = _check(config)
    workers = workers or default_workers()
    ref, scoring = _reference_labels(graph, images, labels, workers)
    result = _Greedy(graph, calib, config, images, ref, later, chunk, samples, workers, show_progress).run()
    result.meta["scoring"] = scoring
    return result


def greedy_rankings(graph: ir.Graph, calib, config, images: np.ndarray, labels: np.ndarray | None = None,
                    **kwargs) -> dict[str, np.ndarray]:
    """``greedy_search(...).rankings``: tensor -> channels, most important first."""
    return greedy_search(graph, calib, config, images, labels, **kwargs).rankings


# -- Taylor ---------------------------------------------------------------------------

def taylor_search(graph: ir.Graph, calib, config, images: np.ndarray, labels: np.ndarray | None = None, *,
                  batch: int = 100, workers: int | None = None, show_progress: bool = True,
                  regress: bool = False) -> RankingResult:
    """First-order (diagonal Fisher) sensitivity of the loss to each channel's rounding noise: the
    cross-entropy against the labels (or FP32's top-1), or with `regress` the squared error against
    FP32's outputs (an image, mask or reconstruction)."""
    config = _check(config)
    workers = workers or default_workers()
    t0 = time.perf_counter()
    ref, scoring = _reference_labels(graph, images, labels, workers, regress)
    params = quant_params(graph, calib, config)
    ex = TorchExec(graph, {t: p.coarse for t, p in params.items()})
    targets = list(params)
    gain = {t: (1.0 - (p.fine.step / p.coarse.step) ** 2) / 12.0 for t, p in params.items()}
    starts = list(range(0, len(images), batch))
    bar = tqdm(total=len(starts), desc="taylor ranking", disable=not show_progress, leave=False)

    def one(s):
        x = ex.input(images[s:s + batch])
        env = {graph.input: x}
        kept = {}
        for i, n in enumerate(graph.nodes[1:], start=1):
            if n.output in params:
                q = params[n.output].coarse
                pre = ex.preact(n, [env[t] for t in n.inputs]) - 0.5  # raw value in units
                lo = torch.tensor(q.lo, dtype=torch.float32).view(1, -1, 1, 1)
                hi = torch.tensor(q.hi, dtype=torch.float32).view(1, -1, 1, 1)
                clipped = torch.maximum(torch.minimum(pre, hi), lo)
                with torch.no_grad():
                    qv = torch.floor(pre + 0.5)
                    qv = torch.maximum(torch.minimum(qv, hi), lo)
                    mask = ((pre > lo) & (pre < hi)).float()
                y = clipped + (qv - clipped).detach()  # straight-through rounding
                if y.requires_grad:
                    y.retain_grad()
                else:  # nothing upstream needs a gradient
                    y = y.detach().requires_grad_()
                kept[n.output] = (y, mask)
            else:
                y = ex.run_node(n, env)
            env[n.output] = y
        logits = ex.to_real(graph.output, env[graph.output]).reshape(len(x), -1)
        target = torch.as_tensor(ref[s:s + batch])
        loss = F.mse_loss(logits, target, reduction="sum") if regress else \
            F.cross_entropy(logits, target, reduction="sum")
        loss.backward()
        out = {}
        for t, (y, mask) in kept.items():
            out[t] = ((y.grad ** 2) * mask).sum(dim=(0, 2, 3)).double().numpy()
        bar.update(1)
        return out

    parts = parallel_map(one, starts, workers)
    bar.close()
    rankings, scores = {}, {}
    for t in targets:
        sc = np.sum([p[t] for p in parts], axis=0) * gain[t]
        scores[t] = sc
        rankings[t] = _order(sc, _tiebreak(calib, t, params[t]))
    meta = {"method": "taylor", "images": int(len(images)), "scoring": scoring,
            "seconds": round(time.perf_counter() - t0, 1), "bits": config.bits, "extra_bits": config.extra_bits,
            "clip": config.clip}
    return RankingResult(rankings, scores, meta)


def taylor_rankings(graph: ir.Graph, calib, config, images: np.ndarray, labels: np.ndarray | None = None,
                    **kwargs) -> dict[str, np.ndarray]:
    return taylor_search(graph, calib, config, images, labels, **kwargs).rankings


SEARCHES = {"greedy": greedy_search, "taylor": taylor_search}
assert tuple(SEARCHES) == GLOBAL_RANKINGS


def compute_rankings(method: str, graph: ir.Graph, calib, config, images: np.ndarray,
                     labels: np.ndarray | None = None, **kwargs) -> RankingResult:
    """A whole-network ranking by name ('greedy' or 'taylor')."""
    try:
        fn = SEARCHES[method]
    except KeyError:
        raise RankingError(f"unknown whole-network ranking {method!r}; choose from "
                           f"{', '.join(SEARCHES)}") from None
    return fn(graph, calib, config, images, labels, **kwargs)


# -- files ----------------------------------------------------------------------------

def save_rankings(path: str | Path, result: RankingResult | dict) -> None:
    """One .npz: per tensor '<name>/order' (and '<name>/score'), metadata as JSON."""
    if isinstance(result, dict):
        result = RankingResult(result)
    arrays = {}
    for name, order in result.rankings.items():
        arrays[f"{name}/order"] = np.asarray(order, dtype=np.int64)
        if name in result.scores:
            arrays[f"{name}/score"] = np.asarray(result.scores[name], dtype=np.float64)
    header = {"format": RANKING_FORMAT, "version": 1, "tensors": list(result.rankings), "meta": result.meta}
    arrays["__rankings__"] = np.array(json.dumps(header, sort_keys=True))
    with open(path, "wb") as f:
        np.savez_compressed(f, **arrays)


def load_rankings(path: str | Path, graph: ir.Graph | None = None) -> RankingResult:
    """Read a rankings file (never unpickles); with `graph`, check names and channel counts."""
    try:
        data = np.load(path, allow_pickle=False)
        header = json.loads(str(data["__rankings__"]))
    except (OSError, ValueError, KeyError) as exc:
        raise RankingError(f"{path}: not a dqa-mcu rankings file ({exc})") from None
    if header.get("format") != RANKING_FORMAT:
        raise RankingError(f"{path}: not a dqa-mcu rankings file")
    rankings = {t: data[f"{t}/order"] for t in header["tensors"]}
    scores = {t: data[f"{t}/score"] for t in header["tensors"] if f"{t}/score" in data}
    if graph is not None:
        for t, order in rankings.items():
            if t not in graph.shapes:
                raise RankingError(f"{path}: tensor {t!r} is not in this model (a ranking of another model?)")
            c = graph.shapes[t][2]
            if sorted(order.tolist()) != list(range(c)):
                raise RankingError(f"{path}: ranking of {t!r} is not a permutation of its {c} channels "
                                   "(a ranking of another model?)")
        missing = [t for t in stored_tensors(graph) if t not in rankings]
        if missing:
            raise RankingError(f"{path}: no ranking for {len(missing)} of this model's tensors "
                               f"({', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''}); "
                               "a ranking of another model?")
    return RankingResult(rankings, scores, header.get("meta", {}))


def rankings_for(config, graph: ir.Graph, calib, images: np.ndarray, labels: np.ndarray | None = None, *,
                 path: str | Path | None = None, save: str | Path | None = None,
                 show_progress: bool = True, regress: bool = False) -> RankingResult | None:
    """The rankings ``quantize(..., rankings=)`` needs for ``config``: None for a local
    criterion (quantize ranks by itself); else read from ``path`` (checked against
    ``graph`` and ``config.rank``) or computed on ``images``; written to ``save``. ``regress``: the
    model's output is not class scores (see ``taylor_search``)."""
    if config.rank not in GLOBAL_RANKINGS:
        if path is not None:
            raise RankingError(f"{path}: a rankings file is for --rank {' or '.join(GLOBAL_RANKINGS)}, "
                               f"not the local criterion {config.rank!r}")
        return None
    if path is not None:
        result = load_rankings(path, graph)
        made_by = result.meta.get("method")
        if made_by not in (None, config.rank):  # None: a user's own ranking, saved from a dict
            raise RankingError(f"{path}: holds a {made_by} ranking, not {config.rank!r}")
    else:
        result = compute_rankings(config.rank, graph, calib, config, images, labels, show_progress=show_progress,
                                  regress=regress)
    if save is not None:
        save_rankings(save, result)
    return result
