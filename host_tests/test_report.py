"""`dqa-mcu table`: the accuracy / memory report (tables and plots) on tiny ResNets."""
import re

import numpy as np
import pytest
import torch

from dqa_mcu.cli import main
from dqa_mcu.frontends import zoo
from dqa_mcu.research.paper_sim import _to_input
from dqa_mcu.research.tables import ABLATION_FILE, BITS_PLOT, MEMORY_PLOT, TABLE_FILE

PNG = b"\x89PNG\r\n\x1a\n"


def tiny_resnet(seed: int) -> torch.nn.Module:
    """A CIFAR ResNet with one block per stage and random BatchNorm statistics."""
    torch.manual_seed(seed)
    model = zoo.CifarResNet((1, 1, 1))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
    return model.eval()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    d = tmp_path_factory.mktemp("report")
    rng = np.random.default_rng(0)
    models = []
    for i, name in enumerate(("tinyA", "tinyB")):
        model = tiny_resnet(i)
        torch.save(model, d / f"{name}.pt")
        models.append((d / f"{name}.pt", model))
    x = rng.integers(0, 256, (120, 8, 8, 3)).astype(np.uint8)
    with torch.inference_mode():  # labels: model A's own predictions, so its FP32 top-1 is 100 %
        y = models[0][1](_to_input(x, zoo.CIFAR_NORMALIZATION)).argmax(1).numpy()
    np.savez(d / "test.npz", x=x[:60], y=y[:60])
    np.savez(d / "calib.npz", x=x[60:], y=y[60:])
    return d, [str(p) for p, _ in models]


def test_table_writes_the_tables_and_plots(setup):
    d, models = setup
    out = d / "out"
    argv = ["table", *models, "--trust-pickle", "--data", str(d / "test.npz"), "--calib", str(d / "calib.npz"),
            "--bits-list", "3", "4", "--rank", "taylor", "--rank-images", "30", "--ablation-test-count", "40",
            "--greedy-rankings", str(d / "greedy.npz"), "--dataset", "random pixels", "-o", str(out)]
    assert main(argv) == 0
    for name in (BITS_PLOT, MEMORY_PLOT):
        assert (out / name).read_bytes()[:8] == PNG
    table = (out / TABLE_FILE).read_text()
    assert "    dqa-mcu table " in table and "random pixels: 60 test images" in table
    rows = [line for line in table.splitlines() if line.startswith("| tiny")]
    head = next(line for line in table.splitlines() if line.startswith("| model |"))
    assert [c.strip() for c in head.strip("|").split("|")] == [
        "model", "FP32", "paper direct n=3", "paper direct n=4", "paper NoisyQuant n=3", "paper NoisyQuant n=4",
        "paper DQA n=3", "paper DQA n=4", "deployable direct n=3", "deployable direct n=4",
        "deployable DQA n=3", "deployable DQA n=4"]
    assert [r.split("|")[1].strip() for r in rows] == ["tinyA", "tinyB"]
    cells = rows[0].strip("|").split("|")
    assert len(cells) == len(head.strip("|").split("|")) and float(cells[1]) == 100.0
    # deployable cells: accuracy (bits per activation); direct stores exactly n bits, DQA more
    bits = [float(re.search(r"\((\d+\.\d+)\)", c).group(1)) for c in cells[8:]]
    assert bits[:2] == [3.0, 4.0] and bits[2] > 3.0 and bits[3] > 4.0
    assert table.count("DQA 3-bit") >= 2 and "vs direct 4-bit" in table  # the memory-matched sentence
    ablations = (out / ABLATION_FILE).read_text()
    assert "# Ablations: tinyB, deployable, n = 3" in ablations and "40 test images" in ablations
    ablation_table, tensors = ablations.split("## Huffman compression per tensor")
    settings = re.findall(r"^\| ([a-z ]+): ([^|(]+?) (?:\(ranking: \d+ s\) )?\|", ablation_table, flags=re.M)
    assert settings == [
        ("direct", "3-bit"), ("direct", "4-bit"),
        ("important ratio", "r = 0.2"), ("important ratio", "r = 0.4"), ("important ratio", "r = 0.6"),
        ("extra bits", "m = 1"), ("extra bits", "m = 2"), ("extra bits", "m = 3"), ("extra bits", "m = 4"),
        ("ranking", "greedy"), ("ranking", "taylor"), ("ranking", "noise"), ("ranking", "random")]
    assert tensors.startswith(" (tinyB, DQA 3-bit (m=3, r=0.4, taylor))")
    assert len(re.findall(r"^\| layer\d_0_conv[12] \| ", tensors, flags=re.M)) == 6  # every stored tensor
    assert (d / "greedy.npz").exists()  # the greedy ranking, written for reuse


def test_table_refuses_bad_arguments(setup, capsys):
    d, models = setup
    common = ["--data", str(d / "test.npz"), "--calib", str(d / "calib.npz"), "-o", str(d / "bad")]
    assert main(["table", *models, "--arch", "resnet20", *common]) == 2
    assert "--arch names 1 architectures for 2 models" in capsys.readouterr().err
    assert main(["table", *models, "--trust-pickle", "--ablation-model", "resnet32", *common]) == 2
    assert "--ablation-model 'resnet32' is none of the models (tinyA, tinyB)" in capsys.readouterr().err
    assert not (d / "bad").exists()


def test_table_refuses_a_greedy_file_of_another_configuration(setup, capsys):
    d, models = setup
    argv = ["table", models[0], "--trust-pickle", "--data", str(d / "test.npz"), "--calib", str(d / "calib.npz"),
            "--bits-list", "3", "--rank", "noise", "--rank-images", "20", "--ablation-test-count", "20",
            "--greedy-rankings", str(d / "g4.npz"), "--paper-importance", "range", "-o", str(d / "o4")]
    assert main(argv + ["--bits", "4"]) == 0  # writes g4.npz: the greedy ranking at n = 4
    assert main(argv) == 2  # the ablation at n = 3 cannot reuse it
    assert "g4.npz: a greedy ranking for {'bits': 4" in capsys.readouterr().err
