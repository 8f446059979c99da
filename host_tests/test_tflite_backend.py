"""The TFLite-exact int8 mode in generated C: `dqa-mcu export model_int8.tflite --target ...`.

The firmware's outputs are compared with np.array_equal against both
reference.tflite and the LiteRT interpreter's reference kernels:
* ResNet-8 int8 under QEMU cortex-m7 on CIFAR-10 test images (and the
  all-zero-pixel cross-check value of the issue), through the CLI;
* the DS-CNN keyword spotter under QEMU cortex-m7 on generated inputs;
* on the host: the converted models that use every supported operator, and
  a ResNet-8 whose classifier scales make an eighth of FULLY_CONNECTED's
  products exact ties (its double-precision rounding);
* FULLY_CONNECTED's rescale in C, the hardware-double and the integer
  formulation both, on edge accumulators, ties and products one ulp either
  side of a tie (where the integer one's rounding to 53 bits decides).
"""
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dqa_mcu import api, cli
from dqa_mcu.device import build as fw
from dqa_mcu.frontends.tflite_import import SUPPORTED_OPS, load_tflite
from dqa_mcu.reference import tflite as R
from dqa_mcu.targets import get_target
import runtime_vectors as rv
from test_tflite import (KWS, RESNET8, TEST_NPZ, ZERO_INPUT_OUTPUT, _need, resnet8_with_fc_ties,  # noqa: F401
                         synthetic, tf)


def _firmware_outputs(out: Path, target: str, images: np.ndarray) -> np.ndarray:
    report = api.run_project(out, images, None, target, 600, log=lambda *a: None)
    assert report["images"] == len(images)
    assert report["bit_exact"], f"differs from reference.tflite on images {report['mismatched_images']}"
    assert report["overflowed_tensors"] == 0
    exe = out / f"build-{target}" / ("dqa_model.elf" if target != "host" else "dqa_model")
    return fw.run(exe, get_target(target)).outputs


def _export(path: Path, out: Path, target: str, images: np.ndarray) -> np.ndarray:
    """Export an int8 .tflite, run it on `images`; the firmware outputs, checked against the reference."""
    graph = load_tflite(path)
    api.export_s8_project(graph, out, target, str(path), images, None, None, log=lambda *a: None)
    return _firmware_outputs(out, target, images)


def _require(tool: str):
    if shutil.which(tool) is None:
        pytest.fail(f"{tool} not found: ./install.sh installs it")


def test_resnet8_int8_on_cortex_m7_equals_reference_and_litert(tmp_path, capsys):
    _require("arm-none-eabi-gcc")
    d = np.load(_need(TEST_NPZ))
    pixels, labels = d["x"][::125], d["y"][::125]                      # 40 images, 4 per class
    pixels = np.concatenate([np.zeros((1, 32, 32, 3), np.uint8), pixels])
    data = tmp_path / "test.npz"
    np.savez(data, x=pixels, y=np.concatenate([[0], labels]))
    out = tmp_path / "r8"
    assert cli.main(["export", str(_need(RESNET8)), "--target", "cortex-m7", "--data", str(data), "-n", "41",
                     "-o", str(out)]) == 0
    x = (pixels.astype(np.int16) - 128).astype(np.int8)                # the model's input quantization
    assert np.array_equal(np.load(out / api.HARNESS_IMAGES_FILE)["x"], x)
    fw_out = _firmware_outputs(out, "cortex-m7", x)
    assert fw_out[0].tolist() == ZERO_INPUT_OUTPUT
    assert np.array_equal(fw_out, R.TFLiteReference(RESNET8).run(x))
    assert np.array_equal(fw_out, R.run_litert_interpreter(RESNET8, x))
    assert (fw_out[1:].argmax(1) == labels).mean() > 0.6
    capsys.readouterr()
    assert cli.main(["run", str(out), "--data", str(data), "-n", "5"]) == 0   # --data pixels quantized the same
    assert "bit-exact with the reference" in capsys.readouterr().out


def test_kws_dscnn_on_cortex_m7_equals_reference_and_litert(tmp_path):
    _require("arm-none-eabi-gcc")
    g = load_tflite(_need(KWS))
    rng = np.random.default_rng(11)
    shape = g.input.shape[1:]
    x = np.concatenate([rng.integers(-128, 128, (10,) + shape), np.full((1,) + shape, -128),
                        np.full((1,) + shape, 127)]).astype(np.int8)
    fw_out = _export(KWS, tmp_path / "kws", "cortex-m7", x)
    assert np.array_equal(fw_out, R.TFLiteReference(g).run(x))
    assert np.array_equal(fw_out, R.run_litert_interpreter(KWS, x))


