"""Static memory plan: one activation arena, offsets from tensor lifetimes.

Every stored tensor (code plane + error stream) and every kernel's scratch
buffer is a block with a lifetime [first step, last step]; blocks whose
lifetimes overlap must not overlap in memory. Placement is greedy, largest
block first, lowest free offset (as in TFLite Micro's greedy planner).
Scratch sizes mirror the C kernels' *_get_buffer_size(); the generated
init function checks the two agree.
"""
from __future__ import annotations

from dataclasses import dataclass

from dqa_mcu.qmodel import QModel, QNode

ALIGN = 4
LINE_BUFFER_ELEMENT_BYTES = 2  # int16 fine-domain values
ACC_BYTES = 4


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

    def block(self, name: str) -> Block:
        return next(b for b in self.blocks if b.name == name)

    def describe(self, model: QModel) -> str:
        rows = [f"{'block':40s} {'offset':>8s} {'bytes':>8s}  lifetime (node steps)"]
        for b in sorted(self.blocks, key=lambda b: (b.first, b.name)):
            first, last = model.nodes[b.first].name, model.nodes[b.last].name
            rows.append(f"{b.name:40s} {b.offset:8d} {b.size:8d}  {b.first}..{b.last} ({first} .. {last})")
        rows.append(f"arena peak: {self.arena_bytes} bytes")
        return "\n".join(rows)


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def ring_pixels(h: int, w: int, kh: int, kw: int, dh: int = 1, dw: int = 1) -> int:
    """Input pixels a sliding window keeps in its line buffer (dqa_window.c)."""
    return min(h * w, (kh - 1) * dh * w + min((kw - 1) * dw, w - 1) + 1)


def scratch_bytes(node: QNode, model: QModel) -> int:
    """Exactly what the C kernel's *_get_buffer_size() returns (0: no kernel).

    int16 line-buffer values, an int32 accumulator per output channel, and a
    pixel of each extra input read as a stream.
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
        residual = ins[1].channels if len(ins) == 2 else 0
        return _align(acc + LINE_BUFFER_ELEMENT_BYTES * (ins[0].channels * ring + residual))
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


def plan(model: QModel) -> MemoryPlan:
    blocks = []
    for name, (first, last) in _lifetimes(model).items():
        t = model.tensors[name]
        blocks.append(Block(name, _align(_align(t.plane_bytes) + t.stream_bytes), first, last,
                            plane_bytes=_align(t.plane_bytes)))
    for i, node in enumerate(model.nodes):
        size = scratch_bytes(node, model)
        if size:
            blocks.append(Block(f"{node.name}/scratch", _align(size), i, i))
    return place(blocks)


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
