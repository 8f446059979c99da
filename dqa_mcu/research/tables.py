"""The accuracy / memory report behind `dqa-mcu table` (issue 4): Markdown tables and PNG plots.

For each model: FP32; the paper's own setting (``paper_sim``: block outputs only,
FP32 weights, dynamic signed max-abs) with direct, NoisyQuant and DQA at each n;
our deployable scheme (the integer reference, every stored tensor quantized)
with direct and DQA at each n and their average stored bits per activation
(code planes + Huffman error-stream buffers, ``evaluate.memory``). Then, on
one model at one n, deployable ablations: important ratio, extra bits m,
ranking method, and the Huffman compression of each tensor.

Nothing is measured here that evaluate.py, paper_sim.py and greedy.py do not
already measure; this module picks the configurations, caches what several
cells share, and writes the files.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import numpy as np

from dqa_mcu.frontends.zoo import Normalization
from dqa_mcu.ir import Graph
from dqa_mcu.quantize.calibrate import calibrate, subsample
from dqa_mcu.quantize.greedy import RankingError, rankings_for
from dqa_mcu.quantize.quantizer import QuantConfig, quantize
from dqa_mcu.quantize.ranking import GLOBAL_RANKINGS
from dqa_mcu.reference import evaluate
from dqa_mcu.research.paper_sim import paper_accuracy

PAPER_METHODS = {"direct": "direct", "noisyquant": "NoisyQuant", "dqa": "DQA"}
DEPLOYABLE_METHODS = {"direct": "direct", "dqa": "DQA"}
RATIOS = (0.2, 0.4, 0.6)
EXTRA_BITS = (1, 2, 3, 4)
RANK_METHODS = ("greedy", "taylor", "noise", "random")
TABLE_FILE, ABLATION_FILE = "table.md", "ablations.md"
BITS_PLOT, MEMORY_PLOT = "accuracy_vs_bits.png", "accuracy_vs_memory.png"


@dataclass
class ModelInput:
    name: str
    graph: Graph  # the optimized graph the deployable scheme quantizes
    module: object  # the torch module paper mode hooks (its residual blocks)
    normalization: Normalization


@dataclass
class Data:
    test_x: np.ndarray
    test_y: np.ndarray
    calib_x: np.ndarray  # calibration (ranges, Huffman tables)
    calib_y: np.ndarray | None
    rank_count: int | None = None  # calibration images for rankings (greedy, taylor, paper greedy)

    @property
    def rank_images(self):
        return subsample(self.rank_count, self.calib_x, self.calib_y)


@dataclass
class ModelResult:
    name: str
    fp32: float
    paper: dict[tuple[str, int], float] = field(default_factory=dict)  # (method, n) -> top-1
    deployable: dict[tuple[str, int], evaluate.EvalRow] = field(default_factory=dict)


@dataclass
class AblationRow:
    group: str
    setting: str
    row: evaluate.EvalRow
    ranking_seconds: float | None = None  # whole-network rankings: time to compute


@dataclass
class Ablations:
    model: str
    bits: int
    images: int  # test images
    base: evaluate.EvalRow  # the DQA configuration the rows vary (its tensors are tabulated)
    rows: list[AblationRow]


class Evaluator:
    """One model's deployable measurements, each configuration measured once."""

    def __init__(self, model: ModelInput, data: Data, greedy_file: str | Path | None = None,
                 show_progress: bool = True):
        self.model, self.data, self.greedy_file = model, data, greedy_file
        self.show_progress = show_progress
        self.calib = calibrate(model.graph, data.calib_x, show_progress=show_progress)
        self._rankings: dict[QuantConfig, object] = {}
        self._rows: dict[tuple[QuantConfig, int], evaluate.EvalRow] = {}

    def ranking(self, config: QuantConfig):
        """The whole-network RankingResult config needs (None for local criteria); a greedy
        ranking is read from, or written to, greedy_file."""
        if config not in self._rankings:
            path = save = None
            if config.rank == "greedy" and self.greedy_file:
                path, save = (self.greedy_file, None) if Path(self.greedy_file).exists() else (None, self.greedy_file)
            x, y = self.data.rank_images
            result = rankings_for(config, self.model.graph, self.calib, x, y, path=path, save=save,
                                  show_progress=self.show_progress)
            if path is not None:  # a table cell must be the configuration it names
                made = {k: result.meta.get(k) for k in ("bits", "extra_bits", "important_ratio", "clip")}
                wanted = {k: getattr(config, k) for k in made}
                if made != wanted:
                    raise RankingError(f"{path}: a greedy ranking for {made}, not for {wanted}: delete the file "
                                       "to recompute it")
            self._rankings[config] = result
        return self._rankings[config]

    def row(self, label: str, config: QuantConfig, test_count: int | None = None) -> evaluate.EvalRow:
        x, y = subsample(test_count, self.data.test_x, self.data.test_y)
        key = (config, len(x))
        if key not in self._rows:
            ranking = self.ranking(config) if config.uses_dqa else None
            qmodel = quantize(self.model.graph, self.calib, config, self.data.calib_x,
                              ranking.rankings if ranking is not None else None)
            self._rows[key] = evaluate.eval_quantized(label, qmodel, x, y, show_progress=self.show_progress)
        return replace(self._rows[key], label=label)


