"""Static memory plan: one activation arena, offsets from tensor lifetimes, and the schedule.

Every stored tensor (code plane + error stream) and every kernel's scratch
buffer is a block with a lifetime [first step, last step]; blocks whose
lifetimes overlap must not overlap in memory. Placement is greedy, largest
block first, lowest free offset (as in TFLite Micro's greedy planner).
Scratch sizes mirror the C kernels' *_get_buffer_size(); the generated
init function checks the two agree.

The schedule (docs/spec.md 2.4) runs a segment of consecutive layers as a
row pipeline: a tensor produced and consumed only inside the segment is kept
as a ring of rows, each layer producing an output row as soon as the input
rows its window needs exist. The scheduler is a pure function of the layers'
row geometry (`Stage`, `WindowRead`, ...) and of per-row storage bytes, so
the int8 mode can build its own stages and reuse it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from dqa_mcu.qmodel import QModel, QNode

ALIGN = 4
LINE_BUFFER_ELEMENT_BYTES = 2  # int16 fine-domain values
ACC_BYTES = 4
MAC_ROWS = 4  # output channels per weight tile: DQA_MAC_ROWS in firmware/runtime/src/dqa_mac.h


@dataclass
class Block:
    name: str  # tensor name, or "<node>/scratch"
    size: int
    first: int  # node index that writes it first
    last: int  # node index that reads it last
    offset: int = -1
    plane_bytes: int = 0  # tensors: code plane (the stream follows it)


@dataclass
class MemoryPlan:
    blocks: list[Block]
    arena_bytes: int
    segments: list["Segment"] = field(default_factory=list)  # row-streamed segments, in run order
    schedule: str = "layer"  # how the segments were chosen (SCHEDULES)
    one_pixel: frozenset = frozenset()  # convs run one output pixel at a time (one_pixel_convs)

    def block(self, name: str) -> Block:
        return next(b for b in self.blocks if b.name == name)

    def describe(self, model: QModel) -> str:
        rows = [f"{'block':40s} {'offset':>8s} {'bytes':>8s}  lifetime (node steps)"]
        for b in sorted(self.blocks, key=lambda b: (b.first, b.name)):
            first, last = model.nodes[b.first].name, model.nodes[b.last].name
            rows.append(f"{b.name:40s} {b.offset:8d} {b.size:8d}  {b.first}..{b.last} ({first} .. {last})")
        for seg in self.segments:
            rows.append(seg.describe())
        rows.append(f"arena peak: {self.arena_bytes} bytes ({self.schedule} schedule, "
                    f"{len(self.segments)} row-streamed segments)")
        return "\n".join(rows)


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def ring_pixels(h: int, w: int, kh: int, kw: int, dh: int = 1, dw: int = 1) -> int:
    """Input pixels a sliding window keeps in its line buffer (dqa_window.c)."""
    return min(h * w, (kh - 1) * dh * w + min((kw - 1) * dw, w - 1) + 1)


WORK_ONLY_OPS = ("add", "concat", "activation", "upsample_nearest")  # they keep nothing in scratch between calls


def work_bytes(node: QNode, model: QModel, pairs: bool = True) -> int:
    """The part of a kernel's scratch needed only within one call (*_get_work_size(); a segment's
    layers share one block of their largest, _blocks): the whole scratch of WORK_ONLY_OPS; a pool's
    accumulators of one output pixel, or for a single output position, its input pixel; a conv's
    int32 accumulator per output channel (with pixels in pairs, two per channel up to the last whole
    tile, and both windows' int16 columns, unless `pairs` is off: MemoryPlan.one_pixel) and a residual
    pixel."""
    t = model.tensors
    out, ins = t[node.output], [t[i] for i in node.inputs]
    if node.op in WORK_ONLY_OPS:
        return scratch_bytes(node, model)
    if node.op in ("maxpool", "avgpool", "global_avgpool"):
        single = out.shape[:2] == (1, 1)
        return _align(LINE_BUFFER_ELEMENT_BYTES * ins[0].channels) if single else ACC_BYTES * out.channels
    if node.op not in ("conv2d", "linear"):
        return 0
    acc, columns = ACC_BYTES * out.channels, 0
    if node.op == "conv2d":
        c_out, kh, kw, c_in_g = node.arrays["weight"].shape
        groups = node.attrs["groups"]
        if pairs and pairs_pixels(node, model):
            k = kh * kw * c_in_g  # output pixels in pairs: a second pixel's accumulators, both windows
            c_out_g = c_out // groups  # up to the end of the last group's last whole tile
            acc = ACC_BYTES * 2 * (c_out - c_out_g + -(-c_out_g // MAC_ROWS) * MAC_ROWS)
            columns = groups * 2 * (k + k % 2)
    residual = ins[1].channels if len(ins) == 2 else 0
    return _align(acc + LINE_BUFFER_ELEMENT_BYTES * (residual + columns))


def pairs_pixels(node: QNode, model: QModel) -> bool:
    """Whether dqa_conv2d can take this conv's output pixels two at a time (conv_pairs_pixels(), unless
    told one_pixel): tiled weights (not depthwise) and more than one output pixel."""
    if node.op != "conv2d":
        return False
    c_out, _, _, c_in_g = node.arrays["weight"].shape
    out = model.tensors[node.output]
    return not (c_in_g == 1 and c_out == node.attrs["groups"]) and out.shape[0] * out.shape[1] > 1


def scratch_bytes(node: QNode, model: QModel, pairs: bool = True) -> int:
    """Exactly what the C kernel's *_get_buffer_size() returns (0: no kernel).

    int16 line-buffer values, an int32 accumulator per output channel, and a
    pixel of each extra input read as a stream; a conv's is its work_bytes()
    and its window ring.
    """
    t = model.tensors
    out = t[node.output]
    ins = [t[i] for i in node.inputs]
    acc = ACC_BYTES * out.channels
    if node.op in ("conv2d", "linear"):
        ring = 1
        if node.op == "conv2d":
            _, kh, kw, _ = node.arrays["weight"].shape
            ring = ring_pixels(ins[0].shape[0], ins[0].shape[1], kh, kw, *node.attrs["dilation"])
        return work_bytes(node, model, pairs) + _align(LINE_BUFFER_ELEMENT_BYTES * ins[0].channels * ring)
    if node.op in ("add", "concat"):
        return _align(acc + LINE_BUFFER_ELEMENT_BYTES * (ins[0].channels + ins[1].channels))
    if node.op in ("maxpool", "avgpool", "global_avgpool"):
        ring = 1 if out.shape[:2] == (1, 1) else ring_pixels(*ins[0].shape[:2], *node.attrs["kernel"])
        return _align(acc + LINE_BUFFER_ELEMENT_BYTES * ins[0].channels * ring)
    if node.op == "mul":  # a pixel of x and one of s (a vector s: its only pixel, read once)
        return _align(acc + LINE_BUFFER_ELEMENT_BYTES * (ins[0].channels + ins[1].channels))
    if node.op == "activation":  # one input pixel
        return _align(acc + LINE_BUFFER_ELEMENT_BYTES * ins[0].channels)
    if node.op == "upsample_nearest":
        return _align(acc + LINE_BUFFER_ELEMENT_BYTES * ins[0].channels)
    if node.op == "depth_to_space":  # one input row
        return _align(acc + LINE_BUFFER_ELEMENT_BYTES * ins[0].shape[1] * ins[0].channels)
    if node.op == "upsample_bilinear":  # a ring of two input rows
        h, w, c = ins[0].shape
        return _align(acc + LINE_BUFFER_ELEMENT_BYTES * min(h, 2) * w * c)
    return 0  # input, flatten: no kernel


def _lifetimes(model: QModel) -> dict[str, list[int]]:
    """Storage tensor -> [first, last] node index; aliases extend their source."""
    life: dict[str, list[int]] = {}
    for i, node in enumerate(model.nodes):
        store = model.storage_of(node.output).name
        life.setdefault(store, [i, i])
        for name in node.inputs:
            life[model.storage_of(name).name][1] = i
    last = len(model.nodes) - 1
    life[model.storage_of(model.input).name][0] = 0  # written by the application before run
    life[model.storage_of(model.output).name][1] = last  # read by the application after run
    return life


def place(blocks: list[Block]) -> MemoryPlan:
    """Give every block an offset (sizes rounded up to ALIGN); blocks alive at once never overlap."""
    for b in blocks:
        b.size = _align(b.size)
    placed: list[Block] = []
    for b in sorted(blocks, key=lambda b: (-b.size, b.first, b.name)):
        clashes = sorted((p for p in placed if p.first <= b.last and b.first <= p.last),
                         key=lambda p: p.offset)
        offset = 0
        for p in clashes:
            if offset + b.size <= p.offset:
                break
            offset = max(offset, p.offset + p.size)
        b.offset = offset
        placed.append(b)
    return MemoryPlan(blocks, max((b.offset + b.size for b in blocks), default=0))


# ---- the row-streamed schedule -------------------------------------------------------------------
SCHEDULES = ("auto", "layer", "stream")  # auto: stream where it lowers the arena
DEFAULT_SCHEDULE = "auto"  # what export runs (and what a memory budget is fitted under) unless told
STREAMED_OPS = ("conv2d", "linear", "add", "maxpool", "avgpool", "global_avgpool", "activation",
                "concat", "upsample_nearest")  # row-resumable kernels


@dataclass(frozen=True)
class WindowRead:
    """A sliding window over an (h, w) input, walked as dqa_window.c does; one unit = one output row."""
    h: int
    w: int
    w_out: int
    kh: int
    kw: int
    sh: int = 1
    sw: int = 1
    pt: int = 0
    pl: int = 0
    dh: int = 1
    dw: int = 1

    def need(self, u: int) -> int:
        """Input rows that must exist before output row u - 1 can be computed."""
        return max(0, min(self.h, (u - 1) * self.sh - self.pt + (self.kh - 1) * self.dh + 1))

    def oldest(self, u: int) -> int:
        """First input row still to be read after u output rows: the row of the reader's next pixel,
        or the next window's top row when the reader jumps to it (a ring's rows are skipped unread)."""
        top = min(max(u * self.sh - self.pt, 0), self.h)
        if u == 0:
            return top
        last_row = min((u - 1) * self.sh - self.pt + (self.kh - 1) * self.dh, self.h - 1)
        last_col = min((self.w_out - 1) * self.sw - self.pl + (self.kw - 1) * self.dw, self.w - 1)
        last = last_row * self.w + last_col
        return max(top, 0 if last_row < 0 or last < 0 else (last + 1) // self.w)


@dataclass(frozen=True)
class InPlaceWindowRead(WindowRead):
    """A sliding window read straight from the ring's rows, with no line buffer (the int8 kernels): the
    rows from the next window's top on stay."""

    def oldest(self, u: int) -> int:
        return min(max(u * self.sh - self.pt, 0), self.h)


