"""--memory-budget: important ratios move away from the arena peak until the plan fits, the arena
planned under the schedule export runs by default (planner.DEFAULT_SCHEDULE)."""
import numpy as np
import pytest

from dqa_mcu.codegen import planner
from dqa_mcu.quantize.budget import fit_arena
from dqa_mcu.quantize.quantizer import QuantConfig, QuantizationError, quantize

from test_backend import export_and_run

DQA3 = QuantConfig(bits=3)


@pytest.fixture(scope="module")
def arenas(resnet20, cifar_calib):
    """The all-8-bit arena and the uniform-ratio DQA n = 3 model and plan, under the default schedule."""
    graph, calib = resnet20
    int8 = quantize(graph, calib, QuantConfig(bits=8, extra_bits=0), cifar_calib)
    uniform = quantize(graph, calib, DQA3, cifar_calib)
    return _arena(int8), uniform, planner.plan(uniform, planner.DEFAULT_SCHEDULE)


def _arena(model) -> int:
    return planner.plan(model, planner.DEFAULT_SCHEDULE).arena_bytes


def _counts(model):
    return {name: int(t.important.sum()) for name, t in model.tensors.items() if t.extra_bits}


def test_half_the_8bit_arena_is_met_by_moving_channels_off_the_peak(resnet20, cifar_calib, arenas):
    graph, calib = resnet20
    int8_arena, uniform, uniform_plan = arenas
    budget = int8_arena // 2
    assert uniform_plan.arena_bytes > budget  # otherwise this test shows nothing
    model = fit_arena(graph, calib, DQA3, cifar_calib, budget, log=lambda *a: None)
    assert _arena(model) <= budget
    before, after = _counts(uniform), _counts(model)
    top = max(uniform_plan.blocks, key=lambda b: b.offset + b.size)
    at_peak = [b.name for b in uniform_plan.blocks
               if b.name in before and b.first <= top.last and top.first <= b.last]
    assert at_peak and all(after[name] < before[name] for name in at_peak)
    # memory the peak reserves anyway goes to the other tensors
    assert any(after[name] > before[name] for name in before)
    # the chosen channels keep the ranking's order: a lowered tensor keeps a prefix of its old set
    lowered = at_peak[0]
    assert np.all(uniform.tensors[lowered].important[model.tensors[lowered].important])


def test_a_budget_that_already_fits_keeps_the_uniform_ratio_below_it(resnet20, cifar_calib, arenas):
    graph, calib = resnet20
    _, uniform, uniform_plan = arenas
    model = fit_arena(graph, calib, DQA3, cifar_calib, uniform_plan.arena_bytes, log=lambda *a: None)
    assert _arena(model) <= uniform_plan.arena_bytes
    assert all(model.tensors[n].important.sum() >= c for n, c in _counts(uniform).items())


def test_a_budget_below_the_direct_arena_is_refused_with_the_numbers(resnet20, cifar_calib):
    graph, calib = resnet20
    with pytest.raises(QuantizationError, match=r"memory budget 4000 bytes is below the smallest arena at 3 bits: \d+ bytes"):
        fit_arena(graph, calib, DQA3, cifar_calib, 4000, log=lambda *a: None)


def test_per_tensor_ratios_from_none_to_all_channels_are_bit_exact_in_c(resnet20, cifar_calib, cifar_test, tmp_path):
    """A tight budget leaves peak tensors with no important channels and others with all of them."""
    graph, calib = resnet20
    direct = _arena(quantize(graph, calib, QuantConfig(bits=3, extra_bits=0), cifar_calib))
    model = fit_arena(graph, calib, DQA3, cifar_calib, direct + 64, log=lambda *a: None)
    counts = [(int(t.important.sum()), t.channels) for t in model.tensors.values() if t.extra_bits]
    assert any(c == 0 for c, _ in counts) and any(c == channels for c, channels in counts)
    report = export_and_run(model, cifar_test[0][::500], "host", tmp_path / "budget", sanitize=True)
    assert report["bit_exact"], report["mismatched_images"]


def test_export_fits_the_arena_to_the_budget_it_is_given(tmp_path):
    from conftest import shared_file
    from test_planner_cli import run_cli
    budget = 19500  # auto schedule: under the uniform n = 3 arena (22.1 KB), over the direct one (17.1 KB)
    proc = run_cli("export", str(shared_file("models/resnet20_cifar10.th")), "--arch", "resnet20", "--bits", "3",
                   "--calib", str(shared_file("data/cifar10_calib.npz")), "--calib-count", "200",
                   "--target", "cortex-m7", "--memory-budget", str(budget), "--no-build", "-o", str(tmp_path / "o"))
    assert proc.returncode == 0, proc.stderr
    assert f"memory budget {budget} bytes: arena" in proc.stdout
    arena = int(proc.stdout.split("arena peak: ")[1].split()[0])
    assert arena <= budget


def test_a_budget_for_an_already_quantized_model_is_refused(tmp_path):
    from test_planner_cli import run_cli
    proc = run_cli("export", str(tmp_path / "m.dqa.npz"), "--target", "host", "--memory-budget", "1000")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "--memory-budget 1000" in proc.stderr and "already quantized" in proc.stderr


def test_network_counts_spend_the_share_on_the_best_channels_per_element():
    from dqa_mcu.quantize.budget import network_counts
    shapes = {"big": (4, 4, 2), "small": (2, 2, 2)}  # 16 and 4 elements per channel
    scores = {"big": np.array([32.0, 1.0]), "small": np.array([4.0, 3.0])}  # per element: 2, 1/16 | 1, 3/4
    total = 2 * 16 + 2 * 4
    assert network_counts(scores, shapes, 24 / total) == {"big": 1, "small": 2}
    assert network_counts(scores, shapes, 16 / total) == {"big": 1, "small": 0}
    assert network_counts(scores, shapes, 7 / total) == {"big": 0, "small": 1}
    assert network_counts(scores, shapes, 1.0) == {"big": 2, "small": 2}


def test_a_budget_is_fitted_under_the_schedule_it_is_asked_for(resnet20, cifar_calib, arenas):
    """1 KB under the uniform model's layer arena (27.8 KB) but over its auto arena (22.1 KB): layer by
    layer channels must leave the peak, streamed none has to."""
    graph, calib = resnet20
    _, uniform, uniform_plan = arenas
    budget = planner.plan(uniform, "layer").arena_bytes - 1024
    assert uniform_plan.arena_bytes <= budget  # the default (auto) plan fits already
    layer = fit_arena(graph, calib, DQA3, cifar_calib, budget, log=lambda *a: None, schedule="layer")
    assert planner.plan(layer, "layer").arena_bytes <= budget
    assert any(layer.tensors[n].important.sum() < c for n, c in _counts(uniform).items())
    streamed = fit_arena(graph, calib, DQA3, cifar_calib, budget, log=lambda *a: None)
    assert _arena(streamed) <= budget
    assert all(streamed.tensors[n].important.sum() >= c for n, c in _counts(uniform).items())