def measure_model(ev: Evaluator, base: QuantConfig, bits: list[int], paper_importance: str = "greedy",
                  log=print) -> ModelResult:
    """The main table's row of one model (see the module docstring)."""
    m, d = ev.model, ev.data
    result = ModelResult(m.name, evaluate.top1(evaluate.float_logits(m.graph, d.test_x,
                                                                     show_progress=ev.show_progress), d.test_y))
    log(f"{m.name}: FP32 {result.fp32:.2f} %")
    rank_x, rank_y = d.rank_images
    for n in bits:
        for method in PAPER_METHODS:
            t0 = time.perf_counter()
            result.paper[method, n] = paper_accuracy(
                m.module, m.normalization, d.test_x, d.test_y, method, n, extra_bits=base.extra_bits,
                important_ratio=base.important_ratio, importance=paper_importance, calib_images=rank_x,
                calib_labels=rank_y, show_progress=ev.show_progress)
            log(f"{m.name}: paper mode {PAPER_METHODS[method]} n = {n}: {result.paper[method, n]:.2f} % "
                f"({time.perf_counter() - t0:.0f} s)")
        for method, config in (("direct", replace(base, bits=n, extra_bits=0)), ("dqa", replace(base, bits=n))):
            row = result.deployable[method, n] = ev.row(f"{DEPLOYABLE_METHODS[method]} {n}-bit", config)
            log(f"{m.name}: deployable {row.label}: {row.accuracy:.2f} % at "
                f"{row.memory.bits_per_activation:.2f} bits / activation")
    return result


def ablations(ev: Evaluator, base: QuantConfig, bits: int = 3, test_count: int | None = None,
              log=print) -> Ablations:
    """Deployable ablations at n = `bits` around `base`: ratio, m, ranking (plus direct n and n + 1)."""
    rows = []

    def add(group, setting, config):
        rows.append(AblationRow(group, setting, ev.row(f"{group}: {setting}", config, test_count)))
        if config.uses_dqa and config.rank in GLOBAL_RANKINGS:
            rows[-1].ranking_seconds = ev.ranking(config).meta.get("seconds")
        log(f"{ev.model.name} ablation {group} {setting}: {rows[-1].row.accuracy:.2f} %")
    at = replace(base, bits=bits)
    for n in (bits, bits + 1):
        add("direct", f"{n}-bit", replace(base, bits=n, extra_bits=0))
    for r in RATIOS:
        add("important ratio", f"r = {r}", replace(at, important_ratio=r))
    for m in EXTRA_BITS:
        add("extra bits", f"m = {m}", replace(at, extra_bits=m))
    for rank in RANK_METHODS:
        add("ranking", rank, replace(at, rank=rank))
    label = f"DQA {bits}-bit (m={at.extra_bits}, r={at.important_ratio}, {at.rank})"
    images = len(subsample(test_count, ev.data.test_y)[0])
    return Ablations(ev.model.name, bits, images, ev.row(label, at, test_count), rows)


# -- writing ----------------------------------------------------------------------------

