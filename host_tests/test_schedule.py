"""The row-streamed schedule (planner, issue 13) and the per-row error streams of spec 2.4."""
import numpy as np
import pytest

from dqa_mcu.codegen import planner
from dqa_mcu.codegen.planner import PointRead, RowsRead, Stage, WindowRead, simulate
from dqa_mcu.quantize.quantizer import QuantConfig, quantize
from dqa_mcu.reference import dqa as reference


def conv3x3(name, src, h, stride=1, residual=None):
    h_out = (h - 1) // stride + 1
    reads = [(src, WindowRead(h, h, h_out, 3, 3, stride, stride, 1, 1))]
    if residual:
        reads.append((residual, PointRead(h, h, h_out, stride)))
    return Stage(name, name, h_out, h_out, tuple(reads))


def test_rings_of_a_residual_block_hold_what_its_windows_and_shortcut_still_read():
    # x -> a -> b (+ x): b's window lags a by one row, the shortcut reads x two rows behind a's window
    stages = [conv3x3("x", "in", 8), conv3x3("a", "x", 8), conv3x3("b", "a", 8, residual="x")]
    steps, rings = simulate(stages, {"in": 8}, {"x", "a"})
    assert rings == {"a": 2, "x": 3}
    assert steps[-1] == [8, 8, 8] and len(steps) == 10  # two rounds of pipeline fill, no row twice


def test_a_stride_2_block_with_a_subsampled_shortcut_and_global_pooling_of_rows():
    stages = [conv3x3("x", "in", 8), conv3x3("a", "x", 8, stride=2), conv3x3("b", "a", 4, residual=None),
              Stage("pool", "pool", 1, 4, (("b", RowsRead(4)),), final_only=True)]
    stages[2] = Stage("b", "b", 4, 4, stages[2].reads + (("x", PointRead(8, 8, 4, 2)),))
    steps, rings = simulate(stages, {"in": 8}, {"x", "a", "b"})
    assert rings == {"a": 2, "b": 1, "x": 4}
    assert steps[-1] == [8, 4, 4, 4]


def test_a_whole_tensor_made_in_the_segment_is_read_only_once_complete():
    """A tensor the segment writes but keeps whole (it is read outside the segment too) has one n_coded, set
    with its last pixel (spec 2.3), so its readers in the segment wait for all of it; read row by row, they
    decoded the previous inference's count (found in review)."""
    stages = [conv3x3("x", "in", 8), conv3x3("a", "x", 8)]
    steps, rings = simulate(stages, {"in": 8}, set())
    assert rings == {}
    assert [a for _, a in steps[:7]] == [0] * 7 and steps[7] == [8, 1] and len(steps) == 15


