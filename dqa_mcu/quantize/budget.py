"""Fit a quantized model into a memory budget by choosing each tensor's important channels.

Two budgets, for fixed n and m (dqa_mcu.quantize.recommend searches over n and m):

* `fit_arena`: SRAM bytes of the planned activation arena (`--memory-budget`);
* `fit_bits`: average stored bits per activation over all stored tensors
  (`--bits-budget`, the measure of `dqa-mcu eval` and of the paper comparison).

fit_arena. SRAM holds the arena, and the arena is the planner's peak under the
schedule the export runs (planner.DEFAULT_SCHEDULE unless told; a row-streamed
tensor costs its ring of rows, each with its own error-stream capacity): only
the tensors alive at the peak decide it. A uniform important ratio spends the
same extra bits everywhere. Here:

1. while the plan is over budget, the tensors alive at its peak give up their
   least important channels (in the ranking's order) one at a time, the
   tensor with the highest remaining ratio first;
2. then every other tensor takes as many important channels as fit under the
   budget (up to all of them): memory that is reserved anyway buys accuracy.
   Only instructions (more Huffman decoding) and stored bits grow.

fit_bits. The channels with the best whole-network score per element, in any
tensor, are important (`network_counts`), the largest share of all
activations that fits the average.

Sizes while searching are estimates (a tensor's error-stream capacities, whole
and per row, scale with its important channels at the bits per symbol measured
before; the schedule's segments are chosen once per estimate and kept); each
estimate is checked by quantizing for real and planning under the schedule,
Huffman tables included.
"""
from __future__ import annotations

import math
from dataclasses import replace
from itertools import groupby

import numpy as np

from dqa_mcu.codegen import planner
from dqa_mcu.ir import Graph
from dqa_mcu.qmodel import QModel
from dqa_mcu.quantize.calibrate import Calibration
from dqa_mcu.quantize.quantizer import QuantConfig, QuantizationError, channel_orders, quantize
from dqa_mcu.reference.evaluate import memory

MAX_ROUNDS = 8  # real quantizations; each shrinks further if the estimate fell short
SHARE_RESOLUTION = 1e-3  # of all activations: the bisection's stopping width


def fit_arena(graph: Graph, calib: Calibration, config: QuantConfig, calib_images: np.ndarray,
              budget_bytes: int, rankings: dict[str, np.ndarray] | None = None, log=print,
              schedule: str = planner.DEFAULT_SCHEDULE) -> QModel:
    """Quantize with `config`, then move important channels away from the arena
    peak and into the rest of the network so the arena planned under `schedule`
    is at most `budget_bytes` (a QuantizationError if it cannot be)."""
    orders = channel_orders(graph, calib, config, rankings)
    model = quantize(graph, calib, config, calib_images, rankings=orders)
    if not config.uses_dqa:
        _check_fits(planner.plan(model, schedule).arena_bytes, budget_bytes, config)
        return model
    default = {name: int(model.tensors[name].important.sum()) for name in orders}
    estimate = _Estimate(model, orders, schedule)
    estimate.shrink(budget_bytes, config)
    estimate.fill(budget_bytes, exclude={n for n, c in estimate.counts().items() if c < default[n]})
    for _ in range(MAX_ROUNDS):
        counts = estimate.counts()
        model = quantize(graph, calib, config, calib_images, rankings=orders, important_counts=counts)
        arena = planner.plan(model, schedule).arena_bytes
        if arena <= budget_bytes:
            log(f"memory budget {budget_bytes} bytes: arena {arena} bytes ({schedule} schedule); important "
                f"channels (uniform ratio {config.important_ratio} elsewhere): {_describe(model, counts, default)}")
            return model
        estimate = _Estimate(model, orders, schedule)  # measured capacities: shrink from the real sizes
        estimate.shrink(budget_bytes, config)
    raise QuantizationError(f"memory budget {budget_bytes} bytes: the arena is still {arena} bytes after "
                            f"{MAX_ROUNDS} rounds of lowering important ratios")


