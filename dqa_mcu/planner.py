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

from .qmodel import QModel, QNode

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


def scratch_bytes(node: QNode, model: QModel) -> int:
    """Bytes of scratch the C kernel asks for (its *_get_buffer_size)."""
    t = model.tensors
    out = t[node.output]
    if node.op in ("conv2d", "linear"):
        x = t[node.inputs[0]]
        if node.op == "linear":
            kh_span, in_w, in_c = 1, 1, x.size
        else:
            kh = node.arrays["weight"].shape[1]
            kh_span = (kh - 1) * node.attrs["dilation"][0] + 1
            in_w, in_c = x.shape[1], x.shape[2]
        lines = kh_span * in_w * in_c * LINE_BUFFER_ELEMENT_BYTES
        residual = t[node.inputs[1]].channels * LINE_BUFFER_ELEMENT_BYTES if len(node.inputs) == 2 else 0
        return _align(lines) + _align(residual) + out.channels * ACC_BYTES
    if node.op == "add":
        a, b = t[node.inputs[0]], t[node.inputs[1]]
        return _align((a.channels + b.channels) * LINE_BUFFER_ELEMENT_BYTES) + out.channels * ACC_BYTES
    if node.op in ("maxpool", "avgpool", "global_avgpool"):
        x = t[node.inputs[0]]
        kh = x.shape[0] if node.op == "global_avgpool" else node.attrs["kernel"][0]
        lines = kh * x.shape[1] * x.channels * LINE_BUFFER_ELEMENT_BYTES
        return _align(lines) + out.channels * ACC_BYTES
    if node.op == "concat":
        return _align(sum(t[i].channels for i in node.inputs) * LINE_BUFFER_ELEMENT_BYTES) + out.channels * ACC_BYTES
    if node.op == "upsample_nearest":
        x = t[node.inputs[0]]
        return _align(x.shape[1] * x.channels * LINE_BUFFER_ELEMENT_BYTES) + out.channels * ACC_BYTES
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
