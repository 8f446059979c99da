"""Row-streamed execution in the TFLite-exact int8 mode (issue 13, docs/spec_tflite.md 5.1): the C runtime
under a streamed schedule equals the TFLite interpreter bit for bit, on the host under ASan + UBSan and
under QEMU on Cortex-M4, M7 and M55, through stride 2 and a residual block whose shortcut is subsampled."""
import numpy as np
import pytest

from dqa_mcu import api
from dqa_mcu.codegen import planner, tflite
from dqa_mcu.codegen.tflite import plan_s8, scratch_bytes
from dqa_mcu.device import build as fw
from dqa_mcu.frontends.tflite_import import load_tflite
from dqa_mcu.reference import tflite as R
from dqa_mcu.targets import get_target
from conftest import int8_inputs, shared_file, tflite_int8
from test_backend import require_arm
from test_tflite import tf  # noqa: F401


@pytest.fixture(scope="module")
def residual(tf, tmp_path_factory):  # noqa: F811
    """Odd sizes (13 x 11): conv -> a residual block (depthwise, conv) -> a block whose main path starts with
    a stride-2 3x3 conv and whose shortcut is a stride-2 1x1 conv -> a stride-2 depthwise with two outputs
    per channel -> a global AVERAGE_POOL_2D -> dense. The depthwise windows straddle their rings' last
    slots (their rows copied together first)."""
    keras, L = tf.keras, tf.keras.layers
    inp = keras.Input(batch_shape=(1, 13, 11, 3))
    x = L.Conv2D(8, 3, padding="same", activation="relu")(inp)
    y = L.Conv2D(8, 3, padding="same")(L.DepthwiseConv2D(3, padding="same", activation="relu")(x))
    x = L.Activation("relu")(L.Add()([x, y]))
    main = L.DepthwiseConv2D(3, padding="same")(L.Conv2D(12, 3, strides=2, padding="same", activation="relu")(x))
    x = L.Activation("relu")(L.Add()([main, L.Conv2D(12, 1, strides=2)(x)]))
    x = L.DepthwiseConv2D(3, strides=2, padding="same", depth_multiplier=2, activation="relu")(x)
    out = L.Dense(5)(L.Flatten()(L.AveragePooling2D((4, 3))(x)))
    samples = np.random.default_rng(3).uniform(-1, 1, (32, 13, 11, 3)).astype(np.float32)
    path = tmp_path_factory.mktemp("s8") / "residual.tflite"
    path.write_bytes(tflite_int8(tf, keras.Model(inp, out), samples))
    return path


def _run(path, out, target, x, schedule="stream", input_rows=False):
    """Export under `schedule`, build and run; the firmware outputs, checked against reference.tflite."""
    g = load_tflite(path)
    api.export_s8_project(g, out, target, str(path), x, None, None, log=lambda *a: None, schedule=schedule,
                          input_rows=input_rows)
    report = api.run_project(out, x, None, target, 600, sanitize=target == "host", log=lambda *a: None)
    exe = fw.executable(out, get_target(target), None, target == "host")
    return report, fw.run(exe, get_target(target)).outputs


def test_the_stream_schedule_covers_the_whole_net_with_stride_2_and_a_subsampled_shortcut(residual):
    g = load_tflite(residual)
    plan = plan_s8(g, "stream")
    (seg,) = plan.memory.segments
    assert [g.ops[i].op for i in (seg.first, seg.last)] == ["CONV_2D", "AVERAGE_POOL_2D"]
    readers: dict[str, list] = {}
    for stage in seg.stages:
        for name, read in stage.reads:
            readers.setdefault(name, []).append(read)
    # the first block's output: a ring read by the stride-2 3x3 conv and by the stride-2 1x1 shortcut
    shortcut = [name for name, reads in readers.items() if name in seg.ring_rows
                and sorted((r.kh, r.sh) for r in reads if isinstance(r, planner.WindowRead)) == [(1, 2), (3, 2)]]
    assert shortcut and seg.stages[-1].final_only  # the global pool takes rows as they come
    assert plan.memory.arena_bytes < plan_s8(g, "layer").memory.arena_bytes


@pytest.mark.parametrize("target", ["host", "cortex-m4", "cortex-m7", "cortex-m55"])
def test_a_streamed_residual_net_equals_litert(residual, target, tmp_path):
    if target != "host":
        require_arm()
    g = load_tflite(residual)
    x = int8_inputs(g, 5, 71)
    report, outputs = _run(residual, tmp_path / target, target, x)
    assert report["bit_exact"], report["mismatched_images"]
    assert np.array_equal(outputs, R.run_litert_interpreter(residual, x).reshape(len(x), -1))
    assert "dqa_conv2d_s8_rows(" in (tmp_path / target / "model.c").read_text()


@pytest.mark.parametrize("target", ["host", "cortex-m7"])
def test_the_input_handed_row_by_row_into_a_ring_is_bit_exact(residual, target, tmp_path):
    if target != "host":
        require_arm()
    g = load_tflite(residual)
    plan = plan_s8(g, "auto", input_rows=True)
    (seg,) = plan.memory.segments
    assert seg.stages[0].name == tflite.INPUT_STAGE and 0 < seg.ring_rows["input"] < g.input.shape[1]
    x = int8_inputs(g, 4, 73)
    report, outputs = _run(residual, tmp_path / target, target, x, schedule="auto", input_rows=True)
    assert report["bit_exact"], report["mismatched_images"]
    assert np.array_equal(outputs, R.run_litert_interpreter(residual, x).reshape(len(x), -1))
    header = (tmp_path / target / "model.h").read_text()
    assert "dqa_model_set_input(" in header and "dqa_model_input(void)" not in header


