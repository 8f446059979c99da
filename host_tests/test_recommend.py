"""--bits-budget and dqa-mcu recommend: important channels fitted network-wide, n and m searched."""
import numpy as np
import pytest

from dqa_mcu.cli import main
from dqa_mcu.codegen import planner
from dqa_mcu.qmodel import QModel
from dqa_mcu.quantize.budget import fit_bits
from dqa_mcu.quantize.calibrate import calibrate
from dqa_mcu.quantize.greedy import taylor_search
from dqa_mcu.quantize.quantizer import QuantConfig, QuantizationError, quantize
from dqa_mcu.quantize.recommend import Budget, Candidate, recommend, score
from dqa_mcu.reference import evaluate
from dqa_mcu.reference.torch_exec import stored_tensors

from conftest import shared_file
from test_ranking import signal_data, signal_graph

QUIET = {"log": lambda *a: None}


@pytest.fixture(scope="module")
def scored(resnet20):
    """Random whole-network scores for ResNet-20's DQA tensors, one tensor's far above the rest."""
    graph, _ = resnet20
    rng = np.random.default_rng(0)
    scores = {t: rng.uniform(0.0, 1.0, graph.shapes[t][2]) for t in stored_tensors(graph)}
    favourite = list(scores)[-3]
    scores[favourite] *= 1e6
    return scores, {t: np.argsort(-s, kind="stable") for t, s in scores.items()}, favourite


def test_a_bits_budget_is_filled_by_the_best_scored_channels_of_any_tensor(resnet20, cifar_calib, scored):
    graph, calib = resnet20
    scores, rankings, favourite = scored
    config = QuantConfig(bits=3, extra_bits=2, rank="taylor")
    model = fit_bits(graph, calib, config, cifar_calib, 4.2, rankings, scores, **QUIET)
    bits = evaluate.memory(model).bits_per_activation
    assert 4.1 < bits <= 4.2  # the budget is used, not only respected
    assert model.tensors[favourite].important.all()  # the best scores win wherever they are
    for t, order in rankings.items():  # each tensor keeps its best channels: a prefix of its ranking
        important = model.tensors[t].important
        assert np.array_equal(important, np.isin(np.arange(len(order)), order[:important.sum()])), t


def test_a_bits_budget_below_n_is_refused_with_the_numbers(resnet20, cifar_calib, scored):
    graph, calib = resnet20
    scores, rankings, _ = scored
    with pytest.raises(QuantizationError, match=r"bits budget 2.5 per activation is below 3\.000, the average "
                                                r"at n = 3 with no important channels"):
        fit_bits(graph, calib, QuantConfig(bits=3, extra_bits=2), cifar_calib, 2.5, rankings, scores, **QUIET)


@pytest.fixture(scope="module")
def toy():
    graph = signal_graph()
    x, y = signal_data()
    calib = calibrate(graph, x, show_progress=False)
    return graph, calib, x, y, lambda config: taylor_search(graph, calib, config, x, y, show_progress=False)


def test_kl_divergence_grows_with_coarser_activations(toy):
    graph, calib, x, y, _ = toy
    fp32 = evaluate.float_logits(graph, x, show_progress=False)
    fine, coarse = (Candidate(f"direct {n}", QuantConfig(bits=n, extra_bits=0),
                              quantize(graph, calib, QuantConfig(bits=n, extra_bits=0, clip="max"), x))
                    for n in (8, 2))
    for c in (fine, coarse):
        score(c, x, fp32, y)
    assert 0.0 <= fine.divergence < coarse.divergence
    assert fine.top1 >= coarse.top1


@pytest.mark.parametrize("kind", ["bits", "arena"])
def test_recommend_fits_every_candidate_and_picks_the_least_divergence(toy, kind):
    graph, calib, x, y, rank = toy
    if kind == "bits":
        limit = Budget(bits=3.5)
    else:
        arenas = [planner.plan(quantize(graph, calib, QuantConfig(bits=n, extra_bits=0), x), "layer").arena_bytes
                  for n in (3, 4)]
        limit = Budget(arena_bytes=(arenas[0] + arenas[1]) // 2)
    best, found = recommend(graph, calib, QuantConfig(rank="taylor"), x, limit, rank, x, y, **QUIET)
    assert [c.label for c in found] == ["direct 3-bit"] + [f"DQA n={n} m={m}" for n in (3, 2) for m in (1, 2, 3, 4)]
    fitted = [c for c in found if c.model is not None]
    assert len(fitted) > 2 and best in fitted
    for c in fitted:
        if kind == "bits":
            assert c.bits <= limit.bits, c.label
        else:
            assert c.arena_bytes <= limit.arena_bytes, c.label
    assert best.divergence == min(c.divergence for c in fitted)
    assert any(c.important_share > 0 for c in fitted)


def test_a_budget_is_one_of_arena_or_bits():
    with pytest.raises(QuantizationError, match="give one budget"):
        Budget(arena_bytes=1000, bits=4.0)
    with pytest.raises(QuantizationError, match="--bits-budget 1.5: activations take at least 2 bits"):
        Budget(bits=1.5)




@pytest.fixture(scope="module")
def labelled_calib(tmp_path_factory):
    data = np.load(shared_file("data/cifar10_calib.npz"))
    path = tmp_path_factory.mktemp("calib") / "calib.npz"
    np.savez(path, x=data["x"][::50], y=data["y"][::50])
    return str(path)


def test_cli_recommend_writes_the_winner_and_export_fixes_it(labelled_calib, tmp_path, capsys):
    model_file = str(shared_file("models/resnet20_cifar10.th"))
    saved = tmp_path / "best.dqa.npz"
    assert main(["recommend", model_file, "--arch", "resnet20", "--calib", labelled_calib, "--bits-budget", "4.2",
                 "--score-images", "50", "--extra-bits-list", "2", "-o", str(saved)]) == 0
    out = capsys.readouterr().out
    assert "(recommended)" in out and "KL to FP32" in out
    best = QModel.load(saved)
    assert evaluate.memory(best).bits_per_activation <= 4.2
    # export with the printed n and m and the same budget reproduces the model
    fixed = out.split("export fixes it with ")[1].splitlines()[0].split()
    assert main(["export", model_file, "--arch", "resnet20", "--calib", labelled_calib, "--target", "host",
                 "--no-build", "-o", str(tmp_path / "e"), *fixed]) == 0
    exported = np.load(tmp_path / "e" / "model.dqa.npz")
    for key, value in np.load(saved).items():
        assert np.array_equal(exported[key], value), key


def test_cli_budget_errors_name_the_option(labelled_calib, capsys):
    model_file = str(shared_file("models/resnet20_cifar10.th"))
    assert main(["export", model_file, "--arch", "resnet20", "--calib", labelled_calib, "--target", "host",
                 "--no-build", "--bits", "3", "--rank", "noise", "--bits-budget", "4"]) == 2
    assert "--bits-budget allocates important channels across tensors" in capsys.readouterr().err
    assert main(["recommend", model_file, "--arch", "resnet20", "--calib", labelled_calib,
                 "--memory-budget", "-5"]) == 2
    assert "--memory-budget -5: give a positive byte count" in capsys.readouterr().err
    int8 = str(shared_file("models/mlperf_tiny_ic_resnet8_int8.tflite"))
    assert main(["export", int8, "--target", "host", "--no-build", "--bits-budget", "4"]) == 2
    err = capsys.readouterr().err  # not silently exported at 8 bits
    assert "--bits-budget 4: " in err and "keeps its own 8-bit quantization" in err
