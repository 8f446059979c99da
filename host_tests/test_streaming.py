"""Row-streamed execution (issue 13, docs/spec.md 2.4): the C runtime under a streamed schedule equals
the reference bit for bit, on the host under ASan + UBSan and under QEMU on Cortex-M4, M7 and M55."""
import numpy as np
import torch
import pytest

from dqa_mcu import api
from dqa_mcu.codegen import planner
from dqa_mcu.codegen.planner import PointRead
from dqa_mcu.quantize.quantizer import QuantConfig, quantize

from test_backend import require_arm

OVERFLOWING = "layer1_1_conv1"  # a streamed DQA tensor whose row capacity the tests cut to a third


@pytest.fixture(scope="module")
def streamed(resnet20, cifar_calib, cifar_test):
    graph, calib = resnet20
    model = quantize(graph, calib, QuantConfig(bits=3), cifar_calib)
    model.tensors[OVERFLOWING].err_row_capacity_bits //= 3
    return model, cifar_test[0][:2]


@pytest.fixture(scope="module")
def direct8(resnet20, cifar_calib):
    """All 8-bit direct (m = 0): ring slots without error streams or n_coded."""
    graph, calib = resnet20
    return quantize(graph, calib, QuantConfig(bits=8, extra_bits=0), cifar_calib)


def run(model, images, target, out, **run_args):
    api.export_project(model, out, target, "test model", images, None, None, log=lambda *a: None,
                       schedule="stream")
    return api.run_project(out, images, None, None, timeout=600, log=lambda *a: None, **run_args)


def test_the_stream_schedule_covers_a_subsampled_shortcut_an_overflow_and_pooling_of_rows(streamed):
    model, _ = streamed
    (seg,) = planner.plan(model, "stream").segments
    subsampled = [name for s in seg.stages for name, r in s.reads
                  if isinstance(r, PointRead) and r.stride == 2 and name in seg.ring_rows]
    assert subsampled and OVERFLOWING in seg.ring_rows
    assert seg.stages[-2].final_only  # global average pooling takes rows as they come


@pytest.mark.parametrize("target", ["host", "cortex-m4", "cortex-m7", "cortex-m55"])
def test_streamed_resnet20_is_bit_exact_with_its_overflowing_rows(streamed, target, tmp_path):
    if target != "host":
        require_arm()
    model, images = streamed
    report = run(model, images, target, tmp_path / target, sanitize=target == "host")
    assert report["bit_exact"], report["mismatched_images"]
    assert report["overflowed_tensors"] >= len(images)  # every image overflows the cut rows


@pytest.mark.parametrize("target", ["host", "cortex-m7"])
def test_streamed_direct_8bit_resnet20_is_bit_exact(direct8, streamed, target, tmp_path):
    if target != "host":
        require_arm()
    images = streamed[1]
    report = run(direct8, images, target, tmp_path / target, sanitize=target == "host")
    assert report["bit_exact"], report["mismatched_images"]


def test_a_ring_one_row_short_breaks_exactness(streamed, tmp_path, monkeypatch):
    model, images = streamed
    real = planner.segment

    def short(m, first, last):
        seg = real(m, first, last)
        seg.ring_rows["layer1_0_conv2"] -= 1  # the block output its shortcut still reads
        return seg
    monkeypatch.setattr(planner, "segment", short)
    report = run(model, images, "host", tmp_path / "short", sanitize=True)
    assert not report["bit_exact"]