def test_every_operator_on_the_host(synthetic, tmp_path):
    _require("gcc")
    seen = set()
    rng = np.random.default_rng(12)
    for name in ("a", "b"):
        g = load_tflite(synthetic[name])
        seen |= {op.op for op in g.ops}
        x = rng.integers(-128, 128, (40,) + g.input.shape[1:]).astype(np.int8)
        fw_out = _export(synthetic[name], tmp_path / name, "host", x)
        assert np.array_equal(fw_out, R.run_litert_interpreter(synthetic[name], x).reshape(len(x), -1))
    seen |= {op.op for op in load_tflite(_need(RESNET8)).ops} | {op.op for op in load_tflite(_need(KWS)).ops}
    from test_tflite_ops import NEW_OPS  # issue 10's ops: run in C in test_tflite_ops
    from test_tflite_unet import UNET_OPS  # and in test_tflite_unet
    from test_tflite_pad_fold import PAD_OPS  # the PADs above fold: one that cannot, in C there
    assert seen | NEW_OPS | UNET_OPS | PAD_OPS == set(SUPPORTED_OPS), \
        f"not run in C: {set(SUPPORTED_OPS) - seen - NEW_OPS - UNET_OPS - PAD_OPS}"


def test_fully_connected_ties_in_c(tmp_path):
    _require("gcc")
    path = tmp_path / "resnet8_ties.tflite"
    resnet8_with_fc_ties(path)
    d = np.load(_need(TEST_NPZ))
    x = (d["x"][5::100].astype(np.int16) - 128).astype(np.int8)
    fw_out = _export(path, tmp_path / "ties", "host", x)
    assert np.array_equal(fw_out, R.run_litert_interpreter(path, x))


FC_RESCALE_DRIVER = r"""
#include <stdio.h>
#include <stdlib.h>
#include "dqa_runtime_s8.h"

/* One input and one output of weight 0: the accumulator is the folded bias, the output its rescale. */
int main(void)
{
    static const int8_t weights[8] = {0}, input[1] = {0};
    int16_t column[2];
    long acc;
    char scale_text[64];
    while (scanf("%ld %63s", &acc, scale_text) == 2) {
        const int32_t bias = (int32_t)acc;
        const double scale = strtod(scale_text, NULL);
        dqa_fully_connected_s8_params_t p = {1, 1, 1, 0, -128, 127, weights, &bias, &scale};
        int8_t out;
        dqa_fully_connected_s8(&p, input, &out, column);
        printf("%d\n", out);
    }
    return 0;
}
"""


@pytest.mark.parametrize("integer", [False, True], ids=["hardware-double", "integer"])
def test_fully_connected_rescale_in_c_equals_the_reference(tmp_path, integer):
    _require("gcc")
    source = tmp_path / "rescale.c"
    source.write_text(FC_RESCALE_DRIVER)
    exe = tmp_path / "rescale"
    runtime = rv.RUNTIME / "src"
    subprocess.run(["gcc", *rv.WARNINGS, "-O1", *rv.SANITIZE, f"-DDQA_FC_INTEGER_RESCALE={int(integer)}",
                    f"-I{rv.RUNTIME / 'include'}", f"-I{runtime}", str(source),
                    str(runtime / "dqa_fully_connected_s8.c"), str(runtime / "dqa_widen_s8.c"), "-o", str(exe)],
                   check=True)
    rng = np.random.default_rng(12)
    edges = [R.INT32_MIN, R.INT32_MIN + 1, -(1 << 30), -12345, -3, -1, 0, 1, 3, 12345, 1 << 30, R.INT32_MAX]
    cases = [(a, s) for a in edges for s in (2.0 ** -52, 2.0 ** -31, 1e-7, 2.0 ** -8, 0.5, 1 / 3, 0.9999999)]
    accs = rng.integers(R.INT32_MIN, R.INT32_MAX, 3000, endpoint=True)
    cases += [(int(a), float(s)) for a, s in zip(accs, 10.0 ** rng.uniform(-10, -1, accs.size))]
    # products at a tie t + 1/2 of the rounding, and scales one and two ulps either side of it
    # (small odd accumulators: the product's bits below the 53 kept are then often exactly a half, a tie
    # to even that decides the integer rounding)
    for a, t in zip(np.concatenate([rng.integers(1, 1 << 31, 1500), np.arange(3, 200, 2)]),
                    rng.integers(-140, 140, 1599)):
        a = int(a) * (1 if t >= 0 else -1)
        tie = (abs(int(t)) + 0.5) / abs(a)
        for s in (tie, np.nextafter(tie, 0), np.nextafter(tie, 1), np.nextafter(np.nextafter(tie, 0), 0)):
            cases.append((a, float(s)))
    lines = "".join(f"{a} {s.hex()}\n" for a, s in cases)
    got = np.array(subprocess.run([str(exe)], input=lines, capture_output=True, text=True,
                                  check=True).stdout.split(), np.int64)
    acc = np.array([a for a, _ in cases], np.int64)
    scale = np.array([s for _, s in cases], np.float64)
    want = np.clip(R.round_half_away(acc.astype(np.float64) * scale), -128, 127)
    assert got.size == len(cases) and np.array_equal(got, want)


def test_an_int8_model_too_big_for_the_ram_is_refused_before_writing(tmp_path, capsys):
    out = tmp_path / "r8"
    assert cli.main(["export", str(_need(RESNET8)), "--target", "cortex-m7", "--ram-bytes", "20000",
                     "--no-build", "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "activation arena of" in err[0] and "RAM of 20000 bytes" in err[0]
    assert not out.exists()
