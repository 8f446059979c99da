"""`dqa-mcu report OUT`: the page's numbers against the plan and the run, and its self-containment.

A small DQA model (host export, and a cortex-m7 export run under QEMU through `report --data`)
and MLPerf Tiny's int8 ResNet-8 (TFLite-exact mode) are exported; the page's layer table is
parsed back and compared with `planner.plan` / `plan_s8`, the model's tensors and the run report.
"""
from __future__ import annotations

import base64
import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest
import torch

from dqa_mcu import api, cli, export_report
from dqa_mcu.codegen import planner
from dqa_mcu.codegen.tflite import plan_s8
from dqa_mcu.frontends import passes
from dqa_mcu.frontends.tflite_import import load_tflite
from dqa_mcu.frontends.torch_import import import_module
from dqa_mcu.quantize.calibrate import calibrate
from dqa_mcu.quantize.quantizer import QuantConfig, quantize

from conftest import shared_file
from test_backend import require_arm
from test_library import Residual

RESNET8 = "models/mlperf_tiny_ic_resnet8_int8.tflite"
COLUMNS = ("step", "layer", "op", "shape", "bits", "important", "allocated", "measured", "offset", "bytes",
           "scratch", "instructions")


class _Page(HTMLParser):
    """The layer table's cells (text per column), and every URL the page points at."""

    def __init__(self):
        super().__init__()
        self.rows: list[list[str]] = []
        self.urls: list[str] = []
        self._in_body = self._in_cell = False

    def handle_starttag(self, tag, attrs):
        self.urls += [value for name, value in attrs if name in ("src", "href", "data", "action")]
        self._in_body |= tag == "tbody"
        if self._in_body and tag == "tr":
            self.rows.append([])
        self._in_cell = self._in_body and tag == "td"
        if self._in_cell:
            self.rows[-1].append("")

    def handle_endtag(self, tag):
        self._in_body &= tag != "tbody"
        self._in_cell = False

    def handle_data(self, data):
        if self._in_cell:
            self.rows[-1][-1] += data


def _page(path) -> tuple[str, list[dict[str, str]], list[str]]:
    text = path.read_text()
    parser = _Page()
    parser.feed(text)
    return text, [dict(zip(COLUMNS, row)) for row in parser.rows], parser.urls


def _int(cell: str) -> int | None:
    return int(cell.replace(",", "")) if cell else None


@pytest.fixture(scope="module")
def small():
    """(graph, calibration, images, DQA 4-bit model) of a small residual CNN."""
    torch.manual_seed(0)
    images = np.random.default_rng(0).integers(0, 256, (24, 12, 12, 3), dtype=np.uint8)
    graph = passes.optimize(import_module(Residual().eval(), images.shape[1:]))
    calib = calibrate(graph, images[:16], show_progress=False)
    return graph, calib, images, quantize(graph, calib, QuantConfig(bits=4), images[:16])


def _export(model, images, out, target="host"):
    api.export_project(model, out, target, "small.pt", images, None, None, log=lambda *a: None)
    return out


