"""The NumPy integer reference: executes a QModel exactly as docs/spec.md says.

It is the golden model for the generated C. Everything is vectorized over a
batch of images; a tensor is carried between ops in the fine domain
(spec section 1) after its storage has been simulated, so DQA splitting,
Huffman coding limits and the overflow fallback are all applied here.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dqa_mcu import npconv
from dqa_mcu.qmodel import QModel, QNode, QTensor

DEFAULT_BATCH = 64  # fastest here: the im2col buffer stays in cache
PIXELS = "__pixels__"  # the application's uint8 input, before the input stage


def rshift_round(x: np.ndarray, shift: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Round half up, once: (x + 2^(T-1)) >> T, and x itself for T = 0 (int64)."""
    shift = np.asarray(shift, dtype=np.int64)
    offset = np.where(shift > 0, np.left_shift(1, np.maximum(shift - 1, 0)), 0)
    out = np.add(x, offset, out=out)
    out >>= shift
    return out


@dataclass
class TensorStats:
    """What storing one tensor saw over a run."""
    symbol_counts: np.ndarray  # int64 (2^m,): error symbols, before coding
    per_image_counts: list = field(default_factory=list)  # (N, 2^m) per batch, when asked for
    per_row_counts: list = field(default_factory=list)  # (N * H, 2^m) per batch: each image row's
    stream_bits: list = field(default_factory=list)  # per image, before any truncation
    overflowed_images: int = 0

    @property
    def image_symbol_counts(self) -> np.ndarray:
        return np.concatenate(self.per_image_counts)


@dataclass
class RunResult:
    output: np.ndarray  # int64 (N, C) for a vector output, else (N, H, W, C)
    overflowed_tensors: np.ndarray  # int64 (N,): spec section 2.3 status per image
    stats: dict[str, TensorStats]
    tensors: dict[str, np.ndarray] | None = None  # fine-domain values, when kept


def _store(t: QTensor, u: np.ndarray, result_stats: dict, overflow: np.ndarray,
           per_image: bool = False, rows: bool = False) -> np.ndarray:
    """Simulate storing storage-domain values `u`; return what consumers read (v).

    Whole-tensor arithmetic: every element gets a symbol, unimportant channels
    ones in [2^m, 2^(m+1)) with code length 0 (nothing coded), so per-image sums
    and (for the rare images over capacity) a cumulative sum in index order
    give each important symbol's end position in the stream (spec 2.2, 2.3).
    With `rows` (a row-streamed tensor, spec 2.4) every image row is a stream
    of its own, of err_row_capacity_bits.
    """
    m = t.extra_bits
    u = u.astype(np.int32)
    if m == 0:
        return u
    if not t.important.any():
        return u << m
    n = len(u)
    imp = t.important
    uncoded = 1 << m
    symbols = (u & (uncoded - 1)) + np.where(imp, 0, uncoded).astype(np.int32)
    stats = result_stats.setdefault(t.name, TensorStats(np.zeros(uncoded, dtype=np.int64)))
    stats.symbol_counts += np.bincount(symbols.ravel(), minlength=2 * uncoded)[:uncoded]
    if per_image:
        image_offsets = (np.arange(n, dtype=np.int32) * (2 * uncoded))[:, None, None, None]
        counts = np.bincount((symbols + image_offsets).ravel(), minlength=n * 2 * uncoded)
        stats.per_image_counts.append(counts.reshape(n, 2 * uncoded)[:, :uncoded])
        row_offsets = (np.arange(n * u.shape[1], dtype=np.int32) * (2 * uncoded)).reshape(n, -1)[:, :, None, None]
        counts = np.bincount((symbols + row_offsets).ravel(), minlength=n * u.shape[1] * 2 * uncoded)
        stats.per_row_counts.append(counts.reshape(-1, 2 * uncoded)[:, :uncoded])
    v = u * np.where(imp, 1, uncoded).astype(np.int32)
    if t.huffman is not None:
        table = np.concatenate([np.asarray(t.huffman.lengths, dtype=np.int32), np.zeros(uncoded, np.int32)])
        lengths = np.take(table, symbols).reshape(n, -1)
        stats.stream_bits.extend(lengths.sum(axis=1, dtype=np.int64).tolist())
        cap = t.err_row_capacity_bits if rows else t.err_capacity_bits
        streams = u.shape[1] if rows else 1  # per image: one stream per row, or one
        over = np.flatnonzero((lengths.reshape(n * streams, -1).sum(axis=1, dtype=np.int64) > cap)
                              .reshape(n, streams).any(axis=1))
        if len(over):
            written = np.cumsum(lengths[over].reshape(len(over) * streams, -1), axis=1)
            written = written.reshape((len(over),) + u.shape[1:])
            lost = imp & (written > cap)
            stats.overflowed_images += len(over)
            overflow[over] += 1
            v[over] = np.where(lost, ((u[over] >> m) << m) + (1 << (m - 1)), v[over])
    return v


