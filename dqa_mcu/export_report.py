"""`dqa-mcu report OUT`: one self-contained HTML page about an export (DQA or TFLite-exact int8).

The page has the per-layer table (output shape, bits, important channels,
Huffman bits per error, arena offset and bytes, scratch, instructions when a
run recorded them), the arena's occupancy over the layer steps, RAM and flash
against the all-8-bit build, and the accuracy when the run had labels. Plots
are PNG embedded as base64: the page references nothing outside itself.

It reads what the export left in OUT (``dqa_export.json``, the layout
``model_layout.json`` codegen writes, the quantized model or ``model.tflite``,
the harness images) and, when there is one, a run report: the JSON of
``dqa-mcu run OUT --json FILE`` (``OUT/run.json`` by default, which
``dqa-mcu report OUT --data ...`` writes).

The all-8-bit build of a DQA export is the same graph with every stored
tensor at 8 bits and no error streams, placed by the same planner (its arena
equals the plan of the model quantized at 8 bits); its RAM and flash are this
build's with the arena swapped and the error-stream tables (importance flags,
Huffman tables) removed. Measured flash leaves out the harness's test images
(compiled into the firmware for the run). An int8 TFLite export is its own
all-8-bit build.
"""
from __future__ import annotations

import base64
import html
import io
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from dqa_mcu.api import EXPORT_INFO_FILE, HARNESS_IMAGES_FILE, QMODEL_FILE, TFLITE_INT8_MODE, TFLITE_MODEL_FILE
from dqa_mcu.codegen import planner
from dqa_mcu.codegen.dqa import LAYOUT_FILE, c_ident, config_summary, layout_blocks
from dqa_mcu.qmodel import QModel, QTensor
from dqa_mcu.reference import evaluate, dqa as reference

RUN_FILE = "run.json"  # the run the report shows unless told otherwise
REPORT_FILE = "report.html"
ERROR_TABLES = ("important", "huffman_table", "huffman_codes", "huffman_lengths")  # codegen's array suffixes


class ReportError(ValueError):
    """The folder is not an export the report can read; the message says why, in one line."""


@dataclass
class LayerRow:
    step: int  # the memory plan's step (lifetimes are in these)
    name: str
    op: str
    shape: tuple[int, ...]  # the output's
    bits: str  # "n" or "n + m"
    important: str  # "important / channels", "" without an error stream
    allocated_bits_per_error: float | None  # stream capacity / error symbols per inference
    measured_bits_per_error: float | None  # mean over the harness images
    offset: int  # of the output's storage in the arena
    bytes: int
    scratch_bytes: int
    instructions: int | None  # from the run, image 0


@dataclass
class Memory:
    arena: int
    constants: int  # const arrays of the generated model (flash, besides code)
    ram: int | None = None  # measured: .data + .bss of the firmware (a Cortex-M run)
    flash: int | None = None  # measured: .text + .rodata + .data, less the harness's test images


@dataclass
class ExportReport:
    folder: str
    source: str
    mode: str  # "DQA" or "TFLite-exact int8"
    target: str
    quantization: str
    rows: list[LayerRow]
    occupancy: np.ndarray  # (steps,) bytes of the blocks alive at each step
    extent: np.ndarray  # (steps,) highest arena byte in use at each step
    occupancy8: np.ndarray
    extent8: np.ndarray
    this: Memory
    all8: Memory
    run: dict | None
    accuracy: tuple[str, float] | None  # (metric, value) when the run had labels
    schedule: str = "layer"  # a DQA export's (planner.SCHEDULES); the all-8-bit arena is always "layer"


# -- reading an export -------------------------------------------------------------

def _read_json(path: Path, what: str) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ReportError(f"{path.parent}: {what} is missing ({path.name})") from None
    except (OSError, ValueError) as exc:
        raise ReportError(f"{path}: not readable as JSON ({exc})") from None


