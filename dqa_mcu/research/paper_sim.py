"""The paper's own setting, simulated in PyTorch float (arXiv 2412.09687 and its
authors' public code, gicLAB/eDQA), to measure how far our deployable scheme is
from it on the same model and data.

The paper's setting, as opposed to ours (docs: DESIGN "Facts about the paper's method"):

* quantization points: only the residual blocks' outputs (after the block's
  final ReLU): 15 in ResNet-32, 9 in ResNet-20; everything else stays FP32,
  weights included;
* quantizer: symmetric, signed, per channel, ``scale = max|x| / 2^(N-1)``
  computed dynamically on every batch (``ranges="dynamic"``), values
  ``clamp(round(x / scale), -2^(N-1), 2^(N-1) - 1)`` (so the channel maximum
  itself clips to 2^(N-1) - 1). ``ranges="static"`` takes max|x| from
  calibration images instead (a microcontroller needs static ranges), and
  ``signed=False`` uses the unsigned quantizer ``scale = max / (2^N - 1)`` that
  non-negative post-ReLU data deserves (both for comparison only);
* methods (``method=``):
  - ``"direct"``: every channel at N bits;
  - ``"noisyquant"``: NoisyQuant (Liu et al., CVPR 2023): a fixed noisy bias
    b_c ~ U(-a/2, a/2) * scale_c per channel, sampled once with ``seed``, is
    added before quantization and its effect removed after the following
    layer. The noise range a (in steps) is searched per point among
    ``NOISE_AMPLITUDES`` for the least squared error of the point's output on
    the calibration images (``noise="search"``, as NoisyQuant picks its noise
    range per layer), or fixed (``noise=1.0``: half a step each way). Because
    the following layers (next block's conv, the shortcut, pooling + linear)
    are linear in the block output, subtracting b from the dequantized tensor
    is the same as subtracting W * b after the next conv (zero padding
    included), so that is how it is done. (On post-ReLU data about half the
    values are exact zeros, which the noisy bias turns into a per-channel
    offset of -b: measured here, it is worse than direct quantization at 3
    bits. NoisyQuant was designed for GELU activations of vision transformers.);
  - ``"dqa"``: important channels (``important_ratio`` of each point) at N + m
    bits (``q' = round(x / (max / 2^(N+m-1)))``; the split ``q = q' >> m``,
    ``e = q' & (2^m - 1)`` is lossless, so the dequantized value is q' times
    the fine scale), the others at N bits. Important channels by
    ``importance``: ``"greedy"`` (the paper's search, ``paper_greedy_rankings``,
    in this same setting, on the calibration images), ``"range"`` (widest
    calibration max|x| first), ``"random"``, or a ``rankings`` dict.

``paper_accuracy`` works on any torch module through forward hooks on the named
points (default: every ``zoo.BasicBlock``). The greedy search runs the zoo's
CIFAR ResNets block by block with BatchNorm folded into the convolutions
(same arithmetic up to float32 rounding), caching the prefix.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from tqdm import tqdm

from dqa_mcu.frontends.zoo import BasicBlock, Normalization
from dqa_mcu.reference.torch_exec import default_workers, parallel_map

__all__ = ["PaperScheme", "paper_accuracy", "paper_greedy_rankings", "block_points", "calibration_maxima",
           "METHODS"]

METHODS = ("fp32", "direct", "noisyquant", "dqa")
CL = torch.channels_last


def block_points(module: nn.Module) -> list[str]:
    """Names of the residual blocks (their outputs are the paper's quantization points)."""
    return [name for name, m in module.named_modules() if isinstance(m, BasicBlock)]


def _to_input(images: np.ndarray, norm: Normalization) -> torch.Tensor:
    x = torch.as_tensor(np.asarray(images)).permute(0, 3, 1, 2).float()
    mean = torch.tensor(norm.mean, dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(norm.std, dtype=torch.float32).view(1, -1, 1, 1)
    return ((x * norm.pixel_scale - mean) / std).contiguous(memory_format=CL)


@dataclass
class PaperScheme:
    """How every quantization point is quantized (see the module docstring)."""
    method: str = "direct"
    bits: int = 3
    extra_bits: int = 3
    signed: bool = True
    ranges: str = "dynamic"
    static_max: dict[str, torch.Tensor] = field(default_factory=dict)  # point -> (C,)
    important: dict[str, torch.Tensor] = field(default_factory=dict)  # point -> bool (C,)
    noise: dict[str, torch.Tensor] = field(default_factory=dict)  # point -> (C,), in steps

    def __post_init__(self):
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose from {', '.join(METHODS)}")
        if self.ranges not in ("dynamic", "static"):
            raise ValueError(f"ranges must be 'dynamic' or 'static', not {self.ranges!r}")

    def channel_bits(self, point: str, c: int) -> torch.Tensor:
        bits = torch.full((c,), float(self.bits))
        if self.method == "dqa" and point in self.important:
            bits = bits + self.extra_bits * self.important[point].float()
        return bits

    def quantize(self, point: str, x: torch.Tensor, groups: int = 1, bits: torch.Tensor | None = None) -> torch.Tensor:
        """Fake-quantize NCHW `x`. Dynamic ranges are per channel over each of the
        `groups` equal slices of the batch (stacked candidates keep their own batch)."""
        if self.method == "fp32":
            return x
        n, c = x.shape[0], x.shape[1]
        if bits is None:
            bits = self.channel_bits(point, c)
        bits = bits.view(1, -1, 1, 1)
        if self.ranges == "dynamic":
            amax = x.reshape(groups, n // groups, c, -1).abs().amax(dim=(1, 3))  # (groups, C)
            amax = amax.repeat_interleave(n // groups, dim=0).view(n, c, 1, 1)
        else:
            amax = self.static_max[point].view(1, -1, 1, 1)
        if self.signed:
            levels = 2.0 ** (bits - 1)
            lo, hi = -levels, levels - 1
        else:
            levels = 2.0 ** bits - 1
            lo, hi = torch.zeros_like(levels), levels
        scale = torch.clamp(amax, min=1e-12) / levels
        if self.method == "noisyquant":
            b = self.noise[point].view(1, -1, 1, 1) * scale
            q = torch.maximum(torch.minimum(torch.round((x + b) / scale), hi), lo)
            return q * scale - b
        q = torch.maximum(torch.minimum(torch.round(x / scale), hi), lo)
        return q * scale


def _run_with_hooks(module: nn.Module, norm: Normalization, images: np.ndarray, points: list[str],
                    make_hook, batch: int) -> None:
    """Run the FP32 model over `images` with make_hook(point) on each point's output."""
    named = dict(module.named_modules())
    handles = [named[p].register_forward_hook(make_hook(p)) for p in points]
    try:
        with torch.inference_mode():
            for s in range(0, len(images), batch):
                module(_to_input(images[s:s + batch], norm))
    finally:
        for h in handles:
            h.remove()


def calibration_maxima(module: nn.Module, norm: Normalization, images: np.ndarray, points: list[str],
                       batch: int = 250) -> dict[str, torch.Tensor]:
    """Per point, per channel max|x| of the FP32 model over `images`."""
    out: dict[str, torch.Tensor] = {}

    def hook(name):
        def f(_m, _i, y):
            m = y.detach().abs().amax(dim=(0, 2, 3))
            out[name] = torch.maximum(out[name], m) if name in out else m
        return f
    _run_with_hooks(module, norm, images, points, hook, batch)
    return out


def _predict(module, norm, images, scheme: PaperScheme, points, batch, workers) -> np.ndarray:
    named = dict(module.named_modules())
    handles = [named[p].register_forward_hook(lambda _m, _i, y, p=p: scheme.quantize(p, y)) for p in points]

    def one(s):
        with torch.inference_mode():
            return module(_to_input(images[s:s + batch], norm)).argmax(dim=1).numpy()
    try:
        return np.concatenate(parallel_map(one, list(range(0, len(images), batch)), workers))
    finally:
        for h in handles:
            h.remove()


def paper_accuracy(module: nn.Module, normalization: Normalization, images: np.ndarray, labels: np.ndarray,
                   method: str = "direct", bits: int = 3, *, extra_bits: int = 3, important_ratio: float = 0.4,
                   importance: str = "greedy", rankings: dict[str, np.ndarray] | None = None,
                   signed: bool = True, ranges: str = "dynamic", calib_images: np.ndarray | None = None,
                   calib_labels: np.ndarray | None = None, noise: float | str = "search", batch: int = 100,
                   points: list[str] | None = None, seed: int = 0, workers: int | None = None,
                   show_progress: bool = False) -> float:
    """Top-1 (%) of `module` with the paper's activation quantization at `points`.

    calib_images are needed for static ranges and for the 'range' and 'greedy'
    importance criteria (the greedy search scores on calib_labels, or agreement
    with the FP32 model without them). ``batch`` is also the batch over which
    dynamic ranges are taken.
    """
    module = module.eval()
    points = points if points is not None else block_points(module)
    if not points:
        raise ValueError("no quantization points: pass points=[module names]")
    scheme = PaperScheme(method, bits, extra_bits, signed, ranges)
    need_calib = ranges == "static" or (method == "dqa" and rankings is None and importance in ("range", "greedy"))
    if need_calib and calib_images is None:
        raise ValueError("calib_images are needed for static ranges and for the range/greedy importance")
    if ranges == "static" or (method == "dqa" and rankings is None and importance == "range"):
        scheme.static_max = calibration_maxima(module, normalization, calib_images, points)
    rng = np.random.default_rng(seed)
    if method == "noisyquant":
        scheme.noise = {p: torch.as_tensor(rng.uniform(-0.5, 0.5, _channels(module, p)), dtype=torch.float32)
                        for p in points}
        if noise == "search":
            if calib_images is None:
                raise ValueError("the NoisyQuant noise search needs calib_images")
            amp = _search_noise(module, normalization, calib_images, points, scheme, batch)
        else:
            amp = {p: float(noise) for p in points}
        scheme.noise = {p: scheme.noise[p] * amp[p] for p in points}
    if method == "dqa":
        if rankings is None:
            if importance == "range":
                rankings = {p: np.argsort(-scheme.static_max[p].numpy(), kind="stable") for p in points}
            elif importance == "random":
                rankings = {p: rng.permutation(_channels(module, p)) for p in points}
            elif importance == "greedy":
                rankings = paper_greedy_rankings(module, normalization, calib_images, calib_labels, bits,
                                                 extra_bits=extra_bits, important_ratio=important_ratio,
                                                 signed=signed, ranges=ranges, batch=batch, workers=workers,
                                                 show_progress=show_progress)
            else:
                raise ValueError(f"unknown importance {importance!r}: greedy, range, random")
        scheme.important = {p: _top(rankings[p], important_ratio) for p in points}
    pred = _predict(module, normalization, images, scheme, points, batch, workers)
    return float((pred == np.asarray(labels)).mean() * 100.0)


NOISE_AMPLITUDES = (0.125, 0.25, 0.5, 1.0)  # noise range in steps (NoisyQuant searches it per layer)


def _search_noise(module, norm, images, points, scheme: PaperScheme, batch: int) -> dict[str, float]:
    """Per point, the noise amplitude (of NOISE_AMPLITUDES) with the least squared error
    between the FP32 point output and its noisy-biased quantization, on calibration images
    (NoisyQuant picks its noise range by the layer's output error)."""
    err = {p: np.zeros(len(NOISE_AMPLITUDES)) for p in points}
    u = dict(scheme.noise)

    def hook(p):
        def f(_m, _i, y):
            for j, a in enumerate(NOISE_AMPLITUDES):
                scheme.noise[p] = u[p] * a
                err[p][j] += float(((scheme.quantize(p, y) - y) ** 2).sum())
        return f
    try:
        _run_with_hooks(module, norm, images, points, hook, batch)
    finally:
        scheme.noise = u
    return {p: NOISE_AMPLITUDES[int(np.argmin(err[p]))] for p in points}


def _channels(module: nn.Module, point: str) -> int:
    blk = dict(module.named_modules())[point]
    convs = [m for m in blk.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"cannot tell the channel count of {point!r}")
    return convs[-1].out_channels


def _top(order, ratio: float) -> torch.Tensor:
    order = np.asarray(order)
    mask = torch.zeros(len(order), dtype=torch.bool)
    mask[torch.as_tensor(order[:int(round(ratio * len(order)))], dtype=torch.long)] = True
    return mask


# -- the paper's greedy search, in the paper's setting ---------------------------------

def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    w = conv.weight.detach() * scale.view(-1, 1, 1, 1)
    b = bn.bias.detach() - bn.running_mean * scale
    if conv.bias is not None:
        b = b + conv.bias.detach() * scale
    return w.contiguous(memory_format=CL), b


class _FusedResNet:
    """A zoo CIFAR ResNet as stem -> blocks -> head with BatchNorm folded."""

    def __init__(self, module: nn.Module):
        if not all(hasattr(module, a) for a in ("conv1", "bn1", "layer1", "layer2", "layer3", "linear")):
            raise ValueError("the paper-mode greedy search supports the zoo's CIFAR ResNets "
                             "(conv1, bn1, layer1..3, linear)")
        self.stem = _fold(module.conv1, module.bn1)
        self.names, self.blocks = [], []
        for i in (1, 2, 3):
            for j, blk in enumerate(getattr(module, f"layer{i}")):
                w1, b1 = _fold(blk.conv1, blk.bn1)
                w2, b2 = _fold(blk.conv2, blk.bn2)
                pad = getattr(blk.shortcut, "pad", None)
                self.names.append(f"layer{i}.{j}")
                self.blocks.append((w1, b1, blk.conv1.stride, w2, b2, pad))
        self.lin_w = module.linear.weight.detach()
        self.lin_b = module.linear.bias.detach()

    def stem_fwd(self, x):
        w, b = self.stem
        return F.relu(F.conv2d(x, w, b, 1, 1))

    def block_fwd(self, k, x):
        w1, b1, stride, w2, b2, pad = self.blocks[k]
        out = F.relu(F.conv2d(x, w1, b1, stride, 1))
        out = F.conv2d(out, w2, b2, 1, 1)
        if pad is None:
            out += x
        else:
            out += F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, pad, pad))
        return F.relu_(out)

    def head(self, x):
        return F.linear(x.mean(dim=(2, 3)), self.lin_w, self.lin_b)


def paper_greedy_rankings(module: nn.Module, normalization: Normalization, images: np.ndarray,
                          labels: np.ndarray | None, bits: int, *, extra_bits: int = 3,
                          important_ratio: float = 0.4, signed: bool = True, ranges: str = "dynamic",
                          batch: int = 100, samples: int = 400, workers: int | None = None,
                          show_progress: bool = True) -> dict[str, np.ndarray]:
    """The paper's greedy ranking of each block output's channels, in the paper's setting.

    Blocks in order; channel c of block k alone at N + m bits, earlier blocks with
    their chosen top ``important_ratio`` at N + m, later blocks at N bits; score =
    top-1 on `images` (agreement with FP32 without labels); ties by widest range.
    The prefix is cached per batch of `batch` images (dynamic ranges are per batch);
    candidates are stacked (their dynamic ranges stay per candidate).
    """
    if images is None:
        raise ValueError("the greedy search needs calibration images")
    net = _FusedResNet(module.eval())
    workers = workers or default_workers()
    points = net.names
    scheme = PaperScheme("dqa", bits, extra_bits, signed, ranges)
    if ranges == "static":
        scheme.static_max = calibration_maxima(module, normalization, images, points)
    starts = list(range(0, len(images), batch))
    envs: list[torch.Tensor] = [None] * len(starts)
    with torch.inference_mode():
        if labels is None:
            ref = np.concatenate(parallel_map(
                lambda s: _fp32_pred(net, _to_input(images[s:s + batch], normalization)), starts, workers))
        else:
            ref = np.asarray(labels)

        def init(k):
            with torch.inference_mode():
                envs[k] = net.stem_fwd(_to_input(images[starts[k]:starts[k] + batch], normalization))
        parallel_map(init, list(range(len(starts))), workers)
        ref_t = torch.as_tensor(ref)
        costs = [len(points) - k for k in range(len(points))]
        chans = [net.blocks[k][3].shape[0] for k in range(len(points))]
        bar = tqdm(total=sum(c * k for c, k in zip(chans, costs)) * len(images), desc="paper greedy",
                   disable=not show_progress, unit="blk", unit_scale=True)
        rankings = {}
        for k, p in enumerate(points):
            C = chans[k]
            base_bits = torch.full((C,), float(bits))

            def score(i, k=k, p=p, C=C):
                with torch.inference_mode():
                    y = net.block_fwd(k, envs[i])
                    b = y.shape[0]
                    group = max(1, min(C, samples * 16384 // (b * y[0].numel())))
                    labels_i = ref_t[starts[i]:starts[i] + b]
                    amax = y.abs().amax(dim=(0, 2, 3)) if ranges == "dynamic" else None
                    out = np.zeros(C)
                    for g0 in range(0, C, group):
                        cs = list(range(g0, min(C, g0 + group)))
                        K = len(cs)
                        x = y.repeat(K, 1, 1, 1)
                        bits_k = base_bits.repeat(K, 1)
                        bits_k[torch.arange(K), torch.as_tensor(cs)] += extra_bits
                        x = _quantize_rows(scheme, p, x, K, bits_k)
                        for kk in range(k + 1, len(points)):
                            x = net.block_fwd(kk, x)
                            x = scheme.quantize(points[kk], x, groups=K, bits=torch.full(
                                (x.shape[1],), float(bits)))
                        pred = net.head(x).argmax(dim=1).view(K, b)
                        out[cs] = (pred == labels_i.view(1, b)).sum(dim=1).numpy()
                        bar.update(K * b * (len(points) - k))
                    return out, amax
            res = parallel_map(score, list(range(len(starts))), workers)
            sc = np.sum([r[0] for r in res], axis=0)
            if ranges == "dynamic":
                width = torch.stack([r[1] for r in res]).amax(dim=0).numpy()
            else:
                width = scheme.static_max[p].numpy()
            order = np.lexsort((-width, -sc)).astype(np.int64)
            rankings[p] = order
            scheme.important[p] = _top(order, important_ratio)

            def advance(i, k=k, p=p):
                with torch.inference_mode():
                    envs[i] = scheme.quantize(p, net.block_fwd(k, envs[i]))
            parallel_map(advance, list(range(len(starts))), workers)
        bar.close()
    return rankings


def _quantize_rows(scheme: PaperScheme, point: str, x: torch.Tensor, K: int, bits_k: torch.Tensor) -> torch.Tensor:
    """Quantize K stacked copies, copy k with its own per-channel bits (K, C)."""
    b = x.shape[0] // K
    return torch.cat([scheme.quantize(point, x[i * b:(i + 1) * b], bits=bits_k[i]) for i in range(K)])


def _fp32_pred(net: _FusedResNet, x: torch.Tensor) -> np.ndarray:
    x = net.stem_fwd(x)
    for k in range(len(net.blocks)):
        x = net.block_fwd(k, x)
    return net.head(x).argmax(dim=1).numpy()
