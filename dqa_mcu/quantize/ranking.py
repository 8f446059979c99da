"""Channel ranking: which channels of a tensor get DQA's extra bits.

Every criterion here has one signature: (stats, clip, rng) -> channel indices,
most important first; these are the local ones, computed inside quantize().
The whole-network criteria (``GLOBAL_RANKINGS``: the paper's greedy search and
its fast Taylor proxy) need the graph and images, live in ``dqa_mcu.quantize.greedy``
(``compute_rankings(name, graph, calib, config, images, labels)``) and reach
quantize() as its ``rankings=`` argument (or a rankings file).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from dqa_mcu.quantize.calibrate import ChannelStats

Ranker = Callable[[ChannelStats, np.ndarray, np.random.Generator], np.ndarray]


def rank_by_range(stats: ChannelStats, clip: np.ndarray, rng) -> np.ndarray:
    """Widest clipping range first: its n-bit step, hence its rounding error, is largest."""
    return np.argsort(-clip, kind="stable")


def rank_by_noise(stats: ChannelStats, clip: np.ndarray, rng) -> np.ndarray:
    """Largest expected rounding-noise power first: step^2 times the share of
    values that are not exactly zero (a mostly-zero ReLU channel gains little
    from extra bits even when its range is wide)."""
    nonzero = 1.0 - stats.hist[:, 0] / np.maximum(stats.hist.sum(axis=1), 1)
    # histogram bin 0 also holds values below max/HIST_BINS: close enough to zero
    return np.argsort(-(clip ** 2) * nonzero, kind="stable")


def rank_randomly(stats: ChannelStats, clip: np.ndarray, rng) -> np.ndarray:
    """A control for ablations: a random order."""
    return rng.permutation(len(clip))


RANKERS: dict[str, Ranker] = {
    "noise": rank_by_noise,
    "range": rank_by_range,
    "random": rank_randomly,
}


# Whole-network rankings, by name (computed by dqa_mcu.quantize.greedy.compute_rankings):
#   greedy: the paper's search, one network evaluation per channel (minutes);
#   taylor: first-order loss sensitivity to each channel's rounding noise (seconds).
GLOBAL_RANKINGS: tuple[str, ...] = ("greedy", "taylor")
