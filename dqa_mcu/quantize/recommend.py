"""Recommend the configuration that wins at a memory budget: n, m and the important channels.

A budget is either SRAM bytes of the activation arena (`--memory-budget`) or
average stored bits per activation (`--bits-budget`). The candidates:

* direct quantization at the widest n that fits;
* DQA at that n and at n - 1, for every m, with the important channels fitted
  to the budget: network-wide by whole-network channel score for a bits budget
  (budget.fit_bits), away from the arena peak for an arena budget
  (budget.fit_arena).

Each candidate is quantized for real and scored on calibration images by the
mean KL divergence of its output distribution from FP32's: label-free, and far
less noisy than top-1 on a thousand images (top-1 is printed beside it). A
model whose output is an image, a mask or a reconstruction (``regress``) is
scored by its squared error relative to FP32's output power instead. The
lowest score wins. Test images are never used to choose.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from dqa_mcu.codegen import planner
from dqa_mcu.ir import Graph
from dqa_mcu.qmodel import QModel
from dqa_mcu.quantize import budget
from dqa_mcu.quantize.calibrate import Calibration
from dqa_mcu.quantize.greedy import RankingResult
from dqa_mcu.quantize.quantizer import QuantConfig, QuantizationError, quantize
from dqa_mcu.quantize.ranking import GLOBAL_RANKINGS
from dqa_mcu.reference import evaluate, dqa as reference

EXTRA_BITS = (1, 2, 3, 4)
MAX_BITS = 8
MIN_BITS = 2
MIN_EXTRA_BITS = 0.05  # per activation: less cannot buy DQA a useful share of important channels


@dataclass(frozen=True)
class Budget:
    arena_bytes: int | None = None  # SRAM of the planned arena
    bits: float | None = None  # average stored bits per activation

    def __post_init__(self):
        if (self.arena_bytes is None) == (self.bits is None):
            raise QuantizationError("give one budget: --memory-budget BYTES or --bits-budget BITS")
        if self.arena_bytes is not None and self.arena_bytes <= 0:
            raise QuantizationError(f"--memory-budget {self.arena_bytes}: give a positive byte count")
        if self.bits is not None and self.bits < MIN_BITS:
            raise QuantizationError(f"--bits-budget {self.bits:g}: activations take at least {MIN_BITS} bits")

    @property
    def flag(self) -> str:
        """The command-line option that sets this budget."""
        return f"--bits-budget {self.bits:g}" if self.bits is not None else f"--memory-budget {self.arena_bytes}"

    def __str__(self) -> str:
        if self.bits is not None:
            return f"{self.bits:g} bits per activation"
        return f"{self.arena_bytes} arena bytes"


@dataclass
class Candidate:
    label: str
    config: QuantConfig
    model: QModel | None = None  # None: nothing of this kind fits
    bits: float = math.nan  # average stored bits per activation
    arena_bytes: int = 0
    important_share: float = 0.0
    divergence: float = math.inf  # mean KL(FP32 || quantized), nats
    top1: float = math.nan  # % on the scoring images (agreement with FP32 without labels)
    why_not: str = ""


Ranker = Callable[[QuantConfig], RankingResult]  # whole-network: its scores compare across tensors


def candidates(graph: Graph, calib: Calibration, base: QuantConfig, calib_images: np.ndarray,
               limit: Budget, extra_bits=EXTRA_BITS, schedule: str = planner.DEFAULT_SCHEDULE) -> list[Candidate]:
    """The configurations worth fitting: direct at the widest n that fits (its arena planned under
    `schedule`), DQA at n and n - 1 with each m of `extra_bits`."""
    widest = _widest_direct(graph, calib, base, calib_images, limit, schedule)
    if widest is None:
        raise QuantizationError(f"memory budget of {limit}: not even direct {MIN_BITS}-bit activations fit")
    out = [Candidate(f"direct {widest}-bit", replace(base, bits=widest, extra_bits=0))]
    for n in range(widest, max(widest - 2, MIN_BITS - 1), -1):
        if n >= MAX_BITS or limit.bits is not None and limit.bits - n < MIN_EXTRA_BITS:
            continue
        out += [Candidate(f"DQA n={n} m={m}", replace(base, bits=n, extra_bits=m)) for m in extra_bits]
    return out


def _widest_direct(graph, calib, base, calib_images, limit: Budget, schedule: str) -> int | None:
    if limit.bits is not None:
        return min(int(limit.bits), MAX_BITS)
    for n in range(MAX_BITS, MIN_BITS - 1, -1):
        model = quantize(graph, calib, replace(base, bits=n, extra_bits=0), calib_images)
        if planner.plan(model, schedule).arena_bytes <= limit.arena_bytes:
            return n
    return None


def fit(candidate: Candidate, graph: Graph, calib: Calibration, calib_images: np.ndarray, limit: Budget,
        rank: Ranker, log=print, schedule: str = planner.DEFAULT_SCHEDULE) -> None:
    """Quantize the candidate into the budget, arenas planned under `schedule`; why_not says why it
    could not be."""
    config = candidate.config
    ranked = rank(config) if config.uses_dqa else None
    rankings = ranked.rankings if ranked else None
    try:
        if limit.bits is not None:
            candidate.model = budget.fit_bits(graph, calib, config, calib_images, limit.bits, rankings,
                                              ranked.scores if ranked else None, log=log)
        else:
            candidate.model = budget.fit_arena(graph, calib, config, calib_images, limit.arena_bytes,
                                               rankings, log=log, schedule=schedule)
    except QuantizationError as exc:
        candidate.why_not = str(exc)
        return
    candidate.bits = evaluate.memory(candidate.model).bits_per_activation
    candidate.arena_bytes = planner.plan(candidate.model, schedule).arena_bytes
    candidate.important_share = budget.important_share(candidate.model)


def score(candidate: Candidate, images: np.ndarray, fp32_logits: np.ndarray, labels: np.ndarray | None,
          regress: bool = False) -> None:
    """Mean KL divergence from FP32's softmax, and top-1 (against FP32's argmax without labels); with
    `regress` (an image, mask or reconstruction output) the squared error relative to FP32's output
    power instead, and no top-1."""
    model = candidate.model
    logits = reference.run(model, images).output.reshape(len(images), -1) * model.tensors[model.output].scale
    if regress:
        fp32 = fp32_logits.reshape(len(images), -1)
        candidate.divergence = float(((logits - fp32) ** 2).mean() / max(float((fp32 ** 2).mean()), 1e-30))
        return
    log_q, log_p = _log_softmax(logits), _log_softmax(fp32_logits)
    candidate.divergence = float((np.exp(log_p) * (log_p - log_q)).sum(axis=1).mean())
    truth = labels if labels is not None else fp32_logits.argmax(axis=1)
    candidate.top1 = evaluate.top1(logits, truth)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def recommend(graph: Graph, calib: Calibration, base: QuantConfig, calib_images: np.ndarray, limit: Budget,
              rank: Ranker, score_images: np.ndarray, score_labels: np.ndarray | None = None,
              extra_bits=EXTRA_BITS, log=print, regress: bool = False,
              schedule: str = planner.DEFAULT_SCHEDULE) -> tuple[Candidate, list[Candidate]]:
    """The winning candidate and all of them, fitted and scored (`regress`: see `score`), arenas
    planned under `schedule` (the export's). `rank(config)` gives the whole-network RankingResult
    for a DQA config (greedy or taylor)."""
    if base.rank not in GLOBAL_RANKINGS:
        raise QuantizationError(f"a recommendation allocates channels by whole-network scores: --rank "
                                f"{' or '.join(GLOBAL_RANKINGS)}, not {base.rank!r}")
    fp32 = evaluate.float_logits(graph, score_images, show_progress=False)
    found = candidates(graph, calib, base, calib_images, limit, extra_bits, schedule)
    for candidate in found:
        log(f"recommend: fitting {candidate.label} into {limit} ...")
        fit(candidate, graph, calib, calib_images, limit, rank, log=lambda *a: None, schedule=schedule)
        if candidate.model is not None:
            score(candidate, score_images, fp32, score_labels, regress)
    fitted = [c for c in found if c.model is not None]
    best = min(fitted, key=lambda c: (c.divergence, c.bits))  # direct always fits: never empty
    return best, found


def format_candidates(found: list[Candidate], best: Candidate, labelled: bool, regress: bool = False) -> str:
    top1 = "top-1 %" if labelled else "agreement with FP32 %"
    divergence = "output error / FP32 power" if regress else "KL to FP32"
    lines = [f"| candidate | important activations | bits / activation | arena bytes | {divergence} | {top1} |",
             "|---|---|---|---|---|---|"]
    for c in found:
        if c.model is None:
            lines.append(f"| {c.label} | does not fit: {c.why_not} | | | | |")
            continue
        mark = " (recommended)" if c is best else ""
        lines.append(f"| {c.label}{mark} | {100 * c.important_share:.1f} % | {c.bits:.2f} | {c.arena_bytes} | "
                     f"{c.divergence:.4f} | {'' if math.isnan(c.top1) else f'{c.top1:.2f}'} |")
    return "\n".join(lines)