@dataclass
class Provenance:
    """Where the figures come from, as the files' headers say it."""
    dataset: str
    command: str  # the command line that wrote the files
    test_images: int
    calib_images: int
    rank_images: int
    measured: str = field(default_factory=lambda: date.today().isoformat())


def headers(p: Provenance, names: list[str], base: QuantConfig, paper_importance: str,
            ablation: Ablations | None) -> tuple[list[str], list[str]]:
    """The opening lines of table.md and of ablations.md (empty without ablations)."""
    header = [f"# Accuracy and activation memory: {', '.join(names)}", "",
              f"Measured {p.measured} on {p.dataset}: {p.test_images} test images; {p.calib_images} calibration "
              f"images ({p.rank_images} of them for channel rankings). Command:", "",
              "    " + p.command, "",
              f"Paper mode: the paper's setting simulated in float (residual-block outputs only, FP32 weights, "
              f"dynamic signed per-channel max-abs); DQA with m = {base.extra_bits}, r = {base.important_ratio}, "
              f"{paper_importance} importance. Deployable: the integer reference (every stored tensor, int8 "
              f"weights, static {base.clip} clipping); DQA with m = {base.extra_bits}, r = {base.important_ratio}, "
              f"{base.rank} ranking. Bits per activation count code planes and Huffman error-stream buffers."]
    if ablation is None:
        return header, []
    return header, [f"# Ablations: {ablation.model}, deployable, n = {ablation.bits}", "",
                    f"Measured {p.measured} on {p.dataset}: {ablation.images} test images; one setting changed at "
                    f"a time from m = {base.extra_bits}, r = {base.important_ratio}, {base.rank} ranking; "
                    f"whole-network rankings on {p.rank_images} calibration images (ranking time: when computed). "
                    "Command:", "", "    " + p.command]

def _deployable_cell(row: evaluate.EvalRow) -> str:
    return f"{row.accuracy:.2f} ({row.memory.bits_per_activation:.2f})"


def main_table(results: list[ModelResult], bits: list[int]) -> str:
    """Rows: models; columns: FP32, paper-mode methods at each n, deployable methods at each n."""
    head = ["model", "FP32"]
    head += [f"paper {label} n={n}" for label in PAPER_METHODS.values() for n in bits]
    head += [f"deployable {label} n={n}" for label in DEPLOYABLE_METHODS.values() for n in bits]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        cells = [r.name, f"{r.fp32:.2f}"]
        cells += [f"{r.paper[m, n]:.2f}" for m in PAPER_METHODS for n in bits]
        cells += [_deployable_cell(r.deployable[m, n]) for m in DEPLOYABLE_METHODS for n in bits]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def memory_table(result: ModelResult) -> str:
    """One model's deployable configurations by memory, with the difference to FP32."""
    rows = sorted(result.deployable.values(), key=lambda r: r.memory.bits_per_activation)
    lines = ["| configuration | bits / activation | activation bytes | top-1 % | vs FP32 |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r.label} | {r.memory.bits_per_activation:.2f} | {r.memory.stored_bytes} | "
                     f"{r.accuracy:.2f} | {r.accuracy - result.fp32:+.2f} |")
    return "\n".join(lines)


def memory_matched(result: ModelResult, bits: list[int]) -> list[str]:
    """DQA at n against direct at n + 1, the direct width closest to DQA's memory."""
    out = []
    for n in bits:
        if n + 1 not in bits:
            continue
        dqa, direct = result.deployable["dqa", n], result.deployable["direct", n + 1]
        diff = dqa.accuracy - direct.accuracy
        verdict = "DQA wins" if diff > 0 else "direct wins" if diff < 0 else "a tie"
        out.append(f"- {result.name}: DQA {n}-bit {dqa.accuracy:.2f} % at {dqa.memory.bits_per_activation:.2f} "
                   f"bits vs direct {n + 1}-bit {direct.accuracy:.2f} % at "
                   f"{direct.memory.bits_per_activation:.2f} bits: {diff:+.2f} points ({verdict}).")
    return out


