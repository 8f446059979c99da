"""TFLite-exact int8 mode: an int8 ``TFLiteGraph`` -> a C project that runs TFLite's reference arithmetic.

The generated ``model.c`` calls the ``*_s8`` kernels of the C runtime
(``firmware/runtime/include/dqa_runtime_s8.h``) with the integer parameters
``reference.tflite.TFLiteReference`` computes (one definition: the same
multipliers, shifts, clamps and geometry drive both), so the firmware's
outputs equal the reference's, and LiteRT's reference kernels', bit for bit
(``docs/spec_tflite.md``).

Tensors are int8 arrays, NHWC ``[1, H, W, C]`` or vectors ``[1, N]`` (any
other shape is refused at export, naming the op), in one static arena placed
by ``planner.place`` from their lifetimes (op steps). RESHAPE and TILE are
followed as an index map onto the stored tensor their values come from (Keras
3 writes UpSampling2D as RESHAPE / TILE chains through rank 5): a chain's
inner tensors are never stored, its last one is an alias of the source when
the map is the identity (a reshape), or else is written by the nearest-resize
kernel when every output pixel copies a whole source pixel (an upsampling or
a spatial tile); any other movement is refused. A CONV_2D gathers each output
pixel's window, widened to int16, into a scratch block of its own (its
weights are tiled as the DQA convolution's, ``codegen.dqa.tile_conv_weights``); a
FULLY_CONNECTED widens its input row into one, its weights tiled as a 1x1 conv's;
an ADD or SUB keeps its operands' rescaled values for all 256 int8 values in one. Under a streamed
schedule (``--schedule``, ``docs/spec_tflite.md`` 5.1) runs of CONV_2D, DEPTHWISE_CONV_2D, ADD / SUB and a
global AVERAGE_POOL_2D run as row pipelines over rings of rows, one C function per segment, their kernels
sharing one scratch block. The project keeps the harness and API of the DQA mode
(``main.c``, ``dqa_model_input()`` takes the int8 input bytes,
``dqa_model_output()`` returns the int8 output widened to int16; with ``input_rows``
``dqa_model_set_input()`` takes a function handing the input row by row instead), so
``build`` and ``run`` serve both modes.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dqa_mcu import __version__
from dqa_mcu.codegen.dqa import (MAC_ROWS, ROW_TILE_TARGETS, CArray, _body, c_ident, is_depthwise, tile_conv_weights,
                                 write_project)
from dqa_mcu.codegen.planner import (Block, InPlaceWindowRead, MemoryPlan, PointRead, RowsRead, Segment, Stage,
                                     pipeline, place, profile, runs_of, search_segments)
from dqa_mcu.ir import unique_name
from dqa_mcu.frontends.tflite_import import (TFLiteGraph, TOp, UnsupportedTFLiteOpError, layer_name, moved_index,
                                             refuse_activation_shapes)
from dqa_mcu.reference.tflite import TFLiteReference, geometry, wrap32

__all__ = ["S8Plan", "plan_s8", "generate_s8"]

_MOVES = ("RESHAPE", "TILE")


@dataclass
class S8Plan:
    memory: MemoryPlan
    storage: dict[int, str]                 # activation tensor index -> block name (aliases share one)
    names: dict[int, str] = field(default_factory=dict)  # op index -> C-safe layer name
    # RESHAPE / TILE output -> (the stored tensor its values come from, index into those values, its shape)
    moves: dict[int, tuple[int, np.ndarray]] = field(default_factory=dict)
    folded: set[int] = field(default_factory=set)       # moved tensors only other moves read: never stored
    scratch: dict[str, Block] = field(default_factory=dict)  # layer name -> its kernel's scratch (scratch_bytes)

    def offset(self, tensor: int) -> int:
        return self.memory.block(self.storage[tensor]).offset

    def all_blocks(self) -> list[Block]:
        """The tensors' blocks and the kernels' scratch (a segment's shared once), by first op step."""
        unique = {id(b): b for b in self.memory.blocks + list(self.scratch.values())}
        return sorted(unique.values(), key=lambda b: (b.first, b.name))

    def describe(self) -> str:
        rows = [f"{'block':40s} {'offset':>8s} {'bytes':>8s}  lifetime (op steps)"]
        for b in self.all_blocks():
            rows.append(f"{b.name:40s} {b.offset:8d} {b.size:8d}  {b.first}..{b.last}")
        rows += [seg.describe() for seg in self.memory.segments]
        rows.append(f"arena peak: {self.memory.arena_bytes} bytes ({self.memory.schedule} schedule, "
                    f"{len(self.memory.segments)} row-streamed segments)")
        return "\n".join(rows)


def _data_movements(g: TFLiteGraph) -> dict[int, tuple[int, np.ndarray]]:
    """Every RESHAPE / TILE output as (source, index): element e of it is element index[e] of the
    flattened source, the first tensor up its chain of moves that another op wrote."""
    moves: dict[int, tuple[int, np.ndarray]] = {}
    for op in g.ops:
        if op.op not in _MOVES:
            continue
        x, y = op.inputs[0], g.tensors[op.outputs[0]]
        shape = g.tensors[x].shape
        source, index = moves.get(x, (x, np.arange(int(np.prod(shape))).reshape(shape)))
        moves[y.index] = (source, moved_index(g, op, index))
    return moves


def _is_identity(index: np.ndarray) -> bool:
    return np.array_equal(index.reshape(-1), np.arange(index.size))


def _whole_pixel_indices(index: np.ndarray, source_shape: tuple[int, ...]):
    """(y_index, x_index) when output pixel (y, x) of an NHWC index map copies NHWC source pixel
    (y_index[y], x_index[x]) whole, else None."""
    if len(index.shape) != 4 or len(source_shape) != 4 or index.shape[3] != source_shape[3]:
        return None
    _, _, w, c = source_shape
    pixel = index[0] // c
    y_index, x_index = pixel[:, 0, 0] // w, pixel[0, :, 0] % w
    whole = ((y_index[:, None] * w + x_index[None, :]) * c)[:, :, None] + np.arange(c)
    return (y_index, x_index) if np.array_equal(index[0], whole) else None


def plan_s8(g: TFLiteGraph, schedule: str, input_rows: bool = False) -> S8Plan:
    """Static arena for the int8 activations under `schedule` (planner.SCHEDULES): one block per stored
    tensor, a ring of rows for one a segment streams; reshapes are aliases, the inner tensors of a chain of
    moves are not stored (the report shows them in the chain's last block). With `input_rows` the
    application hands the input row by row (dqa_model_set_input()), into a ring when a segment from op 0
    reads all of it."""
    used: set[str] = {"input"}
    names = {op.index: unique_name(c_ident(layer_name(g.tensors[op.outputs[0]]) or op.op.lower()), used)
             for op in g.ops}
    moves = _data_movements(g)
    read_by_kernels = {i for op in g.ops if op.op not in _MOVES for i in op.inputs} | set(g.outputs)
    folded = {t for t in moves if t not in read_by_kernels}
    storage = {g.inputs[0]: "input"}
    for op in g.ops:
        y = op.outputs[0]
        if y in moves and y not in folded and _is_identity(moves[y][1]):
            storage[y] = storage[moves[y][0]]
        elif y not in folded:
            storage[y] = names[op.index]
    for op in reversed(g.ops):  # the block of the move that reads a folded tensor (later ops first)
        if op.op in _MOVES and op.inputs[0] in folded and op.inputs[0] not in storage:
            storage[op.inputs[0]] = storage[op.outputs[0]]
    life: dict[str, list[int]] = {}
    sizes: dict[str, int] = {}
    for t, block in storage.items():
        sizes.setdefault(block, int(np.prod(g.tensors[t].shape)))
    life["input"] = [0, 0]
    for i, op in enumerate(g.ops):
        life.setdefault(storage[op.outputs[0]], [i, i])
        source = [moves[op.outputs[0]][0]] if op.outputs[0] in moves else []  # a move reads its chain's source
        for t in op.inputs + source:
            if t in storage:
                life[storage[t]][1] = i
    life[storage[g.outputs[0]]][1] = len(g.ops) - 1  # read by the application after the run
    rows = _RowGeometry(g, storage, names, life, input_rows)
    segments = search_segments(schedule, runs_of([rows.stage(op) is not None for op in g.ops]), rows.segment,
                               lambda segs: profile(_blocks_s8(g, names, sizes, life, rows, segs)[0], len(g.ops)))
    blocks, scratch = _blocks_s8(g, names, sizes, life, rows, segments)
    tensors = [b for b in blocks if b not in scratch.values()]
    memory = place(blocks)
    memory.blocks, memory.segments, memory.schedule = tensors, segments, schedule
    return S8Plan(memory, storage, names, moves, folded, scratch)


# ---- the row-streamed schedule (docs/spec_tflite.md 5.1) ------------------------------------------
def _is_global_pool(g: TFLiteGraph, op: TOp) -> bool:
    """An AVERAGE_POOL_2D whose one window is its whole input."""
    _, h, w, _ = g.tensors[op.inputs[0]].shape
    return (op.op == "AVERAGE_POOL_2D" and op.options["padding"] == "VALID" and tuple(op.options["filter"]) == (h, w)
            and g.tensors[op.outputs[0]].shape[1:3] == (1, 1))


class _RowGeometry:
    """The int8 graph's ops as the scheduler sees them (planner.Stage), over stored blocks: which ops
    the *_rows kernels run, and which of a run's tensors can be rings."""

    def __init__(self, g: TFLiteGraph, storage: dict[int, str], names: dict[int, str], life: dict[str, list[int]],
                 input_rows: bool):
        self.g, self.storage, self.names, self.life = g, storage, names, life
        self.input_rows = input_rows and len(g.input.shape) == 4
        shared = [b for b in set(storage.values()) if list(storage.values()).count(b) > 1]
        # a block's rows (height, bytes per row) as its NHWC tensors see them: a reshape that keeps the
        # bytes but not the rows (8x8x8 as 16x4x8) makes one block two row geometries, which one
        # dqa_rows_s8_t cannot address, so no *_rows kernel touches such a block
        rows_of: dict[str, set] = {}
        for t, b in storage.items():
            shape = g.tensors[t].shape
            rows_of.setdefault(b, set()).update({(shape[1], shape[2] * shape[3])} if len(shape) == 4 else ())
        self.mixed_rows = {b for b, geometries in rows_of.items() if len(geometries) > 1}
        self.heights = {b: min(geometries)[0] if geometries else 1 for b, geometries in rows_of.items()}
        # a ring holds one NHWC tensor written by one op: not the input, an output, nor a reshape's bytes
        self.ringable = {storage[op.outputs[0]] for op in g.ops if len(g.tensors[op.outputs[0]].shape) == 4
                         and storage.get(op.outputs[0]) not in shared + [storage[t] for t in g.outputs]}

    def stage(self, op: TOp) -> Stage | None:
        """The rows of `op` (None: not a *_rows kernel): units of its row loop and what each reads."""
        g, block = self.g, self.storage
        shape = lambda t: g.tensors[t].shape  # noqa: E731
        y = op.outputs[0]
        if any(g.tensors[t].is_const or len(shape(t)) != 4 for t in op.inputs[:1] + [y]):
            return None
        if any(block.get(t) in self.mixed_rows for t in op.inputs + [y]):
            return None
        _, h, w, _ = shape(op.inputs[0])
        _, oh, ow, _ = shape(y)
        if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            _, kh, kw, _ = shape(op.inputs[1])
            _, _, pad = geometry(op.options["padding"], h, w, kh, kw, op.options["stride"], op.options["dilation"])
            read = InPlaceWindowRead(h, w, ow, kh, kw, *op.options["stride"], pad[0], pad[2], *op.options["dilation"])
            return Stage(self.names[op.index], block[y], oh, oh, ((block[op.inputs[0]], read),))
        if op.op in ("ADD", "SUB") and all(not g.tensors[t].is_const and shape(t) == shape(y) for t in op.inputs):
            return Stage(self.names[op.index], block[y], oh, oh,
                         tuple((block[t], PointRead(oh, ow, ow)) for t in op.inputs))
        if _is_global_pool(g, op):
            return Stage(self.names[op.index], block[y], 1, h, ((block[op.inputs[0]], RowsRead(h)),), final_only=True)
        return None

    def segment(self, first: int, last: int) -> Segment:
        inside = range(first, last + 1)
        streamed = {self.storage[self.g.ops[i].outputs[0]] for i in inside} & self.ringable
        # every reader inside: the block's life (its last reader) ends in the segment
        streamed = {b for b in streamed if first <= self.life[b][0] and self.life[b][1] <= last}
        stages = [self.stage(self.g.ops[i]) for i in inside]
        if self.input_rows and first == 0 and self.life["input"][1] <= last:  # the application's rows first
            h = self.heights["input"]
            stages.insert(0, Stage(INPUT_STAGE, "input", h, h, ()))
            streamed.add("input")
        return pipeline(first, last, stages, self.heights, streamed)


INPUT_STAGE = "input_rows"  # a segment's stage 0 when it takes the input from the application row by row


def streams_input(plan: S8Plan) -> bool:
    return any(seg.stages[0].name == INPUT_STAGE for seg in plan.memory.segments)


def _rows_scratch_bytes(g: TFLiteGraph, op: TOp, ring_input: bool) -> int:
    """scratch_bytes of an op in a segment: a depthwise kernel reading a ring also copies the kernel_h input
    rows of a window that wraps around the ring (dqa_depthwise_conv2d_s8_rows_get_buffer_size())."""
    if ring_input and op.op in ("CONV_2D", "DEPTHWISE_CONV_2D") and not _on_tiles(g, op):
        _, _, w, c = g.tensors[op.inputs[0]].shape
        return g.tensors[op.inputs[1]].shape[1] * w * c
    return scratch_bytes(g, op)


def segment_scratch_name(seg: Segment) -> str:
    return f"segment_{seg.first}_{seg.last}/scratch"


def _blocks_s8(g: TFLiteGraph, names: dict[int, str], sizes: dict[str, int], life: dict[str, list[int]],
               rows: _RowGeometry, segments: list[Segment]) -> tuple[list[Block], dict[str, Block]]:
    """The arena's blocks under `segments` and the layers' scratch (layer name -> block). A segment's
    layers all run from its first step to its last: its rings, scratch and every tensor it touches live
    across it; its kernels' scratch is one block (no kernel keeps it from call to call), but for a global
    pool's sums."""
    span = {i: (i, i) for i in range(len(g.ops))}
    rings: dict[str, tuple[int, Segment]] = {}
    for seg in segments:
        span.update({i: (seg.first, seg.last) for i in range(seg.first, seg.last + 1)})
        rings.update({name: (count, seg) for name, count in seg.ring_rows.items()})
    blocks = []
    for name, (first, last) in life.items():
        if name in rings:
            count, seg = rings[name]
            blocks.append(Block(name, count * sizes[name] // rows.heights[name], seg.first, seg.last))
        else:
            blocks.append(Block(name, sizes[name], span[first][0], span[last][1]))
    scratch: dict[str, Block] = {}
    streamed_ops = {i: seg for seg in segments for i in range(seg.first, seg.last + 1)}
    for seg in segments:
        ops = [g.ops[i] for i in range(seg.first, seg.last + 1)]
        sizes_in_segment = {op.index: _rows_scratch_bytes(g, op, rows.storage[op.inputs[0]] in seg.ring_rows)
                            for op in ops}
        shared = Block(segment_scratch_name(seg), max(sizes_in_segment.values()), seg.first, seg.last)
        for op in ops:
            if _is_global_pool(g, op):  # int32 sums per channel
                scratch[names[op.index]] = Block(f"{names[op.index]}/sums", 4 * g.tensors[op.inputs[0]].shape[3],
                                                 seg.first, seg.last)
            elif sizes_in_segment[op.index]:
                scratch[names[op.index]] = shared
    for i, op in enumerate(g.ops):
        if i not in streamed_ops and scratch_bytes(g, op):
            scratch[names[op.index]] = Block(f"{names[op.index]}/scratch", scratch_bytes(g, op), i, i)
    return blocks + list({id(b): b for b in scratch.values()}.values()), scratch


def _on_tiles(g: TFLiteGraph, op: TOp) -> bool:
    """A CONV_2D that dqa_conv2d_s8 runs on weight tiles; one with one input and output channel per group
    is a depthwise convolution (tile_conv_weights leaves it OHWI)."""
    if op.op != "CONV_2D":
        return False
    w = g.tensors[op.inputs[1]].data
    return not is_depthwise(w, g.tensors[op.inputs[0]].shape[3] // w.shape[3])


FOLDED_SHIFTS = (-23, -2)  # DQA_FOLDED_MIN_SHIFT, DQA_FOLDED_MAX_SHIFT (dqa_runtime_s8.h): a folded_epilogue conv's


def folded_epilogue(p: dict) -> bool:
    """Whether a conv's params (reference.tflite) let its epilogue take dqa__folded_s8's one form for every
    channel: act_max 127, multipliers >= 0, shifts in FOLDED_SHIFTS."""
    shift = p["shift"]
    return bool(p["act_max"] == 127 and np.all(p["multiplier"] >= 0) and
                np.all((shift >= FOLDED_SHIFTS[0]) & (shift <= FOLDED_SHIFTS[1])))


ADD_TABLE_VALUES = 512  # DQA_ADD_S8_TABLE_VALUES (dqa_runtime_s8.h; dqa_model_init checks): both operands' 256 values


def scratch_bytes(g: TFLiteGraph, op: TOp) -> int:
    """Bytes of a kernel's scratch block, 0 for an op that has none: dqa_conv2d_s8's two output pixels'
    kernel_h x kernel_w x in_c / groups windows and dqa_fully_connected_s8's input row (int16, each rounded
    up to even), dqa_add_s8's tables of the operands' rescaled values."""
    if op.op in ("ADD", "SUB"):
        return 4 * ADD_TABLE_VALUES
    if op.op == "FULLY_CONNECTED":
        k = g.tensors[op.inputs[1]].shape[1]
        return 2 * (k + k % 2)
    if not _on_tiles(g, op):
        return 0
    k = int(np.prod(g.tensors[op.inputs[1]].shape[1:]))
    return 2 * 2 * (k + k % 2)


def depthwise_block(row_tiles: bool) -> int:
    """DW_LANES (dqa_depthwise_conv2d_s8.c): output channels per block of depthwise weights, a word of int8
    on the DSP cores, a vector of eight int16 lanes on MVE (the ROW_TILE_TARGETS)."""
    return 8 if row_tiles else 4


def depthwise_blocks(w: np.ndarray, block: int) -> np.ndarray:
    """DEPTHWISE_CONV_2D weights (OHWI, out_c x kh x kw x 1) as dqa_depthwise_conv2d_s8 reads them: blocks
    of `block` output channels (the last one narrower), each tap-major (kh x kw x its channels), so that a
    tap's channels are one load and a block's taps follow each other."""
    per_tap = w.reshape(len(w), -1)
    return np.concatenate([per_tap[c:c + block].T.ravel() for c in range(0, len(w), block)])


def _fc_tiles(w: np.ndarray, row_tiles: bool) -> np.ndarray:
    """FULLY_CONNECTED weights (out x in) in the tiles of a 1x1 CONV_2D. A 1 -> 1 layer is one tile too
    (tile_conv_weights leaves a one-channel conv OHWI, as depthwise): w(0, 0) first in either layout."""
    if w.shape == (1, 1):
        return np.pad(w.ravel(), (0, 2 * MAC_ROWS - 1))
    return tile_conv_weights(w[:, None, None, :], 1, row_tiles)


def _is_c_layout(shape: tuple[int, ...]) -> bool:
    """A [1, N] vector or a [1, H, W, C] NHWC tensor: the layouts the s8 kernels are written and tested for."""
    return len(shape) in (2, 4) and shape[0] == 1


class _Emitter:
    def __init__(self, g: TFLiteGraph, plan: S8Plan, row_tiles: bool):
        self.g, self.plan = g, plan
        self.row_tiles = row_tiles  # conv weight tiles for MVE (tile_conv_weights)
        self.ref = TFLiteReference(g)
        self.arrays: list[CArray] = []

    def array(self, name: str, ctype: str, values, comment: str) -> str:
        values = np.asarray(values)
        self.arrays.append(CArray(name, ctype, values.size, _body(values), comment))
        return name

    def ptr(self, t: int, ctype: str = "int8_t") -> str:
        return f"({ctype} *)(dqa_arena + {self.plan.offset(t)})"

    def scratch(self, layer: dict, size_call: str, ctype: str = "int16_t") -> str:
        """The scratch block of a layer (plan_s8, scratch_bytes); dqa_model_init() checks that `size_call`, the
        kernel's *_get_buffer_size(), asks for no more."""
        block = self.plan.scratch[layer["name"]]
        layer["scratch_check"] = (size_call, block.size)
        return f"({ctype} *)(dqa_arena + {block.offset})"

    def shape(self, t: int) -> tuple[int, ...]:
        return tuple(self.g.tensors[t].shape)

    def operand(self, op: TOp, k: int) -> str:
        """Input k of an element-wise op: its place in the arena, or its data for a constant."""
        t = self.g.tensors[op.inputs[k]]
        if not t.is_const:
            return self.ptr(op.inputs[k])
        return self.array(f"{self.plan.names[op.index]}_input{k + 1}", "int8_t", t.data,
                          f"{self.plan.names[op.index]}: constant operand {k + 1}, {list(t.shape)}")

    def broadcast(self, op: TOp) -> str:
        """The dqa_broadcast_s8_t of an element-wise op (spec 5): NHWC extents, per-operand strides."""
        def nhwc(shape):  # a [1, N] vector is 1 x 1 x N; a constant may have fewer axes
            return (1,) * (4 - len(shape)) + tuple(shape) if len(shape) <= 4 else None

        out = nhwc(self.shape(op.outputs[0]))
        fields = [("out_h", out[1]), ("out_w", out[2]), ("out_c", out[3])]
        for k, i in enumerate(op.inputs):
            shape = nhwc(self.shape(i))
            if shape is None or any(d not in (1, o) for d, o in zip(shape, out)):
                raise self.fail(op, f"broadcasts operands of up to 4 axes only, not {list(self.shape(i))}")
            _, h, w, c = shape
            for axis, size, stride in (("h", h, w * c), ("w", w, c), ("c", c, 1)):
                fields.append((f"input{k + 1}_stride_{axis}", stride if size > 1 else 0))
        return "{ " + ", ".join(f".{name} = {value}" for name, value in fields) + " }"

    def copy_pixels(self, layer: dict, x: int, y: int, y_index: np.ndarray, x_index: np.ndarray) -> None:
        """Output pixel (i, j) <- input pixel (y_index[i], x_index[j]): the nearest-resize kernel (spec 3.12)."""
        ident = layer["name"]
        _, _, w, c = self.shape(x)
        _, oh, ow, _ = self.shape(y)
        layer["params_type"] = "dqa_resize_nearest_s8_params_t"
        layer["params"] = [("in_w", w), ("channels", c), ("out_h", oh), ("out_w", ow),
                           ("y_index", self.array(f"{ident}_y_index", "int16_t", y_index,
                                                  f"{ident}: input row of each output row")),
                           ("x_index", self.array(f"{ident}_x_index", "int16_t", x_index,
                                                  f"{ident}: input column of each output column"))]
        layer["call"] = f"dqa_resize_nearest_s8(&{ident}_params, {self.ptr(x)}, {self.ptr(y)});"

    def fail(self, op: TOp, why: str) -> UnsupportedTFLiteOpError:
        return UnsupportedTFLiteOpError(f"{Path(self.g.source).name}: operator {op.op} at index {op.index}: "
                                        f"the C backend {why}")

    def layer(self, op: TOp) -> dict:
        p = self.ref.params[op.index].values
        ident = self.plan.names[op.index]
        x, y = op.inputs[0], op.outputs[0]
        shapes = " + ".join("x".join(map(str, self.shape(i))) for i in op.inputs if not self.g.tensors[i].is_const)
        act = op.options.get("activation", "NONE")
        comment = (f"{ident}: {op.op} (op {op.index}), {shapes} -> {'x'.join(map(str, self.shape(y)))}"
                   + (f", {act}" if act != "NONE" else ""))
        layer = dict(name=ident, comment=comment, params=None, params_type=None, extra=None, scratch_check=None)
        if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE_CONV"):
            transposed = op.op == "TRANSPOSE_CONV"
            x = op.inputs[2] if transposed else x
            _, h, w, cin = self.shape(x)
            _, oh, ow, cout = self.shape(y)
            wt = p["weight"]
            groups = cin // wt.shape[3]
            if transposed:  # the padding of the convolution from the output back to the input
                pad, dilation = (p["pad_top"], 0, p["pad_left"], 0), (1, 1)
            else:
                dilation = op.options["dilation"]
                _, _, pad = geometry(op.options["padding"], h, w, wt.shape[1], wt.shape[2], op.options["stride"],
                                     dilation)
            tiled = _on_tiles(self.g, op)
            dims = "x".join(map(str, wt.shape))
            if tiled:
                weights = tile_conv_weights(wt, groups, self.row_tiles)
                layout = (f"OHWI {dims} in tiles of {MAC_ROWS} output channels"
                          + (", rows contiguous" if self.row_tiles else ""))
            elif transposed:
                weights, layout = wt, f"OHWI {dims}"
            else:
                block = depthwise_block(self.row_tiles)
                weights = depthwise_blocks(wt, block)
                layout = (f"blocks of {block} output channels, each tap-major "
                          f"{wt.shape[1]}x{wt.shape[2]}x{min(block, wt.shape[0])}")
            layer["params_type"] = "dqa_conv_s8_params_t"
            layer["params"] = [
                ("in_h", h), ("in_w", w), ("in_c", cin), ("out_h", oh), ("out_w", ow), ("out_c", cout),
                ("kernel_h", wt.shape[1]), ("kernel_w", wt.shape[2]), ("stride_h", op.options["stride"][0]),
                ("stride_w", op.options["stride"][1]), ("dilation_h", dilation[0]),
                ("dilation_w", dilation[1]), ("pad_top", pad[0]), ("pad_left", pad[2]),
                ("in_c_per_group", wt.shape[3]), ("out_c_per_group", cout // groups),
                ("folded_epilogue", int(folded_epilogue(p))),
                ("input_offset", p["input_offset"]), ("output_offset", p["output_offset"]),
                ("act_min", p["act_min"]), ("act_max", p["act_max"]),
                ("weights", self.array(f"{ident}_weights", "int8_t", weights,
                                       f"{ident}: int8 weights, {layout}")),
                ("bias", self.array(f"{ident}_bias", "int32_t", p["bias"], f"{ident}: int32 biases")),
                ("multiplier", self.array(f"{ident}_multiplier", "int32_t", p["multiplier"],
                                          f"{ident}: per output channel multipliers (Q31)")),
                ("shift", self.array(f"{ident}_shift", "int8_t", p["shift"],
                                     f"{ident}: per output channel shifts (> 0: left)"))]
            if tiled:
                column = self.scratch(layer, f"dqa_conv2d_s8_get_buffer_size(&{ident}_params)")
                layer["call"] = f"dqa_conv2d_s8(&{ident}_params, {self.ptr(x)}, {self.ptr(y)}, {column});"
            else:
                fn = "dqa_transpose_conv_s8" if transposed else "dqa_depthwise_conv2d_s8"
                layer["call"] = f"{fn}(&{ident}_params, {self.ptr(x)}, {self.ptr(y)});"
        elif op.op == "FULLY_CONNECTED":
            wt = p["weight"]
            # the integer rescale (dqa_fully_connected_s8.c) reads a double's mantissa and exponent from its bits
            if not np.all(p["effective_scale"] >= np.finfo(np.float64).tiny):
                raise self.fail(op, "has an output scale that is not a positive normal double")
            # sum w * (x + offset) + b == sum w * x + (b + offset * sum w) modulo 2^32: the same int32 acc
            folded_bias = wrap32(p["bias"] + p["input_offset"] * wt.sum(axis=1))
            layer["params_type"] = "dqa_fully_connected_s8_params_t"
            layer["params"] = [
                ("rows", int(np.prod(self.shape(x))) // wt.shape[1]), ("in_depth", wt.shape[1]),
                ("out_depth", wt.shape[0]), ("output_offset", p["output_offset"]), ("act_min", p["act_min"]),
                ("act_max", p["act_max"]),
                ("weights", self.array(f"{ident}_weights", "int8_t",
                                       _fc_tiles(wt, self.row_tiles),
                                       f"{ident}: int8 weights {wt.shape[0]}x{wt.shape[1]} in tiles of {MAC_ROWS} "
                                       f"outputs{', rows contiguous' if self.row_tiles else ''}")),
                ("folded_bias", self.array(f"{ident}_folded_bias", "int32_t", folded_bias,
                                           f"{ident}: int32 biases + input offset x the weights' row sums")),
                ("scale", self.array(f"{ident}_scale", "double", p["effective_scale"],
                                     f"{ident}: output scales (double, exact as hexadecimal literals)"))]
            column = self.scratch(layer, f"dqa_fully_connected_s8_get_buffer_size(&{ident}_params)")
            layer["call"] = f"dqa_fully_connected_s8(&{ident}_params, {self.ptr(x)}, {self.ptr(y)}, {column});"
        elif op.op in ("ADD", "SUB", "MUL"):  # SUB: ADD with the second multiplier negated (spec 3.10)
            keys = (("input1_offset", "input2_offset", "output_offset", "output_multiplier", "output_shift")
                    if op.op == "MUL" else
                    ("left_shift", "input1_offset", "input1_multiplier", "input1_shift", "input2_offset",
                     "input2_multiplier", "input2_shift", "output_offset", "output_multiplier", "output_shift"))
            kernel = "mul" if op.op == "MUL" else "add"
            layer["params_type"] = f"dqa_{kernel}_s8_params_t"
            layer["params"] = [("shape", self.broadcast(op))] + [(k, p[k]) for k in keys + ("act_min", "act_max")]
            a, b = (self.operand(op, k) for k in (0, 1))
            tables = f", {self.scratch(layer, 'dqa_add_s8_get_buffer_size()', 'int32_t')}" if kernel == "add" else ""
            layer["call"] = f"dqa_{kernel}_s8(&{ident}_params, {a}, {b}, {self.ptr(y)}{tables});"
        elif op.op in ("LEAKY_RELU", "RELU", "RELU6", "QUANTIZE"):
            # RELU / RELU6 rescale negative inputs like positive ones (their clamp does the rest), and so does
            # QUANTIZE's Requantize (clamped to int8)
            alpha = "alpha_" if op.op == "LEAKY_RELU" else ""
            layer["params_type"] = "dqa_leaky_relu_s8_params_t"
            layer["params"] = [("size", int(np.prod(self.shape(y))))] + [
                (k, p[k]) for k in ("input_zero_point", "output_zero_point", "multiplier", "shift")] + [
                ("alpha_multiplier", p[f"{alpha}multiplier"]), ("alpha_shift", p[f"{alpha}shift"]),
                ("act_min", p["act_min"]), ("act_max", p["act_max"])]
            layer["call"] = f"dqa_leaky_relu_s8(&{ident}_params, {self.ptr(x)}, {self.ptr(y)});"
        elif op.op == "HARD_SWISH":
            layer["params_type"] = "dqa_hard_swish_s8_params_t"
            layer["params"] = [("size", int(np.prod(self.shape(y))))] + [
                (k, p[k]) for k in ("input_zero_point", "output_zero_point", "output_multiplier",
                                    "reluish_multiplier", "output_exponent", "reluish_exponent")]
            layer["call"] = f"dqa_hard_swish_s8(&{ident}_params, {self.ptr(x)}, {self.ptr(y)});"
        elif op.op in ("LOGISTIC", "TANH"):
            table = self.array(f"{ident}_table", "int8_t", p["table"], f"{ident}: output for input q at q + 128")
            layer["call"] = f"dqa_lookup_s8({table}, {int(np.prod(self.shape(y)))}, {self.ptr(x)}, {self.ptr(y)});"
        elif op.op == "RESIZE_NEAREST_NEIGHBOR":
            self.copy_pixels(layer, x, y, p["y_index"], p["x_index"])
        elif op.op == "RESIZE_BILINEAR":
            _, h, w, c = self.shape(x)
            _, oh, ow, _ = self.shape(y)
            layer["params_type"] = "dqa_resize_bilinear_s8_params_t"
            layer["params"] = [("in_h", h), ("in_w", w), ("channels", c), ("out_h", oh), ("out_w", ow),
                               ("scale_10_h", p["scale_10"][0]), ("scale_10_w", p["scale_10"][1]),
                               ("half_pixel_centers", int(op.options["half_pixel_centers"]))]
            layer["call"] = f"dqa_resize_bilinear_s8(&{ident}_params, {self.ptr(x)}, {self.ptr(y)});"
        elif op.op == "DEPTH_TO_SPACE":
            _, h, w, c = self.shape(x)
            layer["params_type"] = "dqa_depth_to_space_s8_params_t"
            layer["params"] = [("in_h", h), ("in_w", w), ("in_c", c), ("block", p["block"])]
            layer["call"] = f"dqa_depth_to_space_s8(&{ident}_params, {self.ptr(x)}, {self.ptr(y)});"
        elif op.op in ("AVERAGE_POOL_2D", "MAX_POOL_2D"):
            _, h, w, c = self.shape(x)
            (fh, fw), stride = op.options["filter"], op.options["stride"]
            oh, ow, pad = geometry(op.options["padding"], h, w, fh, fw, stride)
            layer["params_type"] = "dqa_pool_s8_params_t"
            layer["params"] = [("in_h", h), ("in_w", w), ("channels", c), ("out_h", oh), ("out_w", ow),
                               ("filter_h", fh), ("filter_w", fw), ("stride_h", stride[0]), ("stride_w", stride[1]),
                               ("pad_top", pad[0]), ("pad_left", pad[2]), ("act_min", p["act_min"]),
                               ("act_max", p["act_max"])]
            fn = "dqa_avgpool_s8" if op.op == "AVERAGE_POOL_2D" else "dqa_maxpool_s8"
            layer["call"] = f"{fn}(&{ident}_params, {self.ptr(x)}, {self.ptr(y)});"
        elif op.op == "MEAN":
            if len(self.shape(x)) != 4 or list(p["axes"]) != [1, 2]:
                raise self.fail(op, "reduces NHWC tensors over height and width only")
            layer["params_type"] = "dqa_mean_s8_params_t"
            layer["params"] = [("count", p["count"]), ("channels", self.shape(x)[3])] + [
                (k, p[k]) for k in ("input_zero_point", "output_zero_point", "multiplier", "shift")]
            layer["call"] = f"dqa_mean_s8(&{ident}_params, {self.ptr(x)}, {self.ptr(y)});"
        elif op.op == "SOFTMAX":
            shape = self.shape(x)
            layer["params_type"] = "dqa_softmax_s8_params_t"
            layer["params"] = [("rows", int(np.prod(shape[:-1]))), ("depth", shape[-1])] + [
                (k, p[k]) for k in ("input_multiplier", "input_left_shift", "diff_min")]
            layer["call"] = f"dqa_softmax_s8(&{ident}_params, {self.ptr(x)}, {self.ptr(y)});"
        elif op.op == "PAD":
            pads = p["paddings"]
            if len(self.shape(x)) != 4 or pads[3].any():
                raise self.fail(op, "pads the height and width of NHWC tensors only")
            _, h, w, c = self.shape(x)
            layer["params_type"] = "dqa_pad_s8_params_t"
            layer["params"] = [("in_h", h), ("in_w", w), ("channels", c), ("pad_top", pads[1][0]),
                               ("pad_bottom", pads[1][1]), ("pad_left", pads[2][0]), ("pad_right", pads[2][1]),
                               ("pad_value", p["pad_value"])]
            layer["call"] = f"dqa_pad_s8(&{ident}_params, {self.ptr(x)}, {self.ptr(y)});"
        elif op.op == "CONCATENATION":
            axis = p["axis"]
            inner = [int(np.prod(self.shape(i)[axis:])) for i in op.inputs]
            outer = int(np.prod(self.shape(y)[:axis]))
            sizes = self.array(f"{ident}_inner", "uint32_t", inner, f"{ident}: bytes per input and outer step")
            layer["extra"] = (f"static const int8_t *const {ident}_inputs[{len(op.inputs)}] = {{ "
                              + ", ".join(self.ptr(i) for i in op.inputs) + " };")
            layer["call"] = f"dqa_concat_s8({ident}_inputs, {sizes}, {len(op.inputs)}, {outer}, {self.ptr(y)});"
        elif op.op in _MOVES:
            source, index = self.plan.moves[y]
            if y in self.plan.folded:
                layer["call"] = "/* not stored: a later RESHAPE / TILE reads through it to its source */"
            elif self.plan.storage[y] == self.plan.storage[source]:
                layer["call"] = "/* the same bytes: the output aliases its source */"
            else:
                pixels = _whole_pixel_indices(index, self.shape(source))
                if pixels is None:
                    raise self.fail(op, f"moves data as a reshape or as copies of whole NHWC pixels only (not "
                                        f"{list(self.shape(source))} -> {list(self.shape(y))} this way)")
                layer["comment"] += f", whole pixels of {layer_name(self.g.tensors[source])}"
                self.copy_pixels(layer, source, y, *pixels)
        else:
            raise self.fail(op, "has no kernel for it")
        return layer


    def rows_call(self, op: TOp, layer: dict, first: str, end: str) -> str:
        """The *_rows kernel call of a layer its segment runs (_RowGeometry.stage), for rows first..end."""
        ident, y = layer["name"], op.outputs[0]
        if op.op in ("CONV_2D", "DEPTHWISE_CONV_2D") and not _on_tiles(self.g, op):
            window_rows = (self.scratch(layer, f"dqa_depthwise_conv2d_s8_rows_get_buffer_size(&{ident}_params)",
                                        "int8_t") if ident in self.plan.scratch else "NULL")  # a ring's input only
            return (f"dqa_depthwise_conv2d_s8_rows(&{ident}_params, &{self.rows(op.inputs[0])}, &{self.rows(y)}, "
                    f"{first}, {end}, {window_rows});")
        if op.op == "CONV_2D":
            column = self.scratch(layer, f"dqa_conv2d_s8_get_buffer_size(&{ident}_params)")
            return (f"dqa_conv2d_s8_rows(&{ident}_params, &{self.rows(op.inputs[0])}, &{self.rows(y)}, {first}, "
                    f"{end}, {column});")
        if op.op in ("ADD", "SUB"):
            tables = self.scratch(layer, "dqa_add_s8_get_buffer_size()", "int32_t")
            return (f"dqa_add_s8_rows(&{ident}_params, &{self.rows(op.inputs[0])}, &{self.rows(op.inputs[1])}, "
                    f"&{self.rows(y)}, {first}, {end}, {tables});")
        sums = f"(int32_t *)(dqa_arena + {self.plan.scratch[ident].offset})"  # a global pool (_is_global_pool)
        return (f"dqa_avgpool_s8_global_rows(&{ident}_params, &{self.rows(op.inputs[0])}, {first}, {end}, {sums}, "
                f"{self.ptr(y)});")

    def rows(self, t: int) -> str:
        """The dqa_rows_s8_t of a tensor a segment reads or writes (emitted by _segments)."""
        return f"{self.plan.storage[t]}_rows"


def _segments(g: TFLiteGraph, plan: S8Plan, emitter: _Emitter, layers: list[dict]) -> tuple[list, list]:
    """What dqa_model_run calls, in order (a layer run whole, or a segment with its table of rounds),
    and the dqa_rows_s8_t of every tensor a segment touches (a ring: its rows named and commented)."""
    starts = {seg.first: seg for seg in plan.memory.segments}
    rings = {name: count for seg in plan.memory.segments for name, count in seg.ring_rows.items()}
    steps, tensors, i = [], {}, 0
    while i < len(layers):
        seg = starts.get(i)
        if seg is None:
            steps.append({"layer": layers[i], "segment": None})
            i += 1
            continue
        members = []
        if seg.stages[0].name == INPUT_STAGE:
            tensors.setdefault("input", g.inputs[0])
            members.append({"name": INPUT_STAGE, "index": None,
                            "rows_call": "dqa_model_input_rows(done[0], done[0] + 1u);",
                            "comment": "the application's input rows (dqa_model_set_input())"})
        for k, position in enumerate(range(seg.first, seg.last + 1), start=len(members)):
            op = g.ops[position]
            rows_of = op.inputs[:1] + ([] if _is_global_pool(g, op) else op.inputs[1:2] * (op.op in ("ADD", "SUB"))
                                       + op.outputs[:1])  # a pool's one output pixel: a plain pointer
            for t in rows_of:
                tensors.setdefault(plan.storage[t], t)
            layer = layers[position]  # not op.index: a folded PAD leaves its index out of g.ops
            layer["rows_call"] = emitter.rows_call(op, layer, f"done[{k}]", f"done[{k}] + 1u")
            members.append(layer)
        comment = (f"ops {seg.first}..{seg.last} as one row pipeline ({' -> '.join(m['name'] for m in members)}); "
                   f"ring rows: " + (", ".join(f"{n} {r}" for n, r in seg.ring_rows.items()) or "none"))
        steps.append({"layer": None, "segment": {"ident": f"segment_{seg.first}_{seg.last}", "layers": members,
                                                 "ops": [m for m in members if m["index"] is not None],
                                                 "rounds": len(seg.steps), "table": seg.advance_table_c(),
                                                 "bytes": seg.advance_bytes(), "comment": comment}})
        i = seg.last + 1
    descriptors = []
    for name, t in tensors.items():
        _, h, w, c = g.tensors[t].shape
        ring = rings.get(name)
        descriptors.append({
            "name": name, "offset": plan.memory.block(name).offset, "row_bytes": w * c,
            "slots": f"{name.upper()}_RING_ROWS" if ring else h, "ring_rows": ring,
            "comment": (f"{name}: {h}x{w}x{c}, " + (f"a ring of {ring} of its {h} rows (the most written but still "
                                                     f"to be read at once, planner.simulate)" if ring else "whole"))})
    return steps, descriptors


def generate_s8(g: TFLiteGraph, plan: S8Plan, out_dir: str | Path, target: str, name: str = "dqa_model",
                source: str = "", images: np.ndarray | None = None) -> Path:
    """Write the C project for an int8 TFLite graph and its ``plan_s8``; ``images`` are int8 harness inputs."""
    if not g.quantized:
        raise ValueError("generate_s8 needs an int8 model")
    refuse_activation_shapes(g, _is_c_layout, "the C backend handles [1, N] vectors and [1, H, W, C] "
                                              "NHWC tensors only", exempt=plan.folded)
    x, y = g.input, g.output
    row_tiles = target in ROW_TILE_TARGETS
    emitter = _Emitter(g, plan, row_tiles)
    layers = [emitter.layer(op) for op in g.ops]  # first: an op the C backend refuses leaves no directory
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, layer in enumerate(layers):
        layer["index"] = i
    run_order, row_tensors = _segments(g, plan, emitter, layers)
    ctx = dict(name=c_ident(name), version=__version__, source=Path(source).name if source else "a model",
               arena_bytes=plan.memory.arena_bytes, input_shape=x.shape[1:], input_bytes=int(np.prod(x.shape)),
               input_scale=repr(float(x.scale[0])), input_zero_point=int(x.zero_point[0]),
               output_count=int(np.prod(y.shape)), output_scale=repr(float(y.scale[0])),
               output_zero_point=int(y.zero_point[0]), layer_count=len(layers), layers=layers,
               arrays=emitter.arrays, blocks=plan.all_blocks(),
               input_offset=plan.offset(g.inputs[0]), output_offset=plan.offset(g.outputs[0]), target=target,
               row_tiles=int(row_tiles), run_order=run_order, row_tensors=row_tensors, schedule=plan.memory.schedule,
               streamed=sorted(name for seg in plan.memory.segments for name in seg.ring_rows),
               input_rows=streams_input(plan), input_row_bytes=int(np.prod(x.shape[2:])))
    if images is None:
        images = np.full((1,) + tuple(x.shape[1:]), int(x.zero_point[0]), np.int8)
    write_project(out_dir, ctx, "model_s8", np.asarray(images, np.int8).view(np.uint8), plan.describe())
    return out_dir
