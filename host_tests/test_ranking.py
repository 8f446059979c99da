"""Whole-network channel rankings (greedy, Taylor), their CLI options, and the torch float simulator."""
from dataclasses import replace

import numpy as np
import pytest

from dqa_mcu import ir
from dqa_mcu.cli import QMODEL_FILE, main
from dqa_mcu.quantize.calibrate import calibrate
from dqa_mcu.reference import dqa as reference
from dqa_mcu.reference.evaluate import top1
from dqa_mcu.reference.float_exec import run_float
from dqa_mcu.quantize.greedy import (RankingError, RankingResult, greedy_search, load_rankings, quant_params,
                                     save_rankings, taylor_search)
from dqa_mcu.qmodel import QModel
from dqa_mcu.quantize.quantizer import QuantConfig, QuantizationError, quantize
from dqa_mcu.quantize.ranking import RANKERS
from dqa_mcu.reference.torch_exec import TorchExec, stored_tensors

from conftest import load_resnet, shared_file

SIGNAL = 1  # the one channel that carries the class


def _conv(name, inputs, w, act="relu", **attrs):
    return ir.Node(name, "conv2d", inputs, name,
                   {"stride": (1, 1), "padding": attrs.pop("padding", (0, 0, 0, 0)), "dilation": (1, 1),
                    "groups": 1, "act": act, **attrs},
                   {"weight": np.asarray(w, np.float32), "bias": np.zeros(len(w), np.float32)})


def signal_graph() -> ir.Graph:
    """conv (4 channels) -> flatten -> linear. Channel SIGNAL is the red pixel value and alone
    decides the class (red > 0.5); channels 0 and 2 have far wider ranges but zero weight
    downstream; channel 3 is small and unused too."""
    h = w = 4
    wc = np.zeros((4, 1, 1, 3), np.float32)
    wc[0, 0, 0, 1] = 4.0  # green, wide, irrelevant
    wc[SIGNAL, 0, 0, 0] = 1.0  # red: the signal
    wc[2, 0, 0, 2] = 6.0  # blue, widest, irrelevant
    wc[3, 0, 0, 1] = 0.05
    lin = np.zeros((2, h * w * 4), np.float32)
    lin[1, SIGNAL::4] = 10.0 / (h * w)
    lin[0, SIGNAL::4] = -10.0 / (h * w)
    nodes = [ir.Node("input", "input", [], "input", {"pixel_scale": 1 / 255},
                     {"mean": np.zeros(3, np.float32), "std": np.ones(3, np.float32)}),
             _conv("conv", ["input"], wc),
             ir.Node("flat", "flatten", ["conv"], "flat"),
             ir.Node("fc", "linear", ["flat"], "fc", {"act": "none"},
                     {"weight": lin, "bias": np.array([5.0, -5.0], np.float32)})]
    g = ir.Graph(nodes, {"input": (h, w, 3), "conv": (h, w, 4), "flat": (1, 1, h * w * 4), "fc": (1, 1, 2)},
                 "input", "fc")
    g.validate()
    return g


def signal_data(n=400, seed=0):
    rng = np.random.default_rng(seed)
    red = rng.uniform(0.25, 0.75, n)
    x = rng.integers(0, 256, (n, 4, 4, 3)).astype(np.float64)
    x[..., 0] = red[:, None, None] * 255
    return np.clip(np.rint(x), 0, 255).astype(np.uint8), (red > 0.5).astype(np.int64)


CONFIG = QuantConfig(bits=2, extra_bits=3, important_ratio=0.25, clip="max")


@pytest.fixture(scope="module")
def signal():
    g = signal_graph()
    x, y = signal_data()
    return g, calibrate(g, x, show_progress=False), x, y


def test_greedy_and_taylor_find_the_signal_channel(signal):
    g, calib, x, y = signal
    greedy = greedy_search(g, calib, CONFIG, x, y, show_progress=False)
    assert greedy.rankings["conv"][0] == SIGNAL
    # the signal channel at n + m bits is clearly better than any other choice
    s = greedy.scores["conv"]
    assert s[SIGNAL] > np.delete(s, SIGNAL).max() + 0.05
    taylor = taylor_search(g, calib, CONFIG, x, y, show_progress=False)
    assert taylor.rankings["conv"][0] == SIGNAL
    # without labels: agreement with the FP32 model (which is right on this data)
    assert greedy_search(g, calib, CONFIG, x, None, show_progress=False).rankings["conv"][0] == SIGNAL
    # the local criteria look at ranges and are fooled by the wide irrelevant channels
    stats = calib.tensors["conv"]
    assert RANKERS["noise"](stats, stats.amax, None)[0] != SIGNAL
    assert RANKERS["range"](stats, stats.amax, None)[0] != SIGNAL
    firsts = [RANKERS["random"](stats, stats.amax, np.random.default_rng(seed))[0] for seed in range(20)]
    assert 0 < firsts.count(SIGNAL) < 20