def test_export_cli_takes_a_schedule_and_reports_it_in_the_plan_and_the_summary(streamed, tmp_path):
    from test_planner_cli import run_cli
    model, _ = streamed
    model.save(tmp_path / "m.dqa.npz")
    proc = run_cli("export", str(tmp_path / "m.dqa.npz"), "--target", "host", "--no-build", "--schedule", "auto",
                   "-o", str(tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    auto = planner.plan(model, "auto")
    assert f"arena {auto.arena_bytes} bytes (auto schedule, {len(auto.segments)} row-streamed segments)" in proc.stdout
    assert auto.segments[0].describe() in (tmp_path / "out" / "memory_plan.txt").read_text()


class TwoBranches(torch.nn.Module):
    """conv -> two conv branches added (an add no conv can fuse) -> hardswish (a table activation) ->
    avgpool 2x2 -> maxpool 3x3 stride 2 pad 1 -> GAP -> linear: the streamed add, activation and
    windowed pooling kernels."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.a = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.b = torch.nn.Conv2d(8, 8, 1)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.nn.functional.hardswish(torch.relu(self.a(x)) + torch.relu(self.b(x)))
        x = torch.nn.functional.max_pool2d(torch.nn.functional.avg_pool2d(x, 2), 3, 2, 1)
        return self.fc(torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


@pytest.fixture(scope="module")
def branches():
    from dqa_mcu.frontends import passes
    from dqa_mcu.frontends.torch_import import import_module
    from dqa_mcu.frontends.zoo import Normalization
    from dqa_mcu.quantize.calibrate import calibrate
    torch.manual_seed(0)
    images = np.random.default_rng(0).integers(0, 256, (64, 12, 12, 3), dtype=np.uint8)
    graph = passes.optimize(import_module(TwoBranches(), (12, 12, 3), Normalization(1 / 255, (0.5,) * 3, (0.25,) * 3)))
    model = quantize(graph, calibrate(graph, images, show_progress=False), QuantConfig(bits=4), images)
    return model, images[:4]


@pytest.mark.parametrize("target", ["host", "cortex-m55"])
def test_streamed_add_activation_and_windowed_pooling_are_bit_exact(branches, target, tmp_path):
    model, images = branches
    (seg,) = planner.plan(model, "stream").segments
    ops = [model.nodes[i].op for i in range(seg.first, seg.last + 1)]
    assert {"add", "activation", "avgpool", "maxpool", "global_avgpool"} <= set(ops)
    assert any(model.nodes[i].op == "activation" and model.nodes[i].output in seg.ring_rows
               for i in range(seg.first, seg.last + 1))  # its output a ring, read by the next layer
    if target != "host":
        require_arm()
    report = run(model, images, target, tmp_path / target, sanitize=target == "host")
    assert report["bit_exact"], report["mismatched_images"]


def test_a_whole_tensor_read_inside_its_segment_is_bit_exact(branches, tmp_path, monkeypatch):
    """The stem's output is read by conv a inside a segment and by conv b outside it, so it stays whole: a
    reads it only once complete, with the n_coded its writer set (a segment `stream` or `auto` makes
    whenever a tensor also feeds an op outside the run)."""
    model, images = branches
    stem = next(i for i, n in enumerate(model.nodes) if n.op == "conv2d")
    segment = planner.segment(model, stem, stem + 1)
    assert model.nodes[stem].output not in segment.ring_rows and model.tensors[model.nodes[stem].output].has_errors
    monkeypatch.setattr(planner, "choose_segments", lambda m, schedule: [segment] if schedule == "stream" else [])
    report = run(model, images, "host", tmp_path / "host", sanitize=True)
    assert report["bit_exact"], report["mismatched_images"]


class Concat(torch.nn.Module):
    """conv -> two conv branches concatenated along channels -> 1x1 conv -> GAP -> linear: the streamed
    concat, its first input's ring read by both branches' windows and by nothing else."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.a = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.b = torch.nn.Conv2d(8, 4, 3, padding=1)
        self.mix = torch.nn.Conv2d(12, 8, 1)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.stem(x))
        x = torch.relu(self.mix(torch.cat((torch.relu(self.a(x)), torch.relu(self.b(x))), 1)))
        return self.fc(torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


class Upsample(torch.nn.Module):
    """conv -> stride-2 conv -> nearest upsampling x2 -> conv -> GAP -> linear: each input row of the
    upsampling read for two output rows from its ring slot."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.down = torch.nn.Conv2d(8, 8, 3, stride=2, padding=1)
        self.up = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.fc = torch.nn.Linear(8, 4)

    def forward(self, x):
        x = torch.relu(self.down(torch.relu(self.stem(x))))
        x = torch.relu(self.up(torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest")))
        return self.fc(torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


@pytest.mark.parametrize("target", ["host", "cortex-m55"])
@pytest.mark.parametrize("module, op", [(Concat, "concat"), (Upsample, "upsample_nearest")])
def test_a_streamed_concat_and_nearest_upsampling_are_bit_exact(module, op, target, tmp_path):
    from dqa_mcu.frontends import passes
    from dqa_mcu.frontends.torch_import import import_module
    from dqa_mcu.frontends.zoo import Normalization
    from dqa_mcu.quantize.calibrate import calibrate
    torch.manual_seed(0)
    images = np.random.default_rng(1).integers(0, 256, (64, 12, 12, 3), dtype=np.uint8)
    graph = passes.optimize(import_module(module(), (12, 12, 3), Normalization(1 / 255, (0.5,) * 3, (0.25,) * 3)))
    model = quantize(graph, calibrate(graph, images, show_progress=False), QuantConfig(bits=4), images)
    (seg,) = planner.plan(model, "stream").segments
    node = next(n for n in model.nodes if n.op == op)
    assert seg.first <= model.nodes.index(node) <= seg.last
    assert all(name in seg.ring_rows for name in (*node.inputs, node.output))  # inputs and output are rings
    if target != "host":
        require_arm()
    report = run(model, images[:4], target, tmp_path / target, sanitize=target == "host")
    assert report["bit_exact"], report["mismatched_images"]


class WideHead(torch.nn.Module):
    """conv -> stride-2 conv -> a wide 1x1 conv -> GAP -> linear, MobileNetV2's tail: the wide conv's
    two-pixel work (a second int32 accumulator per channel) is the arena's peak, and the share of the
    arena one pixel at a time saves (17 %) outweighs the share of the instructions it is estimated to
    add (its 56 % of the MACs), so the planner runs it one pixel at a time."""

    def __init__(self):
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.down = torch.nn.Conv2d(16, 16, 3, stride=2, padding=1)
        self.wide = torch.nn.Conv2d(16, 320, 1)
        self.fc = torch.nn.Linear(320, 4)

    def forward(self, x):
        x = torch.relu(self.wide(torch.relu(self.down(torch.relu(self.stem(x))))))
        return self.fc(torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


@pytest.mark.parametrize("target", ["host", "cortex-m7"])
def test_a_conv_run_one_pixel_at_a_time_where_its_pairs_would_set_the_arena_is_bit_exact(target, tmp_path):
    from dqa_mcu.frontends import passes
    from dqa_mcu.frontends.torch_import import import_module
    from dqa_mcu.frontends.zoo import Normalization
    from dqa_mcu.quantize.calibrate import calibrate
    torch.manual_seed(0)
    images = np.random.default_rng(2).integers(0, 256, (64, 12, 12, 3), dtype=np.uint8)
    graph = passes.optimize(import_module(WideHead(), (12, 12, 3), Normalization(1 / 255, (0.5,) * 3, (0.25,) * 3)))
    model = quantize(graph, calibrate(graph, images, show_progress=False), QuantConfig(bits=4), images)
    plan = planner.plan(model, "stream")
    wide = next(n for n in model.nodes if n.op == "conv2d" and model.tensors[n.output].channels == 320)
    assert plan.one_pixel == {wide.name}
    with_pairs = planner.plan_segments(model, plan.segments, "stream")
    assert plan.arena_bytes < with_pairs.arena_bytes  # by the second accumulator of each of its channels
    if target != "host":
        require_arm()
    out = tmp_path / target
    report = run(model, images[:2], target, out, sanitize=target == "host")
    assert report["bit_exact"], report["mismatched_images"]
    assert ".one_pixel = 1," in (out / "model.c").read_text()