def _view(v: np.ndarray, stride: int, channel_offset: int, channels: int) -> np.ndarray:
    """Option-A view: subsample spatially, place channels at an offset, zeros elsewhere."""
    sub = v[:, ::stride, ::stride, :]
    if channel_offset == 0 and sub.shape[3] == channels:
        return sub
    out = np.zeros(sub.shape[:3] + (channels,), dtype=sub.dtype)
    out[..., channel_offset:channel_offset + sub.shape[3]] = sub
    return out


def _sum(arrays: dict, x: np.ndarray, second: np.ndarray | None, prefix: str = "") -> np.ndarray:
    """t = x * M (+ second * R), int64; with leaky_relu, negative t use the negative-side
    multipliers instead (spec 4)."""
    t = x * arrays[prefix + "multiplier"]
    if second is not None:
        t += second * arrays[prefix + "residual_multiplier"]
    if not prefix and "negative_multiplier" in arrays:
        t = np.where(t < 0, _sum(arrays, x, second, "negative_"), t)
    return t


def _requantize(terms: np.ndarray, node: QNode) -> np.ndarray:
    """Spec section 3, in place on the int64 `terms`."""
    a = node.arrays
    rshift_round(terms, a["shift"], out=terms)
    np.maximum(terms, a["out_min"], out=terms)
    np.minimum(terms, a["out_max"], out=terms)
    return terms


def fine_max_abs(t: QTensor) -> int:
    """Largest |v| a consumer can read from `t` (bounds exact accumulation)."""
    if t.lut is not None:
        return 127
    bits = t.bits + t.extra_bits
    return (1 << (bits - 1)) if t.signed else (1 << bits) - 1


def _conv(node: QNode, v: np.ndarray, x: QTensor) -> np.ndarray:
    w = node.arrays["weight"]
    at = node.attrs
    dtype = npconv.exact_dtype(fine_max_abs(x), w)
    acc = npconv.conv2d(v, w, at["stride"], at["padding"], at["dilation"], at["groups"], dtype)
    return acc.astype(np.int64)  # exact: every partial sum is an integer within the dtype's range