def test_rankings_drive_the_deployed_model(signal):
    g, calib, x, y = signal
    rankings = greedy_search(g, calib, CONFIG, x, y, show_progress=False).rankings
    model = quantize(g, calib, CONFIG, x, rankings=rankings)
    assert model.tensors["conv"].important.tolist() == [i == SIGNAL for i in range(4)]
    by_noise = quantize(g, calib, CONFIG, x)
    good = top1(reference.run(model, x).output, y)
    bad = top1(reference.run(by_noise, x).output, y)
    assert good > bad + 5


def test_ranking_file_round_trip(signal, tmp_path):
    g, calib, x, y = signal
    result = taylor_search(g, calib, CONFIG, x, y, show_progress=False)
    path = tmp_path / "r.npz"
    save_rankings(path, result)
    back = load_rankings(path, g)
    assert set(back.rankings) == set(result.rankings)
    for t in result.rankings:
        np.testing.assert_array_equal(back.rankings[t], result.rankings[t])
        np.testing.assert_allclose(back.scores[t], result.scores[t])
    assert back.meta["method"] == "taylor" and back.meta["images"] == len(x)
    save_rankings(path, {"conv": np.array([3, 2, 1, 0])})  # a plain dict works too
    np.testing.assert_array_equal(load_rankings(path).rankings["conv"], [3, 2, 1, 0])
    save_rankings(path, {"conv": np.array([0, 0, 1, 2])})
    with pytest.raises(RankingError, match="permutation"):
        load_rankings(path, g)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(RankingError, match="not a dqa-mcu rankings file"):
        load_rankings(tmp_path / "junk.npz")


def residual_graph(seed=0) -> ir.Graph:
    """conv a -> conv b (+ residual a) -> conv c (3x3, padded) -> global pool -> linear, random weights."""
    rng = np.random.default_rng(seed)
    nodes = [ir.Node("input", "input", [], "input", {"pixel_scale": 1 / 255},
                     {"mean": np.full(3, 0.5, np.float32), "std": np.full(3, 0.25, np.float32)}),
             _conv("a", ["input"], rng.normal(0, 0.5, (6, 3, 3, 3)), padding=(1, 1, 1, 1)),
             _conv("b", ["a", "a"], rng.normal(0, 0.3, (6, 3, 3, 6)), padding=(1, 1, 1, 1),
                   residual_stride=1, residual_channel_offset=0),
             _conv("c", ["b"], rng.normal(0, 0.3, (8, 3, 3, 6)), act="none", padding=(1, 1, 1, 1)),
             ir.Node("gap", "global_avgpool", ["c"], "gap"),
             ir.Node("fc", "linear", ["gap"], "fc", {"act": "none"},
                     {"weight": rng.normal(0, 1, (5, 8)).astype(np.float32), "bias": np.zeros(5, np.float32)})]
    shapes = {"input": (6, 6, 3), "a": (6, 6, 6), "b": (6, 6, 6), "c": (6, 6, 8), "gap": (1, 1, 8),
              "fc": (1, 1, 5)}
    g = ir.Graph(nodes, shapes, "input", "fc")
    g.validate()
    return _centred(g)


def _centred(g: ir.Graph) -> ir.Graph:
    """Zero-mean logits on random images, so that predictions spread over the classes."""
    x = np.random.default_rng(99).integers(0, 256, (200,) + g.shapes["input"]).astype(np.uint8)
    g.nodes[-1].params["bias"] = -run_float(g, x).mean(axis=0).astype(np.float32)
    return g


def add_pool_graph(seed=2) -> ir.Graph:
    """conv a -> conv b (no act) -> add(b, a) relu -> maxpool -> conv c (signed) -> avgpool -> linear."""
    rng = np.random.default_rng(seed)
    nodes = [ir.Node("input", "input", [], "input", {"pixel_scale": 1 / 255},
                     {"mean": np.full(3, 0.5, np.float32), "std": np.full(3, 0.25, np.float32)}),
             _conv("a", ["input"], rng.normal(0, 0.5, (4, 3, 3, 3)), padding=(1, 1, 1, 1)),
             _conv("b", ["a"], rng.normal(0, 0.3, (4, 1, 1, 4)), act="none"),
             ir.Node("s", "add", ["b", "a"], "s", {"act": "relu"}),
             ir.Node("mp", "maxpool", ["s"], "mp", {"kernel": (2, 2), "stride": (2, 2), "padding": (0, 0, 0, 0)}),
             _conv("c", ["mp"], rng.normal(0, 0.3, (6, 3, 3, 4)), act="none", padding=(1, 1, 1, 1)),
             ir.Node("ap", "avgpool", ["c"], "ap", {"kernel": (3, 3), "stride": (3, 3), "padding": (0, 0, 0, 0)}),
             ir.Node("fc", "linear", ["ap"], "fc", {"act": "none"},
                     {"weight": rng.normal(0, 1, (5, 6)).astype(np.float32), "bias": np.zeros(5, np.float32)})]
    shapes = {"input": (6, 6, 3), "a": (6, 6, 4), "b": (6, 6, 4), "s": (6, 6, 4), "mp": (3, 3, 4),
              "c": (3, 3, 6), "ap": (1, 1, 6), "fc": (1, 1, 5)}
    g = ir.Graph(nodes, shapes, "input", "fc")
    g.validate()
    return _centred(g)