@pytest.mark.parametrize("layers", [2, 8, 9, 17])
def test_the_table_of_advances_holds_one_bit_per_layer_and_round_and_gives_back_the_counts(layers):
    """The generated C keeps, per round, which layers do their next unit (bit k % 8 of byte k / 8); summed
    over the rounds, the bits are the counts simulate() gives (what the kernels' rows calls see), however
    many bytes a round takes. 300 rows: counts past one byte."""
    stages = [conv3x3("x0", "in", 300)] + [conv3x3(f"x{k}", f"x{k - 1}", 300) for k in range(1, layers)]
    steps, rings = simulate(stages, {"in": 300}, {f"x{k}" for k in range(layers - 1)})
    seg = planner.Segment(1, layers, stages, steps, rings)
    assert seg.advance_bytes() == (layers + 7) // 8
    rows = [[int(b.strip(" {}u"), 16) for b in line.split(",") if b.strip(" {}")]
            for line in seg.advance_table_c().splitlines()]
    bits = np.array([[row[k // 8] >> (k % 8) & 1 for k in range(layers)] for row in rows])
    assert all(len(row) == seg.advance_bytes() for row in rows)
    assert np.array_equal(np.cumsum(bits, axis=0), steps)


def test_a_pipeline_that_waits_on_itself_is_refused_in_one_line():
    stages = [conv3x3("a", "in", 8), conv3x3("p", "q", 8), conv3x3("q", "p", 8)]
    with pytest.raises(ValueError, match="p, q cannot finish"):
        simulate(stages, {"in": 8}, {"p", "q"})


@pytest.fixture(scope="module")
def dqa3(resnet20, cifar_calib):
    graph, calib = resnet20
    return quantize(graph, calib, QuantConfig(bits=3), cifar_calib)


@pytest.mark.parametrize("schedule", ["auto", "stream"])
def test_streamed_plans_never_overlap_live_blocks_and_auto_lowers_the_arena(dqa3, schedule):
    plan = planner.plan(dqa3, schedule)
    layer = planner.plan(dqa3, "layer")
    assert plan.segments and (schedule != "auto" or plan.arena_bytes < layer.arena_bytes)
    for i, a in enumerate(plan.blocks):
        for b in plan.blocks[i + 1:]:
            if a.first <= b.last and b.first <= a.last:
                assert a.offset + a.size <= b.offset or b.offset + b.size <= a.offset, (a.name, b.name)
    for seg in plan.segments:  # a ring is read only inside its segment
        for name in seg.ring_rows:
            users = [i for i, n in enumerate(dqa3.nodes) if name in n.inputs]
            assert all(seg.first <= i <= seg.last for i in users)


def test_a_row_stream_that_overflows_loses_exactly_the_symbols_past_its_rows_capacity(dqa3, cifar_calib):
    name = "layer1_0_conv1"
    t = dqa3.tensors[name]
    images = cifar_calib[:2]
    whole = reference.run(dqa3, images, keep_tensors=True).tensors[name]
    old = t.err_row_capacity_bits
    same = reference.run(dqa3, images, keep_tensors=True, streamed={name})
    assert np.array_equal(same.tensors[name], whole) and not same.overflowed_tensors.any()
    try:
        t.err_row_capacity_bits = old // 3
        streamed = reference.run(dqa3, images, keep_tensors=True, streamed={name})
    finally:
        t.err_row_capacity_bits = old
    m, lengths = t.extra_bits, np.asarray(t.huffman.lengths)
    expected = whole.copy()
    for img in range(len(images)):
        for row in range(t.shape[0]):
            written = 0
            for col in range(t.shape[1]):
                for c in np.flatnonzero(t.important):
                    v = whole[img, row, col, c]
                    written += lengths[v & ((1 << m) - 1)]
                    if written > old // 3:
                        expected[img, row, col, c] = ((v >> m) << m) + (1 << (m - 1))
    assert np.array_equal(streamed.tensors[name], expected)
    assert (streamed.overflowed_tensors >= 1).all()


def test_export_streams_by_default_and_says_so_in_the_summary_the_plan_and_the_layout(dqa3, tmp_path):
    import json

    from test_planner_cli import run_cli
    dqa3.save(tmp_path / "m.dqa.npz")
    proc = run_cli("export", str(tmp_path / "m.dqa.npz"), "--target", "host", "--no-build", "-o", str(tmp_path / "o"))
    assert proc.returncode == 0, proc.stderr
    plan = planner.plan(dqa3, "auto")
    summary = f"arena {plan.arena_bytes} bytes (auto schedule, {len(plan.segments)} row-streamed segments)"
    assert summary in proc.stdout
    assert (tmp_path / "o" / "memory_plan.txt").read_text().rstrip().endswith(
        f"arena peak: {plan.arena_bytes} bytes (auto schedule, {len(plan.segments)} row-streamed segments)")
    layout = json.loads((tmp_path / "o" / "model_layout.json").read_text())
    assert layout["schedule"] == "auto" and layout["arena_bytes"] == plan.arena_bytes < planner.plan(dqa3, "layer").arena_bytes


def test_a_budget_estimate_scales_each_rows_capacity_with_its_important_channels(dqa3):
    from dqa_mcu.quantize.budget import _Estimate
    name = "layer1_0_conv1"
    t = dqa3.tensors[name]
    count = int(t.important.sum())
    orders = {name: np.argsort(~t.important, kind="stable")}
    estimate = _Estimate(dqa3, orders, "auto")
    estimate.set_count(name, count // 2)
    row_bits = estimate.tensors[name].err_row_capacity_bits
    assert 0 <= row_bits - t.err_row_capacity_bits * (count // 2) / count < 2  # rounded up (a float's ceil)
    ring_before = planner.ring_slot(t)[1]
    assert planner.ring_slot(estimate.tensors[name])[1] < ring_before  # the ring the auto plan holds shrinks


def test_an_upsampled_row_stays_in_its_ring_until_its_last_output_row():
    # x (4 rows) -> nearest x2 (8 rows) -> 3x3 conv: x's row r is read for output rows 2r and 2r + 1
    read = planner.RepeatRead(4, 2)
    assert [read.need(u) for u in range(9)] == [0, 1, 1, 2, 2, 3, 3, 4, 4]
    assert [read.oldest(u) for u in range(9)] == [0, 0, 1, 1, 2, 2, 3, 3, 4]
    stages = [conv3x3("x", "in", 4), Stage("up", "up", 8, 8, (("x", read),)), conv3x3("c", "up", 8)]
    steps, rings = simulate(stages, {"in": 4}, {"x", "up"})
    # x writes a row a round, the upsampling takes two rounds per row: when x writes its row 3, the
    # upsampling is at output row 3 and still reads x's row 1
    assert rings["x"] == 3 and steps[-1] == [4, 8, 8]