def ablation_table(rows: list[AblationRow]) -> str:
    labelled = [replace(a.row, label=f"{a.group}: {a.setting}" + (
        f" (ranking: {a.ranking_seconds:.0f} s)" if a.ranking_seconds is not None else "")) for a in rows]
    return evaluate.format_table(labelled, rows[0].row.memory.activations * 4)


def plot_accuracy_vs_bits(results: list[ModelResult], bits: list[int], path: Path) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4.2), squeeze=False)
    for ax, r in zip(axes[0], results):
        for m, label in PAPER_METHODS.items():
            ax.plot(bits, [r.paper[m, n] for n in bits], "--o", label=f"paper mode, {label}")
        for m, label in DEPLOYABLE_METHODS.items():
            ax.plot(bits, [r.deployable[m, n].accuracy for n in bits], "-s", label=f"deployable, {label}")
        ax.axhline(r.fp32, color="k", lw=0.8, ls=":", label="FP32")
        ax.set(title=r.name, xlabel="activation bits n", ylabel="top-1 %", xticks=bits)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    _save(fig, path)


def plot_accuracy_vs_memory(results: list[ModelResult], bits: list[int], path: Path,
                            ablation: Ablations | None = None) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4.2), squeeze=False)
    for ax, r in zip(axes[0], results):
        for m, label in DEPLOYABLE_METHODS.items():
            rows = [r.deployable[m, n] for n in bits]
            xs = [row.memory.bits_per_activation for row in rows]
            ax.plot(xs, [row.accuracy for row in rows], "-s", label=f"deployable {label}")
            for n, x, row in zip(bits, xs, rows):
                ax.annotate(f"n={n}", (x, row.accuracy), textcoords="offset points", xytext=(4, -10), fontsize=7)
        if ablation is not None and ablation.model == r.name:
            pts = [a for a in ablation.rows if a.group in ("important ratio", "extra bits")]
            ax.scatter([a.row.memory.bits_per_activation for a in pts], [a.row.accuracy for a in pts],
                       marker="x", color="gray", zorder=3,
                       label=f"DQA {ablation.bits}-bit ablations (r, m; {ablation.images} test images)")
            for a in pts:
                ax.annotate(a.setting.replace(" ", ""), (a.row.memory.bits_per_activation, a.row.accuracy),
                            textcoords="offset points", xytext=(3, 3), fontsize=6, color="gray")
        ax.axhline(r.fp32, color="k", lw=0.8, ls=":", label="FP32")
        ax.set(title=r.name, xlabel="average stored bits per activation (Huffman streams included)",
               ylabel="top-1 %")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)  # per panel: only the ablated model's has the ablation points
    _save(fig, path)


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    import matplotlib.pyplot as plt
    plt.close(fig)


def write_report(out_dir: str | Path, results: list[ModelResult], bits: list[int], header: list[str],
                 ablation: Ablations | None = None, ablation_header: list[str] = ()) -> list[Path]:
    """Write the tables (Markdown) and plots (PNG) into out_dir; returns the files written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = header + ["", "Top-1 %; deployable cells: top-1 % (average stored bits per activation).", "",
                     main_table(results, bits), "", "## Memory-matched comparison (deployable)", ""]
    for r in results:
        text += memory_matched(r, bits)
    for r in results:
        text += ["", f"### {r.name}", "", memory_table(r)]
    text += ["", f"![accuracy vs n]({BITS_PLOT})", "", f"![accuracy vs memory]({MEMORY_PLOT})", ""]
    (out / TABLE_FILE).write_text("\n".join(text))
    written = [out / TABLE_FILE]
    plot_accuracy_vs_bits(results, bits, out / BITS_PLOT)
    plot_accuracy_vs_memory(results, bits, out / MEMORY_PLOT, ablation)
    written += [out / BITS_PLOT, out / MEMORY_PLOT]
    if ablation is not None:
        text = list(ablation_header) + [
            "", ablation_table(ablation.rows), "",
            f"## Huffman compression per tensor ({ablation.model}, {ablation.base.label})", "",
            "compression = m / (mean Huffman bits per error symbol), measured on the test images.", "",
            ablation.base.tensors, ""]
        (out / ABLATION_FILE).write_text("\n".join(text))
        written.append(out / ABLATION_FILE)
    return written