@pytest.mark.parametrize("build, stored", [(residual_graph, ["a", "b", "c", "gap"]),
                                           (add_pool_graph, ["a", "b", "s", "c", "ap"])])
def test_greedy_scores_equal_brute_force_evaluation(build, stored):
    """The cached, delta and stacked evaluation gives exactly the accuracy of re-running
    the simulated network per candidate (earlier tensors at their chosen sets)."""
    g = build()
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (120, 6, 6, 3)).astype(np.uint8)
    calib = calibrate(g, x, show_progress=False)
    config = QuantConfig(bits=2, extra_bits=2, important_ratio=0.5, clip="mse")
    # random labels: every flipped prediction moves a score
    labels = rng.integers(0, 5, len(x))
    res = greedy_search(g, calib, config, x, labels, chunk=50, samples=64, workers=2, show_progress=False)
    assert list(res.rankings) == stored_tensors(g) == stored
    params = quant_params(g, calib, config)
    ex = TorchExec(g, {t: p.coarse for t, p in params.items()})
    for i, t in enumerate(stored_tensors(g)):
        c = g.shapes[t][2]
        scores = []
        for ch in range(c):
            one = np.zeros(c, dtype=bool)
            one[ch] = True
            ex.set_quant(t, params[t].with_important(one))
            scores.append((ex.logits(x, batch=40).argmax(axis=1) == labels).mean())
        np.testing.assert_allclose(res.scores[t], scores, atol=1e-12, err_msg=t)
        top = np.zeros(c, dtype=bool)
        top[res.rankings[t][:round(0.5 * c)]] = True
        ex.set_quant(t, params[t].with_important(top))


def test_torch_exec_matches_float_exec(resnet20, cifar_test):
    graph, _ = resnet20
    x = cifar_test[0][:64]
    ref = run_float(graph, x)
    out = TorchExec(graph).logits(x, batch=32)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=2e-4)


def test_torch_exec_simulates_the_integer_reference(resnet20, cifar_test, cifar_calib):
    graph, calib = resnet20
    x = cifar_test[0][:200]
    model = quantize(graph, calib, QuantConfig(bits=4, extra_bits=3), cifar_calib)
    ref = reference.run(model, x).output.argmax(axis=1)
    sim = TorchExec.from_qmodel(graph, model, weights="int8").logits(x).argmax(axis=1)
    assert (sim == ref).mean() >= 0.95
    # the plan quant_params builds is the one quantize() deploys
    params = quant_params(graph, calib, QuantConfig(bits=4, extra_bits=3))
    for t in stored_tensors(graph):
        q = params[t].with_important(model.tensors[t].important)
        np.testing.assert_allclose(q.step, model.tensors[t].storage_step, rtol=1e-12)


# -- the CLI: --rank greedy/taylor, --rankings FILE, --save-rankings FILE ----------------------

R20 = "models/resnet20_cifar10.th"


@pytest.fixture(scope="module")
def small_calib(tmp_path_factory):
    """100 labelled calibration images (10 per class) in an .npz, as the CLI reads them."""
    data = np.load(shared_file("data/cifar10_calib.npz"))
    path = tmp_path_factory.mktemp("calib") / "calib.npz"
    np.savez(path, x=data["x"][::50], y=data["y"][::50])
    return path


def export(calib, out, *extra):
    return main(["export", str(shared_file(R20)), "--arch", "resnet20", "--target", "host", "--no-build",
                 "--calib", str(calib), "--bits", "3", "-o", str(out), *extra])


