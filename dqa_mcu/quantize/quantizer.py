"""Quantization: float graph + calibration -> QModel (docs/spec.md).

* weights: int8 per output channel, symmetric; the consumer folds each input
  channel's activation step into its weights, so per-channel activation
  scales cost nothing at run time;
* activations: n bits per channel, unsigned after ReLU, clipping range by
  max / percentile / MSE search on the calibration histograms;
* DQA: the top `important_ratio` channels of each tensor (by a ranking
  criterion) are quantized at n + m bits and split; per-tensor Huffman codes
  and error-stream capacities come from running the integer reference on
  calibration images.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np
import torch

from dqa_mcu.huffman import HuffmanCode
from dqa_mcu.ir import NON_NEGATIVE_FUNCTIONS, Graph, Node, act_bounds
from dqa_mcu.qmodel import QModel, QNode, QTensor
from dqa_mcu.quantize.calibrate import HIST_BINS, Calibration, ChannelStats
from dqa_mcu.quantize.ranking import GLOBAL_RANKINGS, RANKERS
from dqa_mcu.reference import dqa as reference
from dqa_mcu.reference.torch_exec import TABLE_FUNCTIONS

OUTPUT_BITS = 16
TABLE_REACH = 2047  # a table activation's index runs over [-TABLE_REACH, TABLE_REACH] (spec 5.4.2)
TABLE_MAX = 2 ** 15 - 1  # its int16 entries
WEIGHT_MAX = 127
INPUT_LUT_MAX = 127
MAX_SHIFT = 62
BIAS_LIMIT = 2 ** 30  # |B| <= 2^30 and |acc| < 2^31 keep (acc + B) * M inside int64 (spec 3.1)
ACCUMULATOR_LIMIT = 2 ** 31
ACCUMULATOR_FIT_STEPS = 8  # weight-scale raises tried; each lands within 2^-10 of the limit
CLIP_FLOOR_RATIO = 2.0 ** -16  # a dead channel's range, relative to its tensor's widest (spec 4.1)
MIN_CLIP = 1e-8  # a tensor that is zero on every calibration image
CLIP_METHODS = ("max", "percentile", "mse")
COPY_OPS = ("maxpool", "concat", "upsample_nearest")  # output keeps the input's quantization
REQUANTIZING_OPS = ("conv2d", "linear", "add", "avgpool", "global_avgpool", "upsample_bilinear", "mul")
IMAGE_BITS = 8  # a resampled copy of the input image (spec 5.6.1)
HUFFMAN_CALIB_IMAGES = 1000


class QuantizationError(ValueError):
    """A model or configuration that cannot be quantized; the message says why."""


@dataclass(frozen=True)
class QuantConfig:
    bits: int = 4  # n: code width of every stored activation
    extra_bits: int = 3  # m: DQA extra bits of important channels; 0 = direct
    important_ratio: float = 0.4
    clip: str = "mse"
    percentile: float = 99.99
    rank: str = "noise"
    stream_margin: float = 0.02  # error-stream capacity above the calibration maximum
    seed: int = 0

    def validate(self) -> None:
        if not 2 <= self.bits <= 8:
            raise QuantizationError(f"--bits {self.bits} is out of range: activations take 2..8 bits")
        if not 0 <= self.extra_bits <= 4:
            raise QuantizationError(f"--extra-bits {self.extra_bits} is out of range: 0..4")
        if self.bits + self.extra_bits > 12:
            raise QuantizationError(f"bits + extra bits = {self.bits + self.extra_bits} exceeds 12")
        if not 0.0 <= self.important_ratio <= 1.0:
            raise QuantizationError(f"--important-ratio {self.important_ratio} is outside 0..1")
        if self.clip not in CLIP_METHODS:
            raise QuantizationError(f"unknown clipping method {self.clip!r}; choose from {', '.join(CLIP_METHODS)}")
        if self.rank not in RANKERS and self.rank not in GLOBAL_RANKINGS:
            raise QuantizationError(f"unknown ranking {self.rank!r}; choose from "
                                    f"{', '.join((*RANKERS, *GLOBAL_RANKINGS))}")
        if not 50.0 < self.percentile <= 100.0:
            raise QuantizationError(f"percentile {self.percentile} is outside (50, 100]")

    @property
    def uses_dqa(self) -> bool:
        return self.extra_bits > 0 and self.important_ratio > 0


# -- activation ranges ---------------------------------------------------------

def _levels(bits: np.ndarray | int, signed: bool):
    bits = np.asarray(bits)
    return (2.0 ** (bits - 1) - 1) if signed else (2.0 ** bits - 1)


def _mse_clip(stats: ChannelStats, levels: np.ndarray, candidates: int = 64) -> np.ndarray:
    """Per channel, the clipping value in (0, max] minimizing the squared rounding
    error of the calibration histogram (bin centres stand for their values)."""
    centres = (np.arange(HIST_BINS) + 0.5) / HIST_BINS  # in units of amax
    fractions = np.linspace(1.0 / candidates, 1.0, candidates)
    best = np.empty(len(stats.amax))
    for c in range(len(stats.amax)):
        step = fractions[:, None] / levels[c]
        q = np.minimum(np.rint(centres[None, :] / step), levels[c]) * step
        err = ((centres[None, :] - q) ** 2 * stats.hist[c][None, :]).sum(axis=1)
        best[c] = fractions[np.argmin(err)] * stats.amax[c]
    return best


def _clip(stats: ChannelStats, bits, signed: bool, config: QuantConfig) -> np.ndarray:
    if config.clip == "max":
        clip = stats.amax.copy()
    elif config.clip == "percentile":
        clip = stats.percentile(config.percentile)
    else:
        levels = np.broadcast_to(_levels(bits, signed), stats.amax.shape)
        clip = _mse_clip(stats, levels)
    # a dead or constant channel still needs a positive step, and one that keeps its
    # requantization multipliers in range: a floor relative to the tensor's widest channel
    return np.maximum(clip, max(MIN_CLIP, CLIP_FLOOR_RATIO * float(clip.max(initial=0.0))))


def _activation_tensor(name: str, shape, stats: ChannelStats, signed: bool, bounds: tuple[float, float],
                       config: QuantConfig, rng, order: np.ndarray | None,
                       count: int | None) -> tuple[QTensor, np.ndarray | None]:
    """The stored tensor, and its channel ranking (most important first; None when direct)."""
    n, m = config.bits, config.extra_bits
    reach = max(abs(bounds[0]), abs(bounds[1]))  # nothing beyond what the activation lets through
    clip = np.minimum(_clip(stats, n, signed, config), reach)
    important = np.zeros(len(clip), dtype=bool)
    if config.uses_dqa:
        if count is None:
            count = int(round(config.important_ratio * len(clip)))
        if order is None:
            if config.rank not in RANKERS:
                raise QuantizationError(f"tensor {name!r} has no {config.rank} ranking: the rankings given "
                                        "do not cover this model")
            order = RANKERS[config.rank](stats, clip, rng)
        order = np.asarray(order)
        important[order[:count]] = True
        # important channels are rounded at n + m bits: their best clip differs
        if config.clip == "mse" and count:
            fine = _clip(stats, n + m, signed, config)
            clip = np.where(important, np.minimum(fine, reach), clip)
    scale = clip / _levels(n, signed)
    return QTensor(name, tuple(shape), n, signed, m if config.uses_dqa else 0, scale, important), order


def _input_tensor(node: Node, shape) -> QTensor:
    """uint8 pixels in; consumers read LUT[c][pixel] (spec 5.1)."""
    pixels = np.arange(256, dtype=np.float64)
    x = (pixels[None, :] * node.attrs["pixel_scale"] - np.asarray(node.params["mean"])[:, None]) \
        / np.asarray(node.params["std"])[:, None]
    step = np.maximum(np.abs(x).max(axis=1), 1e-12) / INPUT_LUT_MAX
    lut = np.clip(np.floor(x / step[:, None] + 0.5), -INPUT_LUT_MAX, INPUT_LUT_MAX).astype(np.int8)
    return QTensor(node.output, tuple(shape), 8, False, 0, step, np.zeros(shape[2], dtype=bool), lut=lut)


def _inherit(name: str, shape, sources: list[QTensor]) -> QTensor:
    first = sources[0]
    for s in sources[1:]:
        if (s.bits, s.extra_bits, s.signed) != (first.bits, first.extra_bits, first.signed):
            raise QuantizationError(f"tensor {name!r}: concatenated inputs differ in bits or signedness")
    return QTensor(name, tuple(shape), first.bits, first.signed, first.extra_bits,
                   np.concatenate([s.scale for s in sources]),
                   np.concatenate([s.important for s in sources]))


# -- fixed-point multipliers -----------------------------------------------------

def fixed_point(*reals: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Int32 multipliers sharing one shift per channel (spec section 3)."""
    reals = [np.asarray(r, dtype=np.float64) for r in reals]
    largest = np.maximum.reduce([np.abs(r) for r in reals])
    if np.any(largest >= 2.0 ** 30):
        raise QuantizationError("a requantization multiplier is >= 2^30: the model's scales are degenerate")
    with np.errstate(divide="ignore"):
        shift = np.where(largest > 0, 30 - np.floor(np.log2(np.where(largest > 0, largest, 1))), MAX_SHIFT)
    shift = np.clip(shift, 0, MAX_SHIFT).astype(np.int64)
    mults = [np.rint(r * 2.0 ** shift).astype(np.int64) for r in reals]
    overflow = np.maximum.reduce([np.abs(mm) for mm in mults]) >= 2 ** 31
    shift = np.where(overflow, shift - 1, shift)
    return [np.rint(r * 2.0 ** shift).astype(np.int64) for r in reals], shift