def test_a_reshape_that_changes_the_rows_ends_the_segments_on_both_sides(tf, tmp_path):  # noqa: F811
    """8x8x8 reshaped to 16x4x8 keeps its bytes (one block) but not its rows: a *_rows kernel reading it
    through the other tensor's row geometry gave wrong outputs (found in review)."""
    keras, L = tf.keras, tf.keras.layers
    inp = keras.Input(batch_shape=(1, 8, 8, 4))
    x = inp
    for _ in range(3):
        x = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = L.Reshape((16, 4, 8))(x)
    for _ in range(3):
        x = L.Conv2D(8, 3, padding="same", activation="relu")(x)
    out = L.Dense(5)(L.Flatten()(x))
    samples = np.random.default_rng(3).uniform(-1, 1, (16, 8, 8, 4)).astype(np.float32)
    path = tmp_path / "reshape.tflite"
    path.write_bytes(tflite_int8(tf, keras.Model(inp, out), samples))
    g = load_tflite(path)
    segments = plan_s8(g, "stream").memory.segments
    # op 3 is the RESHAPE: its block's writer (op 2) and reader (op 4) run whole
    assert [(seg.first, seg.last) for seg in segments] == [(0, 1), (5, 6)]
    x = int8_inputs(g, 2, 71)
    report, _ = _run(path, tmp_path / "out", "host", x)
    assert report["bit_exact"]


def test_a_ring_one_row_short_breaks_exactness(residual, tmp_path, monkeypatch):
    """The rings are as small as the outputs allow: the first conv's ring one row shorter is wrong."""
    real = tflite.pipeline

    def short(first, last, stages, heights, streamed):
        seg = real(first, last, stages, heights, streamed)
        seg.ring_rows[stages[0].output] -= 1  # the first conv's output, read by a 3x3 window and the add
        return seg
    monkeypatch.setattr(tflite, "pipeline", short)
    g = load_tflite(residual)
    report, _ = _run(residual, tmp_path / "short", "host", int8_inputs(g, 3, 72))
    assert not report["bit_exact"]


def test_resnet8_streams_whole_under_auto_in_the_arena_its_blocks_imply():
    g = load_tflite(shared_file("models/mlperf_tiny_ic_resnet8_int8.tflite"))
    plan = plan_s8(g, "auto")
    (seg,) = plan.memory.segments  # every op up to the pool: a stage's tensors are rings all at once
    assert [g.ops[i].op for i in (seg.first, seg.last)] == ["CONV_2D", "AVERAGE_POOL_2D"]
    ops = g.ops[seg.first:seg.last + 1]
    ring_bytes = {name: rows * int(np.prod(g.tensors[t].shape[2:]))
                  for t, name in plan.storage.items() for n, rows in seg.ring_rows.items() if n == name}
    assert all(plan.memory.block(name).size == size for name, size in ring_bytes.items())
    pool = ops[-1]
    implied = (int(np.prod(g.input.shape)) + sum(ring_bytes.values())  # the whole input, the rings,
               + max(scratch_bytes(g, op) for op in ops)  # one scratch for the segment's kernels,
               + 4 * g.tensors[pool.inputs[0]].shape[3]  # the pool's int32 sums and its output
               + int(np.prod(g.tensors[pool.outputs[0]].shape)))
    assert plan.memory.arena_bytes == implied  # all live across the segment, packed without a gap
    assert implied < plan_s8(g, "layer").memory.arena_bytes / 2


def test_resnet8_streamed_on_the_host_with_sanitizers(tmp_path):
    path = shared_file("models/mlperf_tiny_ic_resnet8_int8.tflite")
    d = np.load(shared_file("data/cifar10_test.npz"))
    x = (d["x"][::400].astype(np.int16) - 128).astype(np.int8)
    report, outputs = _run(path, tmp_path / "r8", "host", x, schedule="auto")
    assert report["bit_exact"], report["mismatched_images"]
    assert np.array_equal(outputs, R.run_litert_interpreter(path, x))


def test_resnet8_with_its_input_row_by_row_takes_a_ring_of_input_rows():
    g = load_tflite(shared_file("models/mlperf_tiny_ic_resnet8_int8.tflite"))
    whole, by_rows = plan_s8(g, "auto"), plan_s8(g, "auto", input_rows=True)
    rows = by_rows.memory.segments[0].ring_rows["input"]
    assert rows == 3  # the first conv's 3x3 window, read in place
    assert whole.memory.arena_bytes - by_rows.memory.arena_bytes == (32 - rows) * 32 * 3


def test_export_cli_prints_the_int8_segments_in_the_plan_and_the_summary(tmp_path):
    from test_planner_cli import run_cli
    path = shared_file("models/mlperf_tiny_ic_resnet8_int8.tflite")
    proc = run_cli("export", str(path), "--target", "host", "--no-build", "--schedule", "stream",
                   "-o", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    plan = plan_s8(load_tflite(path), "stream")
    assert (f"arena {plan.memory.arena_bytes} bytes (stream schedule, 1 row-streamed segments)" in proc.stdout)
    assert plan.memory.segments[0].describe() in (tmp_path / "out" / "memory_plan.txt").read_text()
    proc = run_cli("export", str(shared_file("models/resnet20_cifar10.th")), "--arch", "resnet20", "--target", "host",
                   "--calib", str(shared_file("data/cifar10_calib.npz")), "--input-rows", "-o", str(tmp_path / "dqa"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert "--input-rows" in line and "int8 mode only" in line