def test_cli_saved_rankings_are_reused_exactly(small_calib, tmp_path):
    rfile = tmp_path / "r.npz"
    assert export(small_calib, tmp_path / "a", "--rank", "taylor", "--save-rankings", str(rfile)) == 0
    assert export(small_calib, tmp_path / "b", "--rankings", str(rfile)) == 0  # --rank taylor read from the file
    a, b = (np.load(tmp_path / d / QMODEL_FILE) for d in "ab")
    assert a.files == b.files
    for k in a.files:
        assert np.array_equal(a[k], b[k]), k
    saved = load_rankings(rfile)
    assert saved.meta["method"] == "taylor" and saved.meta["images"] == 100

    def assert_deployed(model_dir, rankings):  # important sets are the ranking's top 40 %
        model = QModel.load(model_dir / QMODEL_FILE)
        assert model.config["rank"] == "taylor"
        for t, order in rankings.items():
            expect = np.zeros(len(order), dtype=bool)
            expect[order[:round(0.4 * len(order))]] = True
            assert np.array_equal(model.tensors[t].important, expect), t
    assert_deployed(tmp_path / "a", saved.rankings)
    # the file is read, not recomputed: a different ranking in it gives its own sets
    reversed_ = RankingResult({t: o[::-1].copy() for t, o in saved.rankings.items()}, meta=saved.meta)
    save_rankings(tmp_path / "rev.npz", reversed_)
    assert export(small_calib, tmp_path / "c", "--rankings", str(tmp_path / "rev.npz")) == 0
    assert_deployed(tmp_path / "c", reversed_.rankings)


def test_cli_refuses_mismatched_rankings(small_calib, tmp_path, capsys):
    g = load_resnet("resnet20")
    stored = stored_tensors(g)
    full = {t: np.arange(g.shapes[t][2])[::-1] for t in stored}

    def refused(rankings, *args, meta=None):
        path = tmp_path / "r.npz"
        save_rankings(path, RankingResult(rankings, meta=meta or {"method": "taylor"}))
        capsys.readouterr()
        assert export(small_calib, tmp_path / "o", "--rankings", str(path), *args) == 2
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith(f"dqa-mcu: error: {path}: ")
        return err

    assert "'conv' is not in this model" in refused({**full, "conv": np.arange(4)})  # another model's tensor
    assert "no ranking for 1 of this model's tensors" in refused({t: full[t] for t in stored[1:]})
    wrong = dict(full, **{stored[0]: np.arange(g.shapes[stored[0]][2] + 1)})
    assert "not a permutation of its 16 channels" in refused(wrong)
    assert "holds a taylor ranking, not 'greedy'" in refused(full, "--rank", "greedy")
    assert "not the local criterion 'noise'" in refused(full, "--rank", "noise")
    path = tmp_path / "plain.npz"
    save_rankings(path, full)  # a ranking of unknown origin: say which method it stands for
    assert export(small_calib, tmp_path / "o", "--rankings", str(path)) == 2
    assert "pass --rank greedy or --rank taylor" in capsys.readouterr().err


def test_quantize_needs_the_rankings_of_a_whole_network_criterion(signal):
    g, calib, x, y = signal
    config = QuantConfig(bits=2, rank="greedy")
    config.validate()  # a valid name ...
    with pytest.raises(QuantizationError, match="'greedy' is computed over the whole network"):
        quantize(g, calib, config, x)  # ... that quantize() cannot compute by itself
    with pytest.raises(QuantizationError, match="tensor 'conv' has no greedy ranking"):
        quantize(g, calib, config, x, rankings={"another_model_tensor": np.arange(4)})
    direct = quantize(g, calib, QuantConfig(bits=2, extra_bits=0, rank="greedy"), x)  # nothing to rank
    assert not direct.tensors["conv"].important.any()
    with pytest.raises(QuantizationError, match="unknown ranking 'fast'; choose from .*greedy, taylor"):
        QuantConfig(rank="fast").validate()
    # the searches accept the config that names them
    assert greedy_search(g, calib, replace(CONFIG, rank="greedy"), x, y, show_progress=False).rankings["conv"][0] \
        == SIGNAL


def test_cli_eval_computes_and_saves_a_whole_network_ranking(small_calib, tmp_path, capsys):
    data = np.load(shared_file("data/cifar10_test.npz"))
    np.savez(tmp_path / "test.npz", x=data["x"][::250], y=data["y"][::250])
    argv = ["eval", str(shared_file(R20)), "--arch", "resnet20", "--data", str(tmp_path / "test.npz"),
            "--calib", str(small_calib), "--rank", "taylor", "--save-rankings", str(tmp_path / "r.npz")]
    assert main(argv + ["--bits-list", "3", "4"]) == 2  # one file cannot hold the rankings of two n
    assert "--save-rankings writes one ranking" in capsys.readouterr().err
    assert main(argv + ["--bits-list", "3"]) == 0
    assert "| DQA 3-bit (m=3, r=0.4, taylor) |" in capsys.readouterr().out
    saved = load_rankings(tmp_path / "r.npz", load_resnet("resnet20"))
    assert saved.meta["method"] == "taylor" and saved.meta["bits"] == 3