def fit_bits(graph: Graph, calib: Calibration, config: QuantConfig, calib_images: np.ndarray,
             budget_bits: float, rankings: dict[str, np.ndarray], scores: dict[str, np.ndarray],
             log=print) -> QModel:
    """Quantize with `config` and the largest network-wide share of important
    activations (by `scores`, whole-network channel scores) whose average stored
    bits per activation is at most `budget_bits` (a QuantizationError if even
    none fits)."""
    _check_bits(config.bits, budget_bits, config)  # no tensor is stored in fewer than n bits
    model = quantize(graph, calib, config, calib_images, rankings=rankings)  # measures bits per symbol
    if not config.uses_dqa:
        _check_bits(memory(model).bits_per_activation, budget_bits, config)
        return model
    estimate = _Estimate(model, rankings)
    shapes = {name: model.tensors[name].shape for name in scores}

    def estimated_bits(share: float) -> float:
        for name, count in network_counts(scores, shapes, share).items():
            estimate.set_count(name, count)
        return memory(estimate.model).bits_per_activation

    _check_bits(estimated_bits(0.0), budget_bits, config)
    low, high = 0.0, 1.0
    if estimated_bits(high) <= budget_bits:
        low = high
    while high - low > SHARE_RESOLUTION:
        mid = (low + high) / 2
        low, high = (mid, high) if estimated_bits(mid) <= budget_bits else (low, mid)
    for _ in range(MAX_ROUNDS):
        model = quantize(graph, calib, config, calib_images, rankings=rankings,
                         important_counts=network_counts(scores, shapes, low))
        bits = memory(model).bits_per_activation
        if bits <= budget_bits:
            log(f"bits budget {budget_bits:g} per activation: {bits:.3f} stored, {100 * important_share(model):.1f} % "
                f"of activations important (n = {config.bits}, m = {config.extra_bits})")
            return model
        low *= (budget_bits - config.bits) / (bits - config.bits)  # the extra bits scale with the share
    raise QuantizationError(f"bits budget {budget_bits:g}: still {bits:.3f} bits per activation after "
                            f"{MAX_ROUNDS} rounds of lowering the important share")


class _Estimate:
    """A model's tensors with editable important sets; stream capacities (whole and per row) scaled
    at each tensor's measured bits per error symbol; planned with the segments `schedule` chose for
    the model as measured."""

    def __init__(self, model: QModel, orders: dict[str, np.ndarray], schedule: str = "layer"):  # bits: no plan
        self.orders = orders
        self.tensors = {name: replace(t, important=t.important.copy()) for name, t in model.tensors.items()}
        self.model = QModel(model.nodes, self.tensors, model.input, model.output, model.config)
        self.segments, self.schedule = planner.choose_segments(model, schedule), schedule
        self.bits_per_symbol = {name: t.err_capacity_bits / t.important_count
                                for name, t in self.tensors.items() if name in orders and t.important.any()}
        # a row's symbols are 1/H of the tensor's; its longest row's capacity per symbol, measured
        self.row_bits_per_symbol = {name: self.tensors[name].err_row_capacity_bits * self.tensors[name].shape[0]
                                    / self.tensors[name].important_count for name in self.bits_per_symbol}
        # a tensor with no important channel yet: m bits per symbol, a Huffman code's usual worst case
        self.unmeasured = {name: self.tensors[name].extra_bits for name in orders if name not in self.bits_per_symbol}

    def plan(self) -> planner.MemoryPlan:  # as planner.plan() would, without the segment search
        return planner.plan_segments(self.model, self.segments, self.schedule,
                                     planner.one_pixel_convs(self.model, self.segments))

    def counts(self) -> dict[str, int]:
        return {name: int(self.tensors[name].important.sum()) for name in self.orders}

    def set_count(self, name: str, count: int) -> None:
        t = self.tensors[name]
        t.important = np.zeros_like(t.important)
        t.important[self.orders[name][:count]] = True
        per_symbol = self.bits_per_symbol.get(name, self.unmeasured.get(name))
        t.err_capacity_bits = math.ceil(per_symbol * t.important_count)
        per_row_symbol = self.row_bits_per_symbol.get(name, self.unmeasured.get(name))
        t.err_row_capacity_bits = math.ceil(per_row_symbol * t.important_count / t.shape[0])

    def shrink(self, budget_bytes: int, config: QuantConfig) -> None:
        while True:
            plan = self.plan()
            if plan.arena_bytes <= budget_bytes:
                return
            top = max(plan.blocks, key=lambda b: b.offset + b.size)
            alive = [self.tensors[b.name] for b in plan.blocks
                     if b.name in self.bits_per_symbol and self.tensors[b.name].important.any()
                     and b.first <= top.last and top.first <= b.last]
            if not alive:
                _check_fits(plan.arena_bytes, budget_bytes, config, top.name)
            t = max(alive, key=lambda t: (t.important.mean(), t.stream_bytes))
            self.set_count(t.name, int(t.important.sum()) - 1)

    def fill(self, budget_bytes: int, exclude: set[str]) -> None:
        """Raise each tensor's count (graph order) to the most that keeps the plan in budget."""
        for name in self.bits_per_symbol:
            if name in exclude:
                continue
            low, high = int(self.tensors[name].important.sum()), self.tensors[name].channels
            while low < high:  # the largest count that fits; the current one does
                mid = (low + high + 1) // 2
                self.set_count(name, mid)
                if self.plan().arena_bytes <= budget_bytes:
                    low = mid
                else:
                    high = mid - 1
            self.set_count(name, low)