@dataclass(frozen=True)
class PointRead:
    """One input pixel per output pixel at (oh * stride, ow * stride): a fused residual, an add, an
    activation, a concat."""
    h: int
    w: int
    w_out: int
    stride: int = 1

    def need(self, u: int) -> int:
        return max(0, min(self.h, (u - 1) * self.stride + 1))

    def oldest(self, u: int) -> int:
        return min(u * self.stride, self.h)  # the reader jumps to the next row it reads


@dataclass(frozen=True)
class RepeatRead:
    """Each input row for `scale` consecutive output rows (nearest upsampling)."""
    h: int
    scale: int

    def need(self, u: int) -> int:
        return 0 if u == 0 else min(self.h, (u - 1) // self.scale + 1)

    def oldest(self, u: int) -> int:
        return min(u // self.scale, self.h)


@dataclass(frozen=True)
class RowsRead:
    """Every input row once, in order, into one output position (global pooling); one unit = one input row."""
    h: int

    def need(self, u: int) -> int:
        return u

    def oldest(self, u: int) -> int:
        return u


@dataclass(frozen=True)
class Stage:
    """One layer as the scheduler sees it: `units` steps of its row loop, what each step reads, and
    how many output rows exist after u steps (all `out_rows` at the last step with `final_only`)."""
    name: str
    output: str
    out_rows: int
    units: int
    reads: tuple  # ((tensor, WindowRead | PointRead | RowsRead), ...)
    final_only: bool = False

    def rows_after(self, u: int) -> int:
        if self.final_only:
            return self.out_rows if u == self.units else 0
        return u


@dataclass
class Segment:
    """Layers first..last (node indices) run as one row pipeline. steps[s][i]: units stage i has done
    after step s (the generated C's table); ring_rows: the rows each streamed tensor keeps."""
    first: int
    last: int
    stages: list[Stage]
    steps: list[list[int]]
    ring_rows: dict[str, int]

    def scratch_name(self) -> str:
        """The block of scratch its layers share: what each needs only within one call."""
        return f"segment_{self.first}_{self.last}/scratch"

    def advance_bytes(self) -> int:
        """Bytes per round of the generated table of advances: one bit per stage."""
        return (len(self.stages) + 7) // 8

    def advance_table_c(self) -> str:
        """The initializer of the generated table of advances: per round, bit k % 8 of byte k / 8 set when
        stage k does its next unit in that round (simulate lets each do at most one), in hexadecimal."""
        rows, before = [], [0] * len(self.stages)
        for after in self.steps:
            advanced = [a - b for a, b in zip(after, before)]
            assert set(advanced) <= {0, 1}, f"a stage did {max(advanced)} units in one round"
            rows.append([sum(bit << (k % 8) for k, bit in enumerate(advanced) if k // 8 == byte)
                         for byte in range(self.advance_bytes())])
            before = after
        return ",\n".join("    {" + ", ".join(f"0x{b:02x}u" for b in row) + "}" for row in rows)

    def describe(self) -> str:
        rings = ", ".join(f"{t} {r} rows" for t, r in self.ring_rows.items()) or "none"
        names = " -> ".join(s.name for s in self.stages)
        return f"stream segment {self.first}..{self.last} ({len(self.steps)} steps): {names}; rings: {rings}"


def simulate(stages: list[Stage], heights: dict[str, int], streamed: set[str]) -> tuple[list, dict]:
    """The row pipeline in rounds: each round, every stage in order does one unit when its inputs
    allow (so no stage runs ahead of its consumers by more than its window). Returns the table of
    units done after each round and the ring rows each streamed tensor needs: after each row
    written, the rows from its consumers' oldest still needed row to the newest."""
    done = [0] * len(stages)
    produced = {s.output: 0 for s in stages}
    consumers = {t: [(i, r) for i, s in enumerate(stages) for name, r in s.reads if name == t] for t in streamed}
    ring = {t: 0 for t in streamed}

    def ready(i: int) -> bool:
        s = stages[i]
        return done[i] < s.units and all(
            r.need(done[i] + 1) <= (produced[name] if name in produced else heights[name]) for name, r in s.reads)

    def advance(i: int) -> None:
        done[i] += 1
        out = stages[i].output
        # a whole tensor (not a ring) is read once complete: its readers take the tensor's n_coded,
        # which the writer sets with its last pixel (spec 2.3); a ring row carries its own (2.4)
        complete = done[i] == stages[i].units
        produced[out] = stages[i].rows_after(done[i]) if out in streamed or complete else 0
        if out in streamed:
            oldest = min(r.oldest(done[j]) for j, r in consumers[out])
            ring[out] = max(ring[out], produced[out] - oldest)

    steps = []
    while True:
        moved = False
        for i in range(len(stages)):  # in order: a row written this round can be read this round
            if ready(i):
                advance(i)
                moved = True
        if not moved:
            break
        steps.append(list(done))
    stuck = [s.name for s, d in zip(stages, done) if d < s.units]
    if stuck:
        raise ValueError(f"row pipeline: {', '.join(stuck)} cannot finish (an input is not produced in order)")
    return steps, ring


def ring_slot(t) -> tuple[int, int]:
    """(offset of the error stream, bytes) of one ring row of a streamed tensor (dqa_tensor_t): its
    packed codes, then with DQA errors the row's error stream (capacity + one look-ahead byte) and,
    in the slot's last 4 bytes, its coded-symbol count."""
    plane = _align(math.ceil(t.shape[1] * t.channels * t.bits / 8))
    if not t.has_errors:
        return plane, plane
    return plane, plane + _align((t.err_row_capacity_bits + 7) // 8 + 1) + 4


def stage_of(node: QNode, model: QModel) -> Stage:
    """The row geometry of a DQA-path layer (one of STREAMED_OPS)."""
    t = model.tensors
    out = t[node.output]
    ins = [t[i] for i in node.inputs]
    h, w = ins[0].shape[:2]
    at = node.attrs
    if node.op == "global_avgpool" or (node.op in ("maxpool", "avgpool") and out.shape[:2] == (1, 1)):
        return Stage(node.name, node.output, 1, h, ((node.inputs[0], RowsRead(h)),), final_only=True)
    if node.op in ("conv2d", "maxpool", "avgpool"):
        if node.op == "conv2d":
            _, kh, kw, _ = node.arrays["weight"].shape
            (pt, _, pl, _), dil = at["padding"], at["dilation"]
        else:
            (kh, kw), (pt, _, pl, _), dil = at["kernel"], at["padding"], (1, 1)
        reads = [(node.inputs[0], WindowRead(h, w, out.shape[1], kh, kw, *at["stride"], pt, pl, *dil))]
        if len(ins) == 2:
            reads.append((node.inputs[1], PointRead(*ins[1].shape[:2], out.shape[1], at["residual_stride"])))
    elif node.op == "linear":
        reads = [(node.inputs[0], WindowRead(h, w, 1, h, w))]
    elif node.op == "activation":
        reads = [(node.inputs[0], PointRead(h, w, out.shape[1]))]
    elif node.op == "concat":
        reads = [(name, PointRead(h, w, out.shape[1])) for name in node.inputs]
    elif node.op == "upsample_nearest":
        reads = [(node.inputs[0], RepeatRead(h, at["scale"][0]))]
    else:  # add
        reads = [(node.inputs[0], PointRead(h, w, out.shape[1])),
                 (node.inputs[1], PointRead(*ins[1].shape[:2], out.shape[1], at["b_stride"]))]
    return Stage(node.name, node.output, out.shape[0], out.shape[0], tuple(reads))


def _streamed_tensors(model: QModel, first: int, last: int) -> set[str]:
    """Tensors written and read only by layers first..last: rings (the graph output never is)."""
    inside = {model.nodes[i].output for i in range(first, last + 1)}
    users = {}
    for i, node in enumerate(model.nodes):
        for name in node.inputs:
            users.setdefault(name, []).append(i)
    t = model.tensors
    return {name for name in inside if name != model.output and users.get(name)
            and all(first <= i <= last for i in users[name]) and t[name].alias_of is None
            and not any(x.alias_of == name for x in t.values())
            and (t[name].err_row_capacity_bits > 0 or not t[name].has_errors)}  # older models: no row capacity


def pipeline(first: int, last: int, stages: list[Stage], heights: dict[str, int], streamed: set[str]) -> Segment:
    """Steps first..last (their `stages`) as one row pipeline, the `streamed` tensors as rings."""
    steps, rings = simulate(stages, heights, streamed)
    return Segment(first, last, stages, steps, dict(sorted(rings.items())))


def segment(model: QModel, first: int, last: int) -> Segment:
    stages = [stage_of(model.nodes[i], model) for i in range(first, last + 1)]
    heights = {name: t.shape[0] for name, t in model.tensors.items()}
    return pipeline(first, last, stages, heights, _streamed_tensors(model, first, last))


def _blocks(model: QModel, segments: list[Segment], one_pixel: frozenset = frozenset()) -> list[Block]:
    """Arena blocks under a schedule: a segment's layers all run from its first step to its last, so
    their kept scratch, its rings and every tensor it touches live across the whole segment; the
    scratch they need only within a call (work_bytes) is one block of the largest."""
    span = {i: (i, i) for i in range(len(model.nodes))}
    rings = {}
    for seg in segments:
        span.update({i: (seg.first, seg.last) for i in range(seg.first, seg.last + 1)})
        rings.update({name: (rows, seg) for name, rows in seg.ring_rows.items()})
    blocks = []
    for name, (first, last) in _lifetimes(model).items():
        t = model.tensors[name]
        if name in rings:
            rows, seg = rings[name]
            stream_offset, slot = ring_slot(t)
            blocks.append(Block(name, rows * slot, seg.first, seg.last, plane_bytes=stream_offset))
        else:
            blocks.append(Block(name, _align(_align(t.plane_bytes) + t.stream_bytes), span[first][0],
                                span[last][1], plane_bytes=_align(t.plane_bytes)))
    in_segment = {i for seg in segments for i in range(seg.first, seg.last + 1)}
    pairs = {node.name: node.name not in one_pixel for node in model.nodes}
    for i, node in enumerate(model.nodes):  # in a segment, the kernels' work is its shared block's
        size = scratch_bytes(node, model, pairs[node.name])
        size -= work_bytes(node, model, pairs[node.name]) if i in in_segment else 0
        if size:
            blocks.append(Block(f"{node.name}/scratch", size, *span[i]))
    for seg in segments:
        work = max(work_bytes(n, model, pairs[n.name]) for n in model.nodes[seg.first:seg.last + 1])
        if work:
            blocks.append(Block(seg.scratch_name(), work, seg.first, seg.last))
    return blocks


def runs_of(resumable: list[bool]) -> list[tuple[int, int]]:
    """Maximal runs (first, last) of consecutive steps whose kernels are row-resumable."""
    runs, start = [], None
    for i, ok in enumerate(resumable + [False]):
        if ok:
            start = i if start is None else start
        elif start is not None:
            runs.append((start, i - 1))
            start = None
    return runs


def profile(blocks: list[Block], steps: int) -> tuple:
    """What auto minimizes: the arena, then the live bytes of each step, largest first."""
    live = sorted((sum(b.size for b in blocks if b.first <= s <= b.last) for s in range(steps)), reverse=True)
    return (place(blocks).arena_bytes, live)


def choose_segments(model: QModel, schedule: str) -> list[Segment]:
    """The DQA path's segments under `schedule` (search_segments)."""
    return search_segments(schedule, runs_of([n.op in STREAMED_OPS for n in model.nodes]),
                           lambda a, b: segment(model, a, b),
                           lambda segments: profile(_blocks(model, segments), len(model.nodes)))


def search_segments(schedule: str, all_runs: list[tuple[int, int]], segment_of, profile_of) -> list[Segment]:
    """layer: none; stream: every maximal run (`all_runs`) of two or more resumable steps; auto: starting
    from step by step, merge neighbouring pieces of a run while `profile_of(segments)` (the arena, then
    the per-step live bytes, largest first) goes down, or take stream's runs where they score lower.
    `segment_of(first, last)` makes a Segment."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if schedule == "layer":
        return []
    runs = [r for r in all_runs if r[1] > r[0]]
    if schedule == "stream":
        return [segment_of(*r) for r in runs]
    cache: dict[tuple[int, int], Segment] = {}

    def seg(a: int, b: int) -> Segment:
        if (a, b) not in cache:
            cache[(a, b)] = segment_of(a, b)
        return cache[(a, b)]

    pieces = [(i, i) for a, b in runs for i in range(a, b + 1)]

    def segments_of(parts):
        return [seg(a, b) for a, b in parts if b > a]

    best = profile_of(segments_of(pieces))
    while True:
        trials = []
        for k in range(len(pieces) - 1):
            (a, b), (c, d) = pieces[k], pieces[k + 1]
            if c == b + 1 and any(a >= r0 and d <= r1 for r0, r1 in runs):
                merged = pieces[:k] + [(a, d)] + pieces[k + 2:]
                trials.append((profile_of(segments_of(merged)), merged))
        if not trials:
            break
        score, merged = min(trials, key=lambda x: x[0])
        if score >= best:
            break
        best, pieces = score, merged
    # pairwise merges can stop short of a whole run that the steps between would not pay for (the int8
    # ResNet-8: every tensor of its first stage must be a ring at once)
    return segments_of(runs) if profile_of(segments_of(runs)) < best else segments_of(pieces)


def plan(model: QModel, schedule: str) -> MemoryPlan:
    """The arena for `schedule` (SCHEDULES; export runs DEFAULT_SCHEDULE); layer: every tensor whole."""
    segments = choose_segments(model, schedule)
    return plan_segments(model, segments, schedule, one_pixel_convs(model, segments))


# One pixel at a time trades instructions for arena, one share for another. Instructions one output pixel
# at a time costs per MAC over pairs (Cortex-M7: 0.42 on ResNet-8's conv2d_3/4, 0.58 on MobileNetV2's last
# conv), and a DQA model's instructions per MAC (2.07 on ResNet-8 n=4; MobileNets run more, so a conv's
# share of the instructions is overstated there and the choice errs towards speed).
ONE_PIXEL_EXTRA_PER_MAC = 0.5
INSTRUCTIONS_PER_MAC = 2.0


def node_macs(model: QModel, node: QNode) -> int:
    """Multiply-accumulates of one conv2d or linear node (0 for any other op)."""
    if node.op == "conv2d":
        h, w, _ = model.tensors[node.output].shape
        return h * w * node.arrays["weight"].size
    return node.arrays["weight"].size if node.op == "linear" else 0


def model_macs(model: QModel) -> int:
    """Multiply-accumulates of a quantized model's convolutions and linear layers."""
    return sum(node_macs(model, node) for node in model.nodes)


def one_pixel_convs(model: QModel, segments: list[Segment]) -> frozenset:
    """The convs to run one output pixel at a time. Pairs of pixels read each weight once for two
    (speed) but need a second accumulator per output channel and both windows' columns; where that
    work lies at the arena's peak (a wide last conv before global pooling), one pixel at a time lowers
    the arena. Greedy, largest saving first, each kept only if the arena's share it saves is at least
    the share of the instructions it is estimated to add."""
    best = place(_blocks(model, segments)).arena_bytes
    instructions = INSTRUCTIONS_PER_MAC * model_macs(model)
    saving = {n.name: work_bytes(n, model) - work_bytes(n, model, pairs=False)
              for n in model.nodes if pairs_pixels(n, model)}
    added = {n.name: ONE_PIXEL_EXTRA_PER_MAC * node_macs(model, n) / instructions
             for n in model.nodes if n.name in saving}
    chosen: frozenset = frozenset()
    for name in sorted(saving, key=lambda name: -saving[name]):
        if saving[name] < added[name] * best:
            continue  # even all of its saving would not pay
        arena = place(_blocks(model, segments, chosen | {name})).arena_bytes
        if best - arena >= added[name] * best:
            chosen, best = chosen | {name}, arena
    return chosen


def plan_segments(model: QModel, segments: list[Segment], schedule: str,
                  one_pixel: frozenset = frozenset()) -> MemoryPlan:
    """The arena of `model`'s current sizes with `segments` kept (those `schedule` chose) and the convs
    `one_pixel` runs one pixel at a time: a re-plan without the searches, while only important
    channels (so ring slot bytes) change; with pairs everywhere, an upper bound of plan()'s arena."""
    memory = place(_blocks(model, segments, one_pixel))
    memory.segments, memory.schedule, memory.one_pixel = segments, schedule, one_pixel
    return memory