def depth_to_space(v: np.ndarray, r: int) -> np.ndarray:
    """(N, H, W, C*r*r) -> (N, H*r, W*r, C): element (h*r + i, w*r + j, c) is (h, w, c*r*r + i*r + j)."""
    n, h, w, c = v.shape
    return v.reshape(n, h, w, c // (r * r), r, r).transpose(0, 1, 4, 2, 5, 3).reshape(n, h * r, w * r, -1)


def bilinear_taps(size: int, scale: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per output index along one axis: (i0, i1, weight of i0, weight of i1), weights in units of
    1 / (2 * scale) (spec 5.6.1: PyTorch's align_corners=False, source index clamped at 0)."""
    n = np.maximum(2 * np.arange(size * scale) + 1 - scale, 0)
    i0, f = n // (2 * scale), n % (2 * scale)
    return i0, np.minimum(i0 + 1, size - 1), 2 * scale - f, f


def bilinear_sum(v: np.ndarray, sh: int, sw: int) -> np.ndarray:
    """S of spec 5.6.1 for every output element (int64, exact)."""
    y0, y1, wy0, wy1 = bilinear_taps(v.shape[1], sh)
    x0, x1, wx0, wx1 = bilinear_taps(v.shape[2], sw)
    rows = v[:, y0] * wy0[None, :, None, None] + v[:, y1] * wy1[None, :, None, None]
    return rows[:, :, x0] * wx0[None, None, :, None] + rows[:, :, x1] * wx1[None, None, :, None]


def _run_node(node: QNode, model: QModel, values: dict, stats: dict, overflow: np.ndarray,
              per_image: bool, streamed: frozenset = frozenset()) -> None:
    out_t = model.tensors[node.output]
    ins = [values[name] for name in node.inputs]
    a, at = node.arrays, node.attrs
    if node.op == "input":
        p = values[PIXELS]
        channel = np.arange(out_t.channels)
        values[node.output] = out_t.lut[channel, p].astype(np.int64)
        return
    if node.op in ("conv2d", "linear"):
        x_t = model.tensors[node.inputs[0]]
        if node.op == "linear":
            x = ins[0].reshape(len(ins[0]), 1, 1, -1)
            w = a["weight"][:, None, None, :]
            acc = _conv(QNode(node.name, "conv2d", node.inputs, node.output,
                              {"stride": (1, 1), "padding": (0, 0, 0, 0), "dilation": (1, 1), "groups": 1},
                              {"weight": w}), x, x_t)
        else:
            acc = _conv(node, ins[0], x_t)
        acc += a["bias"]
        residual = (_view(ins[1], at["residual_stride"], at["residual_channel_offset"], out_t.channels)
                    if len(ins) == 2 else None)
        u = _requantize(_sum(a, acc, residual), node)
    elif node.op == "add":
        vb = _view(ins[1], at["b_stride"], at["b_channel_offset"], out_t.channels)
        u = _requantize(_sum(a, ins[0], vb), node)
    elif node.op == "maxpool":
        kh, kw = at["kernel"]
        lowest = np.iinfo(ins[0].dtype).min  # never wins: windows always hold an input pixel
        v = npconv.windows(ins[0], kh, kw, at["stride"], at["padding"], pad_value=lowest).max(axis=(4, 5))
        u = np.where(out_t.important, v, v >> out_t.extra_bits)
    elif node.op == "avgpool":
        kh, kw = at["kernel"]
        s = npconv.windows(ins[0], kh, kw, at["stride"], at["padding"]).sum(axis=(4, 5))
        u = _requantize(s * a["multiplier"], node)
    elif node.op == "global_avgpool":
        u = _requantize(ins[0].sum(axis=(1, 2), keepdims=True) * a["multiplier"], node)
    elif node.op == "flatten":
        values[node.output] = ins[0].reshape(len(ins[0]), 1, 1, -1)
        return
    elif node.op == "mul":  # the second input broadcasts when it is a (1, 1, C) vector
        u = _requantize(ins[0] * ins[1] * a["multiplier"], node)
    elif node.op == "activation":  # spec 5.4.2: a common index, the table, a per-channel requantization
        table = a["table"]
        reach = (len(table) - 1) // 2
        index = np.clip(rshift_round(ins[0] * a["index_multiplier"], a["index_shift"]), -reach, reach)
        u = _requantize(table[index + reach].astype(np.int64) * a["multiplier"], node)
    elif node.op == "upsample_bilinear":
        u = _requantize(bilinear_sum(ins[0], *at["scale"]) * a["multiplier"], node)
    elif node.op in ("concat", "upsample_nearest", "depth_to_space"):
        if node.op == "concat":
            v = np.concatenate(ins, axis=3)
        elif node.op == "upsample_nearest":
            sh, sw = at["scale"]
            v = ins[0].repeat(sh, axis=1).repeat(sw, axis=2)
        else:
            v = depth_to_space(ins[0], at["block"])
        u = np.where(out_t.important, v, v >> out_t.extra_bits)
    else:
        raise ValueError(f"node {node.name!r}: the reference has no op {node.op!r}")
    values[node.output] = _store(out_t, u, stats, overflow, per_image, node.output in streamed)


def run(model: QModel, pixels: np.ndarray, batch: int = DEFAULT_BATCH, keep_tensors: bool = False,
        progress=None, per_image_stats: bool = False, streamed=frozenset()) -> RunResult:
    """Run uint8 NHWC `pixels` through `model`; exact integers out.

    `per_image_stats` also records each image's error-symbol counts (for
    sizing error streams); totals are always recorded. `streamed`: the
    tensors a row-streamed schedule keeps as rings (spec 2.4)."""
    expected = model.tensors[model.input].shape
    if pixels.dtype != np.uint8 or pixels.ndim != 4 or tuple(pixels.shape[1:]) != tuple(expected):
        raise ValueError(f"input must be uint8 of shape (N, {', '.join(map(str, expected))}), "
                         f"got {pixels.dtype} {pixels.shape}")
    outputs, overflows, kept = [], [], {}
    stats: dict[str, TensorStats] = {}
    starts = range(0, len(pixels), batch)
    for start in (progress(starts) if progress else starts):
        chunk = pixels[start:start + batch]
        values = {PIXELS: chunk}
        overflow = np.zeros(len(chunk), dtype=np.int64)
        for node in model.nodes:
            _run_node(node, model, values, stats, overflow, per_image_stats, frozenset(streamed))
        out = values[model.output]
        outputs.append(out.reshape(len(chunk), -1) if out.shape[1:3] == (1, 1) else out)
        overflows.append(overflow)
        if keep_tensors:
            for name, v in values.items():
                if name != PIXELS:
                    kept.setdefault(name, []).append(v)
    return RunResult(np.concatenate(outputs), np.concatenate(overflows), stats,
                     {k: np.concatenate(v) for k, v in kept.items()} if keep_tensors else None)