def network_counts(scores: dict[str, np.ndarray], shapes: dict[str, tuple], share: float) -> dict[str, int]:
    """Important channels per tensor when `share` of all activations (network-wide) are important.

    `scores` are whole-network channel scores (greedy or taylor rankings'), so
    they compare across tensors; a channel costs its H x W elements, so
    channels are taken by score per element, best first, while they fit.
    With a tensor's channels ranked by score, its count selects its best ones.
    """
    items = []  # (score per element, elements, tensor)
    for name, channel_scores in scores.items():
        elements = shapes[name][0] * shapes[name][1]
        items += [(float(sc) / elements, elements, name) for sc in channel_scores]
    budget = share * sum(elements for _, elements, _ in items)
    counts = dict.fromkeys(scores, 0)
    used = 0
    for _, elements, name in sorted(items, key=lambda item: -item[0]):
        if used + elements <= budget:
            used += elements
            counts[name] += 1
    return counts


def important_share(model: QModel) -> float:
    """Share of all stored DQA-tensor activations that are important."""
    ts = [t for t in model.tensors.values() if t.extra_bits]
    return sum(t.important_count for t in ts) / max(sum(t.size for t in ts), 1)


def _describe(model: QModel, counts: dict[str, int], default: dict[str, int]) -> str:
    """Changed counts, consecutive tensors with the same new count as one run: 'a..b 4/16, c 32/32'."""
    changes = [(name, (count, model.tensors[name].channels) if count != default[name] else None)
               for name, count in counts.items()]
    runs = []
    for change, group in groupby(changes, key=lambda item: item[1]):
        if change is not None:
            names = [name for name, _ in group]
            span = names[0] if len(names) == 1 else f"{names[0]}..{names[-1]}"
            runs.append(f"{span} {change[0]}/{change[1]}")
    return ", ".join(runs) or "unchanged"


def _check_fits(arena: int, budget_bytes: int, config: QuantConfig, peak: str = "") -> None:
    if arena > budget_bytes:
        at = f" (peak at {peak})" if peak else ""
        raise QuantizationError(
            f"memory budget {budget_bytes} bytes is below the smallest arena at {config.bits} bits: "
            f"{arena} bytes{at} with no important channels left there; raise the budget or lower --bits")


def _check_bits(bits: float, budget_bits: float, config: QuantConfig) -> None:
    if bits > budget_bits:
        raise QuantizationError(
            f"bits budget {budget_bits:g} per activation is below {bits:.3f}, the average at n = {config.bits} "
            f"with no important channels; raise the budget or lower --bits")