def _export_info(out: Path) -> dict:
    if not (out / EXPORT_INFO_FILE).is_file():
        raise ReportError(f"{out}: not a dqa-mcu export (no {EXPORT_INFO_FILE}); run dqa-mcu export first")
    info = _read_json(out / EXPORT_INFO_FILE, "the export's description")
    if not (out / LAYOUT_FILE).is_file():
        raise ReportError(f"{out}: exported by an older dqa-mcu (no {LAYOUT_FILE}); export it again")
    return info


def occupancy(blocks: list[dict], steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Per step: bytes of the blocks alive, and the highest arena byte they reach."""
    alive = np.zeros(steps, np.int64)
    extent = np.zeros(steps, np.int64)
    for b in blocks:
        span = slice(b["first"], b["last"] + 1)
        alive[span] += b["bytes"]
        extent[span] = np.maximum(extent[span], b["offset"] + b["bytes"])
    return alive, extent


def all_8bit(model: QModel) -> QModel:
    """The same graph with every stored tensor at 8 bits or more and no error streams."""
    def widen(t: QTensor) -> QTensor:
        if t.bits >= 8 and t.extra_bits == 0:
            return t
        return replace(t, bits=8, extra_bits=0, important=np.zeros_like(t.important), huffman=None,
                       err_capacity_bits=0)
    return replace(model, tensors={name: widen(t) for name, t in model.tensors.items()})


def _dqa_rows(out: Path, blocks: dict[str, dict]) -> tuple[list[LayerRow], QModel]:
    try:
        model = QModel.load(out / QMODEL_FILE)
        images = np.load(out / HARNESS_IMAGES_FILE)["x"]
    except (OSError, ValueError, KeyError) as exc:
        raise ReportError(f"{out}: the export's model or harness images cannot be read ({exc})") from None
    stats = reference.run(model, images).stats
    rows = []
    for step, node in enumerate(model.nodes):  # the input node, then the layers (codegen's layer indices)
        t = model.tensors[node.output]
        block = blocks[model.storage_of(node.output).name]
        scratch = blocks.get(f"{node.name}/scratch")
        allocated = measured = None
        if t.has_errors:
            allocated = t.err_capacity_bits / t.important_count
            if stats.get(t.name) and stats[t.name].stream_bits:
                measured = float(np.mean(stats[t.name].stream_bits)) / t.important_count
        rows.append(LayerRow(step, node.name, node.op, tuple(t.shape),
                             f"{t.bits} + {t.extra_bits}" if t.has_errors else str(t.bits),
                             f"{int(t.important.sum())} / {t.channels}" if t.has_errors else "",
                             allocated, measured, block["offset"], block["bytes"],
                             scratch["bytes"] if scratch else 0, None))
    return rows, model


def _tflite_rows(out: Path, layout: dict, blocks: dict[str, dict]) -> list[LayerRow]:
    from dqa_mcu.codegen.tflite import plan_s8
    from dqa_mcu.frontends.tflite_import import load_tflite
    try:
        graph = load_tflite(out / TFLITE_MODEL_FILE)
    except (OSError, ValueError) as exc:
        raise ReportError(f"{out}: the export's {TFLITE_MODEL_FILE} cannot be read ({exc})") from None
    storage = plan_s8(graph, "layer").storage  # which block holds each tensor (a RESHAPE shares its input's)
    x = graph.inputs[0]
    rows = [LayerRow(0, "input", "input", tuple(graph.tensors[x].shape[1:]), "int8", "", None, None,
                     blocks[storage[x]]["offset"], blocks[storage[x]]["bytes"], 0, None)]
    for layer, op in zip(layout["layers"], graph.ops):
        y = op.outputs[0]
        block = blocks[storage[y]]
        rows.append(LayerRow(layer["index"], layer["name"], op.op, tuple(graph.tensors[y].shape[1:]), "int8", "",
                             None, None, block["offset"], block["bytes"], 0, None))
    return rows


def _attach_instructions(rows: list[LayerRow], run: dict, layout: dict, run_file: Path) -> None:
    """The run's per-layer counts, in the layout's layer order (the harness prints them so)."""
    counted = run.get("layers") or []
    if not counted:
        return
    names = [layer["name"] for layer in layout["layers"]]
    if [name for name, _ in counted] != names:
        raise ReportError(f"{run_file}: its layers are not this export's (a run of another export?)")
    by_name = {name: int(count) for name, count in counted}
    if not any(by_name.values()):
        return  # a host run counts nothing
    for row in rows[1:]:
        row.instructions = by_name[row.name]


def _accuracy(run: dict) -> tuple[str, float] | None:
    for name in evaluate.TASKS:
        task = evaluate.task(name)
        if task.report_key in run:
            return task.metric, float(run[task.report_key])
    return None


def load(out: str | Path, run_file: str | Path | None = None) -> ExportReport:
    """Everything the page shows, from an export folder (and a run report, if given or in OUT/run.json)."""
    out = Path(out)
    info = _export_info(out)
    try:
        return _load(out, info, run_file)
    except (KeyError, TypeError, IndexError) as exc:  # files edited by hand, or from another export
        raise ReportError(f"{out}: its {LAYOUT_FILE}, model and run report do not fit together "
                          f"({type(exc).__name__}: {exc}); export it again") from None


def _load(out: Path, info: dict, run_file: str | Path | None) -> ExportReport:
    layout = _read_json(out / LAYOUT_FILE, "the layout")
    blocks = {b["name"]: b for b in layout["blocks"]}
    steps = 1 + max(b["last"] for b in layout["blocks"])
    alive, extent = occupancy(layout["blocks"], steps)
    constants = sum(c["bytes"] for c in layout["constants"])
    if info.get("mode") == TFLITE_INT8_MODE:
        rows = _tflite_rows(out, layout, blocks)
        mode, quantization = "TFLite-exact int8", "the .tflite's own int8 scales and zero points"
        alive8, extent8, arena8, constants8 = alive, extent, layout["arena_bytes"], constants
    else:
        rows, model = _dqa_rows(out, blocks)
        mode = "DQA"
        quantization = config_summary(model)
        plan8 = planner.plan(all_8bit(model), "layer")
        alive8, extent8 = occupancy(layout_blocks(plan8.blocks), steps)
        arena8 = plan8.arena_bytes
        error_tables = {f"{c_ident(t.name)}_{suffix}" for t in model.tensors.values() if t.has_errors
                        for suffix in ERROR_TABLES}
        constants8 = constants - sum(c["bytes"] for c in layout["constants"] if c["name"] in error_tables)
    this = Memory(layout["arena_bytes"], constants)
    all8 = Memory(arena8, constants8)
    run = None
    if run_file is not None or (out / RUN_FILE).is_file():
        run_file = Path(run_file or out / RUN_FILE)
        run = _read_json(run_file, "the run report")
        _attach_instructions(rows, run, layout, run_file)
        if "ram" in run and "flash" in run:
            harness_images = int(run["images"]) * int(np.prod(rows[0].shape))  # compiled in: not the model's
            this.ram, this.flash = int(run["ram"]), int(run["flash"]) - harness_images
            all8.ram = this.ram - this.arena + all8.arena
            all8.flash = this.flash - this.constants + all8.constants
    return ExportReport(out.name, Path(info.get("source", "")).name, mode, info.get("target", "?"), quantization,
                        rows, alive, extent, alive8, extent8, this, all8, run, _accuracy(run) if run else None,
                        layout.get("schedule", "layer"))


# -- the page ---------------------------------------------------------------------

def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _occupancy_plot(r: ExportReport) -> str:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator
    steps = np.arange(len(r.occupancy))
    fig, ax = plt.subplots(figsize=(8.5, 3.2))
    ax.step(steps, r.extent / 1024, where="mid", color="#1f6fb4", label=f"{r.mode}: highest byte in use")
    ax.fill_between(steps, r.occupancy / 1024, step="mid", color="#1f6fb4", alpha=0.25,
                    label=f"{r.mode}: bytes alive")
    if r.mode == "DQA":
        ax.step(steps, r.extent8 / 1024, where="mid", color="#d0612a", linestyle="--",
                label="all-8-bit: highest byte in use")
    ax.axhline(r.this.arena / 1024, color="#1f6fb4", linewidth=0.8, linestyle=":", label=f"{r.mode} arena")
    ax.set_xlabel("layer step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("arena KiB")
    ax.set_xlim(-0.5, len(steps) - 0.5)
    ax.set_ylim(0, None)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")
    try:
        return _png(fig)
    finally:
        plt.close(fig)


def _memory_bars(r: ExportReport) -> tuple[str, bool]:
    """Bars of RAM and flash (measured when a run recorded them, else the arena and the constants)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    measured = r.this.ram is not None
    labels = ("RAM (.data + .bss)", "flash (.text + .rodata\n+ .data), less test images") if measured else \
        ("activation arena (RAM)", "constants (flash, without code)")
    this = (r.this.ram, r.this.flash) if measured else (r.this.arena, r.this.constants)
    all8 = (r.all8.ram, r.all8.flash) if measured else (r.all8.arena, r.all8.constants)
    fig, ax = plt.subplots(figsize=(6.5, 2.6))
    y = np.arange(2)
    for offset, values, label, color in ((-0.2, this, f"this export ({r.mode})", "#1f6fb4"),
                                         (0.2, all8, "all-8-bit build", "#d0612a")):
        bars = ax.barh(y + offset, np.array(values) / 1024, height=0.38, label=label, color=color)
        ax.bar_label(bars, [f"{v / 1024:.1f} KiB" for v in values], padding=3, fontsize=8)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel("KiB")
    ax.set_xlim(0, max(max(this), max(all8)) / 1024 * 1.25)
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    try:
        return _png(fig), measured
    finally:
        plt.close(fig)


STYLE = """
body { font-family: -apple-system, "Segoe UI", "DejaVu Sans", sans-serif; margin: 24px; color: #222; }
h1 { font-size: 20px; margin: 0 0 4px; } h2 { font-size: 16px; margin: 22px 0 6px; }
.sub { color: #555; font-size: 13px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; margin: 14px 0; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 6px 10px; }
.card b { display: block; font-size: 18px; } .card span { color: #555; font-size: 12px; }
table { border-collapse: collapse; font-size: 12px; }
th, td { border-bottom: 1px solid #e4e4e4; padding: 3px 7px; text-align: right; white-space: nowrap; }
th { background: #f3f5f8; white-space: normal; vertical-align: bottom; max-width: 90px; }
td.l, th.l { text-align: left; }
.note { color: #555; font-size: 12px; max-width: 900px; }
"""


def _number(v, fmt: str = "{:,}") -> str:
    return "" if v is None else fmt.format(v)


def _cards(r: ExportReport) -> list[tuple[str, str]]:
    cards = [(f"{r.this.arena:,} B", f"activation arena ({r.schedule} schedule)")]
    if r.mode == "DQA":
        cards.append((f"{100 * r.this.arena / r.all8.arena:.1f} %",
                      f"of the all-8-bit whole-tensor arena ({r.all8.arena:,} B)"))
    cards.append((f"{r.this.constants:,} B", "constants"))
    if r.run:
        cards.append(("bit-exact" if r.run.get("bit_exact") else "MISMATCH",
                      f"{r.run.get('images', 0)} images on {r.run.get('target', r.target)}"))
        if r.run.get("instructions_per_inference"):
            cards.append((f"{r.run['instructions_per_inference']:,.0f}", "instructions per inference"))
        if r.run.get("overflowed_tensors"):
            cards.append((f"{r.run['overflowed_tensors']}", "error streams that overflowed (handled, spec 2.3)"))
    if r.accuracy:
        cards.append((f"{r.accuracy[1]:.2f}", f"{r.accuracy[0]} on the run's {r.run.get('images', 0)} images"))
    return cards


def _table(r: ExportReport) -> str:
    head = ("step", "layer", "op", "output H x W x C", "bits n + m", "important channels",
            "Huffman bits / error, allocated", "Huffman bits / error, measured", "arena offset", "bytes",
            "scratch bytes", "instructions")
    left = {1, 2}
    lines = ["<table><thead><tr>" + "".join(f'<th{" class=l" if i in left else ""}>{html.escape(h)}</th>'
                                            for i, h in enumerate(head)) + "</tr></thead><tbody>"]
    for row in r.rows:
        cells = (row.step, row.name, row.op, " x ".join(map(str, row.shape)), row.bits, row.important,
                 _number(row.allocated_bits_per_error, "{:.2f}"), _number(row.measured_bits_per_error, "{:.2f}"),
                 _number(row.offset), _number(row.bytes), _number(row.scratch_bytes or None),
                 _number(row.instructions))
        lines.append("<tr>" + "".join(f'<td{" class=l" if i in left else ""}>{html.escape(str(c))}</td>'
                                      for i, c in enumerate(cells)) + "</tr>")
    lines.append("</tbody></table>")
    return "\n".join(lines)


def _all8_note(r: ExportReport, measured: bool) -> str:
    if r.mode != "DQA":
        return "an int8 TFLite export is its own all-8-bit build"
    note = ("the same graph with every stored tensor at 8 bits and no error streams, placed by the same planner "
            "layer by layer (whole tensors)")
    if measured:
        note += ("; RAM and flash: this build's with that arena and without the error-stream tables "
                 "(flash: less the harness's test images, compiled in for the run)")
    return note


def render_html(r: ExportReport) -> str:
    bars, measured = _memory_bars(r)
    run_note = ("Instructions per layer: image 0 of the run, under QEMU -icount shift=0 (one guest instruction "
                "per count)" if any(row.instructions for row in r.rows) else
                "No instructions: no Cortex-M run recorded (dqa-mcu report OUT --data FILE, or "
                "dqa-mcu run OUT --json OUT/run.json)")
    cards = "".join(f"<div class=card><b>{html.escape(v)}</b><span>{html.escape(k)}</span></div>"
                    for v, k in _cards(r))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>dqa-mcu report: {html.escape(r.folder)}</title>
<style>{STYLE}</style></head>
<body>
<h1>{html.escape(r.folder)}: {html.escape(r.source or 'a model')}</h1>
<div class=sub>{html.escape(r.mode)} for {html.escape(r.target)}; {html.escape(r.quantization)}</div>
<div class=cards>{cards}</div>
<h2>Arena occupancy over the layer steps</h2>
<img alt="arena occupancy" src="data:image/png;base64,{_occupancy_plot(r)}">
<h2>RAM and flash against the all-8-bit build</h2>
<img alt="RAM and flash" src="data:image/png;base64,{bars}">
<p class=note>All-8-bit: {html.escape(_all8_note(r, measured))}.</p>
<h2>Layers</h2>
{_table(r)}
<p class=note>Bytes: the output's storage block (code plane + error stream), live from the step that writes it
to the last that reads it. Huffman bits per error: the stream's capacity over the error symbols of one inference
(allocated), and the mean over the export's harness images (measured).<br>{html.escape(run_note)}.</p>
</body></html>
"""


def write(out: str | Path, run_file: str | Path | None = None, html_path: str | Path | None = None) -> Path:
    """Write the page (default OUT/report.html); returns its path."""
    path = Path(html_path) if html_path else Path(out) / REPORT_FILE
    path.write_text(render_html(load(out, run_file)))
    return path