def out_range(t: QTensor, bounds: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """Storage range per channel of `t` after the producer's activation, which clamps to the real
    `bounds` (spec 4)."""
    lo, hi = t.range_of(t.storage_bits)
    if bounds[0] > -np.inf:
        lo = np.maximum(lo, np.rint(bounds[0] / t.storage_step).astype(np.int64))
    if bounds[1] < np.inf:
        hi = np.minimum(hi, np.rint(bounds[1] / t.storage_step).astype(np.int64))
    return lo, hi


def _residual_steps(out: QTensor, src: QTensor, offset: int) -> np.ndarray:
    """Per output channel: the fine step of the viewed input channel (0 for padded channels)."""
    steps = np.zeros(out.channels)
    steps[offset:offset + src.channels] = src.fine_step
    return steps


def _weights(node: Node, x: QTensor, op: str):
    """int8 weights, int32 biases and the real value of one accumulator step per output channel
    (spec 3.1): the weight scale is the smallest that keeps |W| <= 127, |B| <= BIAS_LIMIT and
    the accumulator below 2^31, so no valid model is refused for a dead channel or a huge bias."""
    in_step = x.fine_step
    w = np.asarray(node.params["weight"], dtype=np.float64)
    if op == "linear":
        folded = w * in_step[None, :]
    else:
        groups = node.attrs["groups"]
        cout, cin_g = w.shape[0], w.shape[3]
        group_of_out = np.arange(cout) // (cout // groups)
        in_index = group_of_out[:, None] * cin_g + np.arange(cin_g)[None, :]
        folded = w * in_step[in_index][:, None, None, :]
    bias_real = np.asarray(node.params["bias"], dtype=np.float64)
    amax = np.abs(folded.reshape(len(folded), -1)).max(axis=1)
    w_scale = np.maximum(amax / WEIGHT_MAX, np.abs(bias_real) / BIAS_LIMIT)
    w_scale = np.where(w_scale > 0, w_scale, 1.0)  # an all-zero channel: any scale gives zeros
    shape = (-1,) + (1,) * (folded.ndim - 1)
    fine_max = reference.fine_max_abs(x)
    for _ in range(ACCUMULATOR_FIT_STEPS):
        w_int = np.clip(np.rint(folded / w_scale.reshape(shape)), -WEIGHT_MAX, WEIGHT_MAX).astype(np.int8)
        bound = fine_max * np.abs(w_int.astype(np.int64)).reshape(len(w_int), -1).sum(axis=1)
        over = bound >= ACCUMULATOR_LIMIT
        if not over.any():
            return w_int, np.rint(bias_real / w_scale).astype(np.int64), w_scale
        w_scale = np.where(over, w_scale * (bound / (ACCUMULATOR_LIMIT - 1)) * (1 + 2.0 ** -10), w_scale)
    raise QuantizationError(f"node {node.name!r}: the int32 accumulator cannot hold this layer's sums "
                            f"(fan-in {folded[0].size} at {x.bits + x.extra_bits} fine bits); use fewer bits")


def _multipliers(reals: dict[str, np.ndarray], attrs: dict, arrays: dict) -> np.ndarray:
    """Fixed-point multipliers sharing one shift per channel into `arrays`; with leaky_relu also
    their negative-side twins ("negative_" + name, spec 4). Returns the shift."""
    names = list(reals)
    values = list(reals.values())
    if attrs.get("act") == "leaky_relu":
        names += [f"negative_{name}" for name in reals]
        values += [attrs["negative_slope"] * v for v in reals.values()]
    mults, shift = fixed_point(*values)
    arrays.update(zip(names, mults))
    return shift


def _qnode(node: Node, tensors: dict[str, QTensor]) -> QNode:
    out = tensors[node.output]
    ins = [tensors[i] for i in node.inputs]
    at = dict(node.attrs)
    arrays: dict[str, np.ndarray] = {}
    if node.op in ("conv2d", "linear"):
        w_int, bias, w_scale = _weights(node, ins[0], node.op)
        arrays.update(weight=w_int, bias=bias)
        reals = {"multiplier": w_scale / out.storage_step}
        if len(ins) == 2:
            at.setdefault("residual_stride", 1)
            at.setdefault("residual_channel_offset", 0)
            reals["residual_multiplier"] = (_residual_steps(out, ins[1], at["residual_channel_offset"])
                                            / out.storage_step)
        shift = _multipliers(reals, at, arrays)
    elif node.op == "add":
        at.setdefault("b_stride", 1)
        at.setdefault("b_channel_offset", 0)
        shift = _multipliers({
            "multiplier": _residual_steps(out, ins[0], 0) / out.storage_step,
            "residual_multiplier": at.get("b_sign", 1) * _residual_steps(out, ins[1], at["b_channel_offset"])
                                   / out.storage_step},
            at, arrays)
    elif node.op == "mul":
        x, vec = ins
        (mult,), shift = fixed_point(x.fine_step * vec.fine_step / out.storage_step)
        arrays["multiplier"] = mult
    elif node.op == "input":  # its normalization, so that the model can quantize new data (features.py)
        at.update(mean=tuple(float(v) for v in node.params["mean"]), std=tuple(float(v) for v in node.params["std"]))
        return QNode(node.name, node.op, [], node.output, at, arrays)
    elif node.op == "activation":
        arrays["index_multiplier"], arrays["index_shift"], arrays["table"], table_step = _table(node, ins[0])
        (arrays["multiplier"],), shift = fixed_point(np.full(out.channels, table_step) / out.storage_step)
    elif node.op in ("avgpool", "global_avgpool", "upsample_bilinear"):
        if node.op == "upsample_bilinear":
            h, w = (2 * s for s in at["scale"])  # weights in units of 1 / (2 s) per axis (spec 5.6.1)
            if h * w * reference.fine_max_abs(ins[0]) >= ACCUMULATOR_LIMIT:
                raise QuantizationError(f"node {node.name!r}: bilinear factors {at['scale']} are too large for "
                                        "an int32 sum (spec 5.6.1)")
        else:
            h, w = (ins[0].shape[0], ins[0].shape[1]) if node.op == "global_avgpool" else at["kernel"]
        (mult,), shift = fixed_point(ins[0].fine_step / (out.storage_step * h * w))
        arrays["multiplier"] = mult
    else:
        return QNode(node.name, node.op, list(node.inputs), node.output, at, arrays)
    lo, hi = out_range(out, act_bounds(at))
    arrays.update(shift=shift, out_min=lo, out_max=hi)
    return QNode(node.name, node.op, list(node.inputs), node.output, at, arrays)


def activation_tensors(graph: Graph, calib: Calibration, config: QuantConfig,
                       rankings: dict[str, np.ndarray] | None = None,
                       important_counts: dict[str, int] | None = None) -> dict[str, QTensor]:
    """How every tensor of `graph` is stored for `config`: scales, signedness,
    important channels (no weights, no Huffman codes yet). Simulators use it to
    quantize exactly as the deployed model will."""
    return _activation_tensors(graph, calib, config, rankings, important_counts)[0]


def channel_orders(graph: Graph, calib: Calibration, config: QuantConfig,
                   rankings: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray]:
    """Per DQA tensor, the channel order `quantize` uses (most important first):
    `rankings` where given, else the config's local criterion."""
    return _activation_tensors(graph, calib, config, rankings, None)[1]


def _activation_tensors(graph: Graph, calib: Calibration, config: QuantConfig,
                        rankings: dict[str, np.ndarray] | None,
                        important_counts: dict[str, int] | None):
    rankings = rankings or {}
    important_counts = important_counts or {}
    rng = np.random.default_rng(config.seed)
    tensors: dict[str, QTensor] = {}
    orders: dict[str, np.ndarray] = {}
    stored_signed = _stored_signed(graph)
    as_output = _stored_as_output(graph)
    output_clip = max(float(calib.tensors[t].amax.max()) for t in as_output)
    for node in graph.nodes:
        name, shape = node.output, graph.shapes[node.output]
        if node.op == "input":
            tensors[name] = _input_tensor(node, shape)
        elif node.op == "flatten":
            src = tensors[node.inputs[0]]
            tiles = src.shape[0] * src.shape[1]
            tensors[name] = QTensor(name, tuple(shape), src.bits, src.signed, src.extra_bits,
                                    np.tile(src.scale, tiles), np.tile(src.important, tiles),
                                    alias_of=src.alias_of or src.name)
        elif node.op in COPY_OPS + ("depth_to_space",):
            if node.op == "depth_to_space":
                tensors[name] = _shuffled(node, shape, tensors[node.inputs[0]])
            else:
                tensors[name] = _inherit(name, shape, [tensors[i] for i in node.inputs])
        elif name in as_output:
            tensors[name] = _one_scale_tensor(name, shape, OUTPUT_BITS, True, output_clip)
        elif node.op == "activation":
            tensors[name] = _table_output(node, shape, calib.tensors[name], stored_signed[name], config)
        elif node.op in REQUANTIZING_OPS:
            signed = stored_signed[name]
            stored_as = config
            if node.op == "upsample_bilinear" and node.inputs[0] == graph.input:
                stored_as = replace(config, bits=IMAGE_BITS, extra_bits=0)
            tensors[name], order = _activation_tensor(name, shape, calib.tensors[name], signed,
                                                      act_bounds(node.attrs), stored_as,
                                                      rng, rankings.get(name), important_counts.get(name))
            block = _shuffle_block(graph, name)
            if block > 1:
                tensors[name] = _tie_blocks(tensors[name], block)
            if order is not None:
                orders[name] = order
        else:
            raise QuantizationError(f"node {node.name!r}: op {node.op!r} cannot be quantized "
                                    "(run the graph passes first)")
    return tensors, orders


def quantize(graph: Graph, calib: Calibration, config: QuantConfig, calib_images: np.ndarray,
             rankings: dict[str, np.ndarray] | None = None,
             important_counts: dict[str, int] | None = None) -> QModel:
    """`rankings` (tensor -> channels, most important first) overrides the
    config's local ranking criterion, e.g. with a whole-network greedy search;
    `important_counts` (tensor -> channels) overrides the config's important
    ratio per tensor, e.g. to fit a memory budget (dqa_mcu.quantize.budget)."""
    config.validate()
    if config.uses_dqa and config.rank in GLOBAL_RANKINGS and not rankings:
        # a whole-network ranking needs the graph and images: quantize() cannot make one
        raise QuantizationError(f"ranking {config.rank!r} is computed over the whole network: pass its "
                                "rankings (dqa_mcu.quantize.greedy.compute_rankings, or --rankings FILE)")
    tensors = activation_tensors(graph, calib, config, rankings, important_counts)
    nodes = [_qnode(node, tensors) for node in graph.nodes]
    model = QModel(nodes, tensors, graph.input, graph.output, config=asdict(config))
    if config.uses_dqa:
        _fit_error_streams(model, calib_images[:HUFFMAN_CALIB_IMAGES], config)
    return model


def _stored_signed(graph: Graph) -> dict[str, bool]:
    """Per tensor, whether it is stored signed (spec 4). After relu / relu6: unsigned; pooling and
    bilinear resampling keep their input's sign (the input stage's values are signed, whatever
    the pixels); copy ops keep their inputs'. Inputs of a concat share signedness (spec 5.6):
    when one is signed, the producers of the others are stored signed too, until none differ."""
    forced: set[str] = set()
    while True:
        signed: dict[str, bool] = {}
        for node in graph.nodes:
            if node.op == "input":
                signed[node.output] = True
            elif node.op == "activation":
                signed[node.output] = node.attrs["function"] not in NON_NEGATIVE_FUNCTIONS
            elif node.op in REQUANTIZING_OPS:
                keeps_sign = node.op in ("avgpool", "global_avgpool", "upsample_bilinear", "mul")
                signed[node.output] = node.output in forced or (
                    act_bounds(node.attrs)[0] < 0
                    and (not keeps_sign or any(signed[t] for t in node.inputs)))
            else:
                signed[node.output] = any(signed[t] for t in node.inputs)
        resign = {source for node in graph.nodes if node.op == "concat"
                  and len({signed[t] for t in node.inputs}) > 1
                  for t in node.inputs if not signed[t] for source in _requantized_sources(graph, t)}
        if resign <= forced:
            return signed
        forced |= resign


def _stored_as_output(graph: Graph) -> set[str]:
    """The tensors stored as the graph output is (spec 5.7): the output itself or, when a copy op
    (pooling by max, concat, nearest upsampling, depth_to_space) produces it, the tensors it copies."""
    def copied(tensor: str) -> set[str]:
        node = graph.producer(tensor)
        if node.op not in COPY_OPS + ("depth_to_space",):
            return {tensor}
        return {s for t in node.inputs for s in copied(t)}

    sources = copied(graph.output)
    if graph.input in sources:
        raise QuantizationError(f"graph output {graph.output!r} copies the input image: end the model with a "
                                "conv, linear, add or pooling layer")
    return sources


def _requantized_sources(graph: Graph, tensor: str) -> set[str]:
    """The tensors of requantizing ops that `tensor` copies (itself, if it is one)."""
    node = graph.producer(tensor)
    if node.op in REQUANTIZING_OPS:
        return {tensor}
    if node.op == "input":
        return set()
    return {s for t in node.inputs for s in _requantized_sources(graph, t)}


def _table_output(node: Node, shape, stats: ChannelStats, signed: bool, config: QuantConfig) -> QTensor:
    """The output of a table activation: direct n-bit, a scale per channel, no important channels
    (spec 5.4.2: whole-network rankings do not see it)."""
    return _activation_tensor(node.output, shape, stats, signed, (-np.inf, np.inf), replace(config, extra_bits=0),
                              None, None, 0)[0]


def _one_scale_tensor(name: str, shape, bits: int, signed: bool, clip: float) -> QTensor:
    """A direct tensor with one scale for every channel (the graph output)."""
    step = max(clip, MIN_CLIP) / _levels(bits, signed)
    return QTensor(name, tuple(shape), bits, signed, 0, np.full(shape[2], step), np.zeros(shape[2], dtype=bool))


def _table(node: Node, x: QTensor) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """(index multipliers, index shifts, TABLE, table step) of a table activation (spec 5.4.2): the
    function in float64 on TABLE_REACH steps either side of 0 of the input's widest real reach."""
    if x.lut is not None:
        raise QuantizationError(f"node {node.name!r}: a {node.attrs['function']} table must read a tensor produced "
                                f"by a conv, linear, add, mul or pooling layer (spec 5.4.2), not {x.name!r}")
    lo, hi = x.range_of(x.storage_bits)
    reach = np.maximum(np.abs(lo), np.abs(hi)) * x.storage_step  # the real reach of each channel
    index_step = max(float(reach.max()), MIN_CLIP) / TABLE_REACH
    (index_multiplier,), index_shift = fixed_point(x.fine_step / index_step)
    k = np.arange(-TABLE_REACH, TABLE_REACH + 1, dtype=np.float64)
    y = TABLE_FUNCTIONS[node.attrs["function"]](torch.from_numpy(k * index_step)).numpy()
    table_step = max(float(np.abs(y).max()), MIN_CLIP) / TABLE_MAX
    table = np.clip(np.floor(y / table_step + 0.5), -TABLE_MAX, TABLE_MAX).astype(np.int16)
    return index_multiplier, index_shift, table, table_step


def _shuffle_block(graph: Graph, name: str) -> int:
    """The block size of the depth_to_space ops reading `name` (1 when none does)."""
    blocks = {c.attrs["block"] for c in graph.consumers(name) if c.op == "depth_to_space"}
    if len(blocks) > 1:
        raise QuantizationError(f"tensor {name!r} feeds depth_to_space with different blocks {sorted(blocks)}")
    return blocks.pop() if blocks else 1


def _tie_blocks(t: QTensor, block: int) -> QTensor:
    """One scale and one importance per group of block^2 channels (spec 5.6): the widest
    scale of the group, important when any of them is, so depth_to_space copies exactly."""
    group = block * block
    scale = t.scale.reshape(-1, group).max(axis=1).repeat(group)
    important = t.important.reshape(-1, group).any(axis=1).repeat(group)
    return replace(t, scale=scale, important=important)


def _shuffled(node: Node, shape, src: QTensor) -> QTensor:
    group = node.attrs["block"] ** 2
    if src.lut is not None or not np.array_equal(src.scale.reshape(-1, group).min(axis=1),
                                                 src.scale.reshape(-1, group).max(axis=1)):
        raise QuantizationError(f"node {node.name!r}: depth_to_space must read a tensor produced by a "
                                f"conv, linear, add, pooling or bilinear layer (spec 5.6), not {src.name!r}")
    return QTensor(node.output, tuple(shape), src.bits, src.signed, src.extra_bits,
                   src.scale[::group].copy(), src.important[::group].copy())


def _fit_error_streams(model: QModel, images: np.ndarray, config: QuantConfig) -> None:
    """Huffman codes from the error histograms, then capacities from stream lengths.

    Both come from one run of the integer reference without codes (so without
    overflow), so the error symbols are those of the deployed arithmetic.
    """
    stats = reference.run(model, images, per_image_stats=True).stats
    for name, s in stats.items():
        t = model.tensors[name]
        t.huffman = HuffmanCode.from_counts(s.symbol_counts)
        lengths = np.asarray(t.huffman.lengths)

        def capacity(counts: np.ndarray) -> int:  # the longest stream seen, plus the margin (spec 2.3)
            return int(np.ceil(int((counts @ lengths).max()) * (1 + config.stream_margin)))

        t.err_capacity_bits = capacity(s.image_symbol_counts)  # per image: the whole tensor's stream
        t.err_row_capacity_bits = capacity(np.concatenate(s.per_row_counts))  # per image row (spec 2.4)
