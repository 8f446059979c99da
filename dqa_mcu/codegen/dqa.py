"""Code generation: QModel + memory plan -> a self-contained C project (Jinja2).

The output directory gets model.h/model.c (API, tensors, layer sequence),
model_weights.c/.h (const data), the harness (main.c, harness_inputs.c/.h),
a CMakeLists.txt, and a copy of the runtime and board support under dqa/,
so the project builds on its own. An application links the model instead:
the CMakeLists.txt, added with add_subdirectory(), defines the static
library target <name> (model + runtime), and <name>.mk lists the sources,
include paths and flags for a plain Makefile. Output is deterministic: the
same inputs give byte-identical files.
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import jinja2
import numpy as np

from dqa_mcu import __version__
from dqa_mcu.codegen.planner import MAC_ROWS, MemoryPlan, Segment, ring_slot
from dqa_mcu.qmodel import QModel, QNode, QTensor

ROOT = Path(__file__).resolve().parents[2]
TEMPLATES = ROOT / "templates"
FIRMWARE = ROOT / "firmware"
VALUES_PER_LINE = 16
COPIED_FIRMWARE = ("runtime", "board", "cmake")
NOT_COPIED = shutil.ignore_patterns("test", "__pycache__")  # the runtime's own test driver
LAYOUT_FILE = "model_layout.json"  # the memory plan and the constants, as plain data (dqa-mcu report)
CTYPE_BYTES = {"int8_t": 1, "uint8_t": 1, "int16_t": 2, "int32_t": 4, "uint32_t": 4, "double": 8}


ROW_TILE_TARGETS = ("cortex-m55",)  # MVE: tiles with rows contiguous (DQA_CONV_TILE_ROWS in dqa_runtime.h)


def is_depthwise(w: np.ndarray, groups: int) -> bool:
    """One input and one output channel per group: dqa_conv2d reads such weights as OHWI."""
    return w.shape[3] == 1 and w.shape[0] == groups


def tile_conv_weights(w: np.ndarray, groups: int, rows_contiguous: bool = False) -> np.ndarray:
    """OHWI int8 conv weights in the order dqa_conv2d reads them (dqa_conv2d_weights_size() in
    dqa_runtime.h): depthwise unchanged; else per group, tiles of MAC_ROWS output channels (missing rows
    zero), each row's K = KH*KW*Cin_g weights padded to an even count with a zero; within a tile the
    pairs (k, k+1) as [w(0,k) w(1,k) w(0,k+1) w(1,k+1) w(2,k) w(3,k) w(2,k+1) w(3,k+1)], or with
    `rows_contiguous` (MVE) row after row."""
    if is_depthwise(w, groups):
        return w.ravel()
    c_out_g, k = w.shape[0] // groups, int(np.prod(w.shape[1:]))
    tiles, pairs = -(-c_out_g // MAC_ROWS), -(-k // 2)
    rows = np.zeros((groups, tiles * MAC_ROWS, 2 * pairs), np.int8)
    rows[:, :c_out_g, :k] = w.reshape(groups, c_out_g, k)
    if rows_contiguous:
        return rows.ravel()
    # row r = 2 * r_hi + r_lo and k = 2 * pair + j, stored in the order (group, tile, pair, r_hi, j, r_lo)
    split = rows.reshape(groups, tiles, 2, 2, pairs, 2)
    return split.transpose(0, 1, 4, 2, 5, 3).ravel()


def c_ident(name: str) -> str:
    ident = re.sub(r"\W", "_", name)
    return ident if not ident[0].isdigit() else f"t_{ident}"


@dataclass
class CArray:
    name: str
    ctype: str
    length: int
    body: str
    comment: str


def _body(values: np.ndarray) -> str:
    flat = [v.hex() if isinstance(v, float) else str(int(v)) for v in np.asarray(values).ravel().tolist()]
    lines = [", ".join(flat[i:i + VALUES_PER_LINE]) for i in range(0, len(flat), VALUES_PER_LINE)]
    return ",\n".join(f"    {line}" for line in lines)


class _Emitter:
    """Collects const arrays and per-layer C text for one model."""

    def __init__(self, model: QModel, plan: MemoryPlan, row_tiles: bool):
        self.model, self.plan = model, plan
        self.row_tiles = row_tiles  # conv weight tiles for MVE (tile_conv_weights)
        self.arrays: list[CArray] = []
        self.rings = {name: (rows, segment_ident(seg)) for seg in plan.segments
                      for name, rows in seg.ring_rows.items()}
        self.blocks = {b.name: b for b in plan.blocks}
        self.segment_at = {i: seg for seg in plan.segments for i in range(seg.first, seg.last + 1)}

    def array(self, name: str, ctype: str, values, comment: str) -> str:
        values = np.asarray(values)
        self.arrays.append(CArray(name, ctype, values.size, _body(values), comment))
        return name

    def tensor(self, t: QTensor) -> dict:
        ident = c_ident(t.name)
        store = self.model.storage_of(t.name)
        block = self.plan.block(store.name)
        errors = t.has_errors
        null = "NULL"
        important = huff_table = huff_codes = huff_lengths = lut = null
        if errors:
            important = self.array(f"{ident}_important", "uint8_t", t.important.astype(np.uint8),
                                   f"{t.name}: 1 = important channel (n + m bits)")
            code = t.huffman
            huff_table = self.array(f"{ident}_huffman_table", "uint8_t", code.decode_table(),
                                    f"{t.name}: Huffman decode table, peeked bits -> length << 4 | symbol")
            huff_codes = self.array(f"{ident}_huffman_codes", "uint8_t", code.codes,
                                    f"{t.name}: canonical Huffman code per error symbol")
            huff_lengths = self.array(f"{ident}_huffman_lengths", "uint8_t", code.lengths,
                                      f"{t.name}: Huffman code length per error symbol")
        if t.lut is not None:
            lut = self.array(f"{ident}_lut", "int8_t", t.lut,
                             f"{t.name}: input stage, pixel -> value per channel (normalization folded)")
            description = "uint8 pixels, read through the normalization table"
        elif errors:
            description = (f"{t.bits}-bit codes, {int(t.important.sum())}/{t.channels} channels "
                           f"+{t.extra_bits} bits Huffman coded, stream {t.err_capacity_bits} bits")
        else:
            description = f"{t.bits}-bit {'signed' if t.signed else 'unsigned'} codes"
        if t.alias_of:
            description += f", alias of {t.alias_of}"
        stream = f"dqa_arena + {block.offset + block.plane_bytes}" if store.stream_bytes else null
        ring = self.rings.get(t.name)
        if ring:
            description += (f"; row-streamed in {ring[1]}: a ring of {ring[0]} rows of {ring_slot(t)[1]} bytes"
                            + (f", {t.err_row_capacity_bits} error bits a row" if errors else ""))
        return dict(name=t.name, ident=ident, enum=f"T_{ident.upper()}", shape=t.shape, bits=t.bits,
                    extra_bits=t.extra_bits, signed=int(t.signed),
                    important=important, huffman_table=huff_table, huffman_codes=huff_codes,
                    huffman_lengths=huff_lengths, capacity=t.err_capacity_bits if errors else 0,
                    lut=lut, description=description, plane_offset=block.offset, stream_ptr=stream,
                    ring_rows=ring[0] if ring else 0, ring_define=f"{ident.upper()}_RING_ROWS",
                    slot_bytes=ring_slot(t)[1], row_capacity=t.err_row_capacity_bits if errors else 0)

    def requant(self, ident: str, node: QNode) -> str:
        a = node.arrays
        descriptions = {"multiplier": "requant multipliers", "residual_multiplier": "second-input multipliers",
                        "negative_multiplier": "leaky_relu: multipliers of a negative sum",
                        "negative_residual_multiplier": "leaky_relu: second-input multipliers of a negative sum"}
        fields = {name: self.array(f"{ident}_{name}", "int32_t", a[name], f"{node.name}: {what}")
                  if name in a else "NULL" for name, what in descriptions.items()}
        shift = self.array(f"{ident}_shift", "uint8_t", a["shift"], f"{node.name}: requant shifts")
        lo = self.array(f"{ident}_out_min", "int32_t", a["out_min"], f"{node.name}: output clamp, low")
        hi = self.array(f"{ident}_out_max", "int32_t", a["out_max"], f"{node.name}: output clamp, high")
        return ("{ " + ", ".join(f".{name} = {value}" for name, value in fields.items())
                + f", .shift = {shift}, .out_min = {lo}, .out_max = {hi} }}")

    def layer(self, index: int, node: QNode, tensors: dict[str, dict]) -> dict:
        ident = c_ident(node.name)
        t = self.model.tensors
        out = tensors[node.output]
        ins = [tensors[i] for i in node.inputs]
        shapes = " + ".join(f"{i['name']} ({'x'.join(map(str, i['shape']))})" for i in ins)
        comment = f"{node.name}: {node.op}, {shapes} -> {out['name']} ({'x'.join(map(str, out['shape']))})"
        if node.attrs.get("act", "none") != "none":
            comment += f", {node.attrs['act']}"
        ref = lambda d: f"&dqa_tensors[{d['enum']}]"  # noqa: E731
        info = lambda d: f"&{d['ident']}_info"  # noqa: E731
        # its scratch; in a segment, the part it keeps (none for kernels whose scratch is all work), its
        # work in the segment's shared block (planner.work_bytes)
        own = self.blocks.get(f"{node.name}/scratch")
        seg = self.segment_at.get(index)
        shared = self.blocks.get(seg.scratch_name()) if seg else None
        work = f"dqa_arena + {shared.offset}" if shared else "NULL"
        scratch = f"dqa_arena + {own.offset}" if own else work
        layer = dict(index=index, name=node.name, ident=ident, comment=comment, params=None, scratch_call=None)
        a, at = node.arrays, node.attrs
        if node.op in ("conv2d", "linear"):
            w = a["weight"] if node.op == "conv2d" else a["weight"][:, None, None, :]
            kh, kw = w.shape[1], w.shape[2]
            if node.op == "conv2d":
                stride, (pt, _, pl, _), dil, groups = at["stride"], at["padding"], at["dilation"], at["groups"]
            else:
                stride, pt, pl, dil, groups = (1, 1), 0, 0, (1, 1), 1
            layout = "OHWI" if is_depthwise(w, groups) else (
                f"in tiles of {MAC_ROWS} output channels{', rows contiguous' if self.row_tiles else ''}")
            weights = self.array(f"{ident}_weights", "int8_t", tile_conv_weights(w, groups, self.row_tiles),
                                 f"{node.name}: int8 weights {'x'.join(map(str, w.shape))}, {layout}")
            bias = self.array(f"{ident}_bias", "int32_t", a["bias"], f"{node.name}: int32 biases")
            layer["params_type"] = "dqa_conv_params_t"
            layer["params"] = [
                ("kernel_h", kh), ("kernel_w", kw), ("stride_h", stride[0]), ("stride_w", stride[1]),
                ("pad_top", pt), ("pad_left", pl), ("dilation_h", dil[0]), ("dilation_w", dil[1]),
                ("groups", groups), ("weights", weights), ("bias", bias), ("requant", self.requant(ident, node)),
                ("residual_stride", at.get("residual_stride", 1)),
                ("residual_channel_offset", at.get("residual_channel_offset", 0)),
                ("one_pixel", int(node.name in self.plan.one_pixel))]
            res, res_info = (ref(ins[1]), info(ins[1])) if len(ins) == 2 else ("NULL", "NULL")
            layer["call"] = (f"dqa_conv2d(&{ident}_params, {ref(ins[0])}, {res}, {ref(out)}, {scratch}, status);")
            shapes = f"&{ident}_params, {info(ins[0])}, {res_info}, {info(out)}"
            layer["state"] = ("dqa_conv_state_t", f"dqa_conv2d_start(&{ident}_state, &{ident}_params, "
                              f"{ref(ins[0])}, {res}, {ref(out)}, {scratch}, {work});", "dqa_conv2d_rows")
            layer["scratch_call"] = f"dqa_conv2d_get_buffer_size({shapes})"
            if seg is not None:
                layer["checks"] = [(f"dqa_conv2d_get_state_size(&{ident}_params, {info(ins[0])})", own.size),
                                   (f"dqa_conv2d_get_work_size({shapes})", shared.size)]
        elif node.op == "add":
            layer["params_type"] = "dqa_add_params_t"
            layer["params"] = [("b_stride", at["b_stride"]), ("b_channel_offset", at["b_channel_offset"]),
                               ("requant", self.requant(ident, node))]
            layer["call"] = f"dqa_add(&{ident}_params, {ref(ins[0])}, {ref(ins[1])}, {ref(out)}, {scratch}, status);"
            layer["state"] = ("dqa_add_state_t", f"dqa_add_start(&{ident}_state, {ref(ins[0])}, {ref(ins[1])}, "
                              f"{ref(out)}, {scratch});", "dqa_add_rows")
            layer["scratch_call"] = f"dqa_add_get_buffer_size({info(ins[0])}, {info(ins[1])}, {info(out)})"
        elif node.op in ("maxpool", "avgpool", "global_avgpool"):
            x = t[node.inputs[0]]
            if node.op == "global_avgpool":
                kernel, stride, pad = (x.shape[0], x.shape[1]), (1, 1), (0, 0, 0, 0)
            else:
                kernel, stride, pad = at["kernel"], at["stride"], at["padding"]
            requant = self.requant(ident, node) if node.op != "maxpool" else "{ 0 }"
            layer["params_type"] = "dqa_pool_params_t"
            layer["params"] = [("kernel_h", kernel[0]), ("kernel_w", kernel[1]), ("stride_h", stride[0]),
                               ("stride_w", stride[1]), ("pad_top", pad[0]), ("pad_left", pad[2]),
                               ("requant", requant)]
            fn = "dqa_maxpool" if node.op == "maxpool" else "dqa_avgpool"
            layer["call"] = f"{fn}(&{ident}_params, {ref(ins[0])}, {ref(out)}, {scratch}, status);"
            layer["state"] = ("dqa_pool_state_t", f"dqa_pool_start(&{ident}_state, &{ident}_params, {ref(ins[0])}, "
                              f"{ref(out)}, {scratch}, {work}, {int(node.op == 'maxpool')});", "dqa_pool_rows")
            layer["scratch_call"] = f"dqa_pool_get_buffer_size(&{ident}_params, {info(ins[0])}, {info(out)})"
            if seg is not None:
                layer["checks"] = [(f"dqa_pool_get_state_size(&{ident}_params, {info(ins[0])}, {info(out)})",
                                    own.size), (f"dqa_pool_get_work_size({info(ins[0])}, {info(out)})", shared.size)]
        elif node.op == "concat":
            if len(ins) != 2:
                raise ValueError(f"node {node.name!r}: the C backend concatenates 2 inputs, got {len(ins)}")
            layer["call"] = f"dqa_concat({ref(ins[0])}, {ref(ins[1])}, {ref(out)}, {scratch}, status);"
            layer["state"] = ("dqa_concat_state_t", f"dqa_concat_start(&{ident}_state, {ref(ins[0])}, "
                              f"{ref(ins[1])}, {ref(out)}, {scratch});", "dqa_concat_rows")
            layer["scratch_call"] = f"dqa_concat_get_buffer_size({info(ins[0])}, {info(ins[1])}, {info(out)})"
        elif node.op == "upsample_nearest":
            sh, sw = at["scale"]
            layer["call"] = f"dqa_upsample_nearest({sh}, {sw}, {ref(ins[0])}, {ref(out)}, {scratch}, status);"
            layer["state"] = ("dqa_upsample_nearest_state_t", f"dqa_upsample_nearest_start(&{ident}_state, {sh}, "
                              f"{sw}, {ref(ins[0])}, {ref(out)}, {scratch});", "dqa_upsample_nearest_rows")
            layer["scratch_call"] = f"dqa_upsample_nearest_get_buffer_size({info(ins[0])}, {info(out)})"
        elif node.op == "depth_to_space":
            layer["call"] = (f"dqa_depth_to_space({at['block']}, {ref(ins[0])}, {ref(out)}, {scratch}, "
                             "status);")
            layer["scratch_call"] = f"dqa_depth_to_space_get_buffer_size({info(ins[0])}, {info(out)})"
        elif node.op == "upsample_bilinear":
            sh, sw = at["scale"]
            layer["params_type"] = "dqa_upsample_params_t"
            layer["params"] = [("scale_h", sh), ("scale_w", sw), ("requant", self.requant(ident, node))]
            layer["call"] = f"dqa_upsample_bilinear(&{ident}_params, {ref(ins[0])}, {ref(out)}, {scratch}, status);"
            layer["scratch_call"] = (f"dqa_upsample_bilinear_get_buffer_size(&{ident}_params, {info(ins[0])}, "
                                     f"{info(out)})")
        elif node.op == "mul":
            layer["params_type"] = "dqa_mul_params_t"
            layer["params"] = [("requant", self.requant(ident, node))]
            layer["call"] = f"dqa_mul(&{ident}_params, {ref(ins[0])}, {ref(ins[1])}, {ref(out)}, {scratch}, status);"
            layer["scratch_call"] = f"dqa_mul_get_buffer_size({info(ins[0])}, {info(ins[1])}, {info(out)})"
        elif node.op == "activation":
            fn, table = at["function"], np.asarray(a["table"])
            reach = (table.size - 1) // 2
            if table.size % 2 != 1 or table.min() < -(1 << 15) or table.max() >= 1 << 15:
                raise ValueError(f"node {node.name!r}: an activation table needs an odd number of int16 entries")
            layer["comment"] += f", {fn} table"
            name = self.array(f"{ident}_table", "int16_t", table,
                              f"{node.name}: {fn} at index steps -{reach} .. {reach}")
            index_multiplier = self.array(f"{ident}_index_multiplier", "int32_t", a["index_multiplier"],
                                          f"{node.name}: fine value -> table index, multipliers")
            index_shift = self.array(f"{ident}_index_shift", "uint8_t", a["index_shift"],
                                     f"{node.name}: fine value -> table index, shifts")
            layer["params_type"] = "dqa_activation_params_t"
            layer["params"] = [("table", name), ("reach", f"{reach}u"), ("index_multiplier", index_multiplier),
                               ("index_shift", index_shift), ("requant", self.requant(ident, node))]
            layer["call"] = f"dqa_activation(&{ident}_params, {ref(ins[0])}, {ref(out)}, {scratch}, status);"
            layer["state"] = ("dqa_activation_state_t", f"dqa_activation_start(&{ident}_state, {ref(ins[0])}, "
                              f"{ref(out)}, {scratch});", "dqa_activation_rows")
            layer["scratch_call"] = f"dqa_activation_get_buffer_size({info(ins[0])}, {info(out)})"
        elif node.op == "flatten":
            layer["call"] = (f"dqa_tensors[{out['enum']}].n_coded = dqa_tensors[{ins[0]['enum']}].n_coded; "
                             "/* same bytes, HWC order */")
        else:
            raise ValueError(f"node {node.name!r}: the C backend has no kernel for op {node.op!r}")
        # what dqa_model_init() checks: each kernel's size call against the bytes planned for it
        layer.setdefault("checks", [(layer["scratch_call"], (own or shared).size)] if layer["scratch_call"] else [])
        return layer


def segment_ident(seg: Segment) -> str:
    return f"segment_{seg.first}_{seg.last}"


def run_order(plan: MemoryPlan, layers: list[dict]) -> list[dict]:
    """What dqa_model_run calls, in order: a layer run whole, or a segment (its layers, rounds, rings)."""
    by_index = {layer["index"]: layer for layer in layers}
    starts = {seg.first: seg for seg in plan.segments}
    steps, i = [], min(by_index, default=0)
    while i in by_index:
        seg = starts.get(i)
        if seg is None:
            steps.append({"layer": by_index[i], "segment": None})
            i += 1
            continue
        members = [by_index[k] for k in range(seg.first, seg.last + 1)]
        rings = ", ".join(f"{name} {rows}" for name, rows in seg.ring_rows.items()) or "none"
        comment = (f"layers {seg.first}..{seg.last} as a row pipeline "
                   f"({' -> '.join(m['name'] for m in members)}); ring rows: {rings}")
        steps.append({"layer": None, "segment": {"ident": segment_ident(seg), "layers": members,
                                                 "rounds": len(seg.steps), "table": seg.advance_table_c(),
                                                 "bytes": seg.advance_bytes(), "comment": comment}})
        i = seg.last + 1
    return steps


def config_summary(model: QModel) -> str:
    c = model.config
    if not c:
        return "unknown"
    text = f"activations {c['bits']} bits, clip {c['clip']}"
    if c["extra_bits"] and c["important_ratio"]:
        text += f", DQA m = {c['extra_bits']}, important ratio {c['important_ratio']}, ranking {c['rank']}"
    return text


def _environment() -> jinja2.Environment:
    return jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                              keep_trailing_newline=True, trim_blocks=False, lstrip_blocks=False)


def write_harness_inputs(out_dir: Path, images: np.ndarray) -> None:
    env = _environment()
    rows = [", ".join(str(int(v)) for v in img.ravel()) for img in images]
    (out_dir / "harness_inputs.c").write_text(env.get_template("harness_inputs.c.j2").render(
        version=__version__, images=rows))
    (out_dir / "harness_inputs.h").write_text(env.get_template("harness_inputs.h.j2").render(
        version=__version__, count=len(images)))


def generate(model: QModel, plan: MemoryPlan, out_dir: str | Path, target: str, name: str = "dqa_model",
             source: str = "", images: np.ndarray | None = None) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    row_tiles = target in ROW_TILE_TARGETS
    emitter = _Emitter(model, plan, row_tiles)
    tensors = {n: emitter.tensor(t) for n, t in model.tensors.items()}
    layers = [emitter.layer(i, node, tensors) for i, node in enumerate(model.nodes) if node.op != "input"]
    out_t = model.tensors[model.output]
    in_t = model.tensors[model.input]
    ctx = dict(name=c_ident(name), version=__version__, source=Path(source).name if source else "a model",
               config_summary=config_summary(model), arena_bytes=plan.arena_bytes,
               input_shape=in_t.shape, input_bytes=in_t.size, output_count=out_t.size,
               output_scale=repr(float(out_t.scale[0])), layer_count=len(layers),
               blocks=sorted(plan.blocks, key=lambda b: (b.first, b.name)),
               tensors=list(tensors.values()), layers=layers, arrays=emitter.arrays,
               input_enum=tensors[model.input]["enum"], output_enum=tensors[model.output]["enum"], target=target,
               row_tiles=int(row_tiles), run_order=run_order(plan, layers),
               schedule=plan.schedule, streamed=sorted(emitter.rings))
    if images is None:
        images = np.zeros((1,) + tuple(in_t.shape), dtype=np.uint8)
    write_project(out_dir, ctx, "model", images, plan.describe(model))
    return out_dir


def write_project(out_dir: Path, ctx: dict, model_template: str, images: np.ndarray, memory_plan: str) -> None:
    """Render model.h/.c from ``<model_template>.h.j2/.c.j2`` and the shared templates, copy the harness
    and the firmware, write the harness images (bytes), the memory plan and the layout (LAYOUT_FILE)."""
    env = _environment()
    for template, filename in ((f"{model_template}.h.j2", "model.h"), (f"{model_template}.c.j2", "model.c"),
                               ("model_weights.h.j2", "model_weights.h"), ("model_weights.c.j2", "model_weights.c"),
                               ("CMakeLists.txt.j2", "CMakeLists.txt"), ("model.mk.j2", f"{ctx['name']}.mk")):
        (out_dir / filename).write_text(env.get_template(template).render(**ctx))
    shutil.copyfile(FIRMWARE / "harness" / "main.c", out_dir / "main.c")
    write_harness_inputs(out_dir, images)
    dqa_dir = out_dir / "dqa"
    for sub in COPIED_FIRMWARE:
        shutil.copytree(FIRMWARE / sub, dqa_dir / sub, dirs_exist_ok=True, ignore=NOT_COPIED)
    (out_dir / "memory_plan.txt").write_text(memory_plan + "\n")
    (out_dir / LAYOUT_FILE).write_text(json.dumps(_layout(ctx), indent=1) + "\n")


def layout_blocks(blocks) -> list[dict]:
    """Arena blocks as plain data: name, offset, bytes, first and last step."""
    return [{"name": b.name, "offset": b.offset, "bytes": b.size, "first": b.first, "last": b.last} for b in blocks]


def _layout(ctx: dict) -> dict:
    """What the generated C places where: arena blocks (offsets, bytes, lifetimes in layer steps),
    the layers in run order (the harness's per-layer counts follow it), and every const array."""
    streamed = {"schedule": ctx["schedule"], "streamed": ctx["streamed"]} if "streamed" in ctx else {}  # DQA
    return {"arena_bytes": ctx["arena_bytes"], "blocks": layout_blocks(ctx["blocks"]), **streamed,
            "layers": [{"index": layer["index"], "name": layer["name"]} for layer in ctx["layers"]],
            "constants": [{"name": a.name, "ctype": a.ctype, "length": a.length,
                           "bytes": a.length * CTYPE_BYTES[a.ctype]} for a in ctx["arrays"]]}