def test_dqa_layer_table_equals_the_plan_and_the_page_is_self_contained(small, tmp_path):
    _, _, images, model = small
    out = _export(model, images[16:], tmp_path / "dqa")
    assert cli.main(["report", str(out)]) == 0
    text, rows, urls = _page(out / export_report.REPORT_FILE)
    plan = planner.plan(model, planner.DEFAULT_SCHEDULE)
    assert [r["layer"] for r in rows] == [n.name for n in model.nodes]
    for row, node in zip(rows, model.nodes):
        t = model.tensors[node.output]
        block = plan.block(model.storage_of(node.output).name)
        scratch = planner.scratch_bytes(node, model)
        assert (_int(row["offset"]), _int(row["bytes"])) == (block.offset, block.size), node.name
        assert _int(row["scratch"]) == (plan.block(f"{node.name}/scratch").size if scratch else None)
        assert row["shape"] == " x ".join(map(str, t.shape))
        if t.extra_bits and t.important.any():
            assert row["bits"] == f"{t.bits} + {t.extra_bits}"
            assert row["important"] == f"{int(t.important.sum())} / {t.channels}"
            assert float(row["allocated"]) == pytest.approx(t.err_capacity_bits / t.important_count, abs=0.005)
            assert 0 < float(row["measured"]) <= float(row["allocated"]) + 0.005
        else:
            assert row["bits"] == str(t.bits) and row["important"] == row["allocated"] == ""
        assert row["instructions"] == ""  # no run recorded
    assert f"{plan.arena_bytes:,} B" in text
    # nothing outside the page: both plots are inline PNGs, no scripts, styles or links elsewhere
    assert len(urls) == 2 and all(u.startswith("data:image/png;base64,") for u in urls)
    assert all(base64.b64decode(u.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n" for u in urls)
    assert not re.search(r"https?:|url\(|@import|<script|<link", text)


def test_the_all_8bit_comparison_is_the_model_quantized_at_8_bits(small):
    graph, calib, images, model = small
    int8 = quantize(graph, calib, QuantConfig(bits=8, extra_bits=0), images[:16])
    assert planner.plan(export_report.all_8bit(model), "layer").arena_bytes == planner.plan(int8, "layer").arena_bytes


def test_report_with_data_runs_on_cortex_m7_and_shows_instructions_and_accuracy(small, tmp_path):
    require_arm()
    _, _, images, model = small
    out = _export(model, images[16:], tmp_path / "m7", "cortex-m7")
    data = tmp_path / "test.npz"
    np.savez(data, x=images[:10], y=np.arange(10))
    assert cli.main(["report", str(out), "--data", str(data), "-n", "10"]) == 0
    run = json.loads((out / export_report.RUN_FILE).read_text())
    assert run["bit_exact"] and run["images"] == 10
    text, rows, _ = _page(out / export_report.REPORT_FILE)
    assert [(r["layer"], _int(r["instructions"])) for r in rows[1:]] == [tuple(x) for x in run["layers"]]
    assert f"{run['accuracy']:.2f}" in text and "top-1 %" in text
    report = export_report.load(out)
    assert (report.this.ram, report.this.flash) == (run["ram"], run["flash"] - 10 * images[0].size)
    assert report.all8.ram - report.this.ram == report.all8.arena - report.this.arena > 0


def test_tflite_int8_layer_table_equals_plan_s8(tmp_path):
    graph = load_tflite(shared_file(RESNET8))
    images = np.zeros((1, 32, 32, 3), np.int8)
    out = tmp_path / "r8"
    api.export_s8_project(graph, out, "host", str(graph.source), images, None, None, log=lambda *a: None)
    path = export_report.write(out)
    text, rows, urls = _page(path)
    plan = plan_s8(graph, planner.DEFAULT_SCHEDULE)  # the export's
    assert len(rows) == 1 + len(graph.ops)
    tensors = [graph.inputs[0]] + [op.outputs[0] for op in graph.ops]
    for row, tensor in zip(rows, tensors):
        block = plan.memory.block(plan.storage[tensor])
        assert (_int(row["offset"]), _int(row["bytes"])) == (block.offset, block.size)
        assert row["bits"] == "int8" and row["shape"] == " x ".join(map(str, graph.tensors[tensor].shape[1:]))
    assert [r["op"] for r in rows[1:]] == [op.op for op in graph.ops]
    assert "TFLite-exact int8" in text and f"{plan.memory.arena_bytes:,} B" in text
    assert all(u.startswith("data:image/png;base64,") for u in urls)


def test_bad_folders_get_one_clear_line(small, tmp_path, capsys):
    _, _, images, model = small
    assert cli.main(["report", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == (f"dqa-mcu: error: {tmp_path}: not a dqa-mcu export "
                                               f"(no dqa_export.json); run dqa-mcu export first")
    out = _export(model, images[16:], tmp_path / "dqa")
    (out / "run.json").write_text(json.dumps({"layers": [["somewhere_else", 5]], "bit_exact": True}))
    assert cli.main(["report", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not this export's" in err
    (out / "run.json").write_text("{ truncated")
    assert cli.main(["report", str(out)]) == 2
    assert "not readable as JSON" in capsys.readouterr().err
    (out / "run.json").write_text(json.dumps({"ram": 1, "flash": 2}))  # the number of images is missing
    assert cli.main(["report", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "do not fit together" in err
