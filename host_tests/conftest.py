"""Shared fixtures: ../shared data and models, and a calibrated ResNet-20."""
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def shared_file(relative: str) -> Path:
    path = SHARED / relative
    if not path.exists():
        pytest.fail(f"{path} is missing: tests read data and models from ../shared beside the project")
    return path


@pytest.fixture(scope="session")
def cifar_test():
    """1,000 test images, 100 per class (the file's rows are grouped by class)."""
    data = np.load(shared_file("data/cifar10_test.npz"))
    return data["x"][::5], data["y"][::5]


@pytest.fixture(scope="session")
def cifar_calib():
    """500 calibration images, 50 per class, from the training split."""
    return np.load(shared_file("data/cifar10_calib.npz"))["x"][::10]


def load_resnet(arch: str):
    from dqa_mcu.frontends import passes
    from dqa_mcu.frontends.torch_import import import_module, load_torch_model
    module, norm = load_torch_model(shared_file(f"models/{arch}_cifar10.th"), arch=arch)
    return passes.optimize(import_module(module, (32, 32, 3), norm))


@pytest.fixture(scope="session")
def resnet20():
    """(graph, calibration) of the pretrained ResNet-20."""
    from dqa_mcu.quantize.calibrate import calibrate
    graph = load_resnet("resnet20")
    data = np.load(shared_file("data/cifar10_calib.npz"))["x"][::10]
    return graph, calibrate(graph, data, show_progress=False)


def int8_inputs(graph, count: int, seed: int) -> np.ndarray:
    """Random int8 inputs of an int8 TFLiteGraph, plus the extremes and the input zero point."""
    rng = np.random.default_rng(seed)
    shape = graph.input.shape[1:]
    return np.concatenate([rng.integers(-128, 128, (count,) + shape), np.full((1,) + shape, -128),
                           np.full((1,) + shape, 127),
                           np.full((1,) + shape, int(graph.input.zero_point[0]))]).astype(np.int8)


def tflite_int8(tf, model, samples: np.ndarray) -> bytes:
    """A Keras model converted to full-int8 TFLite (int8 input and output), calibrated on `samples`."""
    def representative():
        for i in range(len(samples)):
            yield [samples[i:i + 1]]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = tf.int8
    conv.inference_output_type = tf.int8
    return conv.convert()
