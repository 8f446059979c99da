"""The ../shared MobileNetV2 (CIFAR-10) as a full-int8 .tflite, for the TFLite-exact int8 mode.

../shared has it only in PyTorch and no PyTorch -> TFLite converter is installed, so the architecture
(../shared/README.md) is rebuilt in Keras around the state_dict's weights, its float logits are checked
against the TorchScript model's on a few CIFAR-10 images, and perf.convert_int8 quantizes it with
calibration images as the representative set. The .tflite takes the normalized image (float NCHW in
PyTorch, NHWC here) quantized to int8: `normalize` then reference.tflite.quantize_input.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

import perf

MODELS = perf.SHARED / "models"
STATE_DICT, TORCHSCRIPT = MODELS / "mobilenetv2_cifar10_state_dict.pt", MODELS / "mobilenetv2_cifar10.ts.pt"
MEAN, STD = np.float32([0.4914, 0.4822, 0.4465]), np.float32([0.2470, 0.2435, 0.2616])
BN_EPS = 1e-5  # torch.nn.BatchNorm2d's default, as the .pt2 program records
STRIDE_2_BLOCKS = {4, 7, 14}  # the first block of the stride-2 stages (strides 1, 1, 2, 2, 1, 2, 1)
FLOAT_TOLERANCE = 1e-3  # largest |logit difference| from PyTorch's that float rounding explains


def normalize(images: np.ndarray) -> np.ndarray:
    """uint8 NHWC pixels -> the model's float input."""
    return (images.astype(np.float32) / 255 - MEAN) / STD


def keras_mobilenetv2(keras, state: dict):
    """The PyTorch MobileNetV2 as a Keras model (batch 1, NHWC) holding the state_dict's weights."""
    layers = keras.layers

    def conv_bn(x, conv: str, bn: str, stride: int, relu6: bool):
        w = state[conv + ".weight"]
        out_channels, group_channels, kernel, _ = w.shape
        padding = "same"
        if stride == 2:  # PyTorch pads 1 on every side; Keras' 'same' would pad only bottom and right
            x, padding = layers.ZeroPadding2D(1)(x), "valid"
        if group_channels == 1 and out_channels == x.shape[-1] > 1:
            conv_layer = layers.DepthwiseConv2D(kernel, stride, padding, use_bias=False)
            kernel_hwc = w.transpose(2, 3, 0, 1)  # (C, 1, KH, KW) -> (KH, KW, C, 1)
        else:
            conv_layer = layers.Conv2D(out_channels, kernel, stride, padding, use_bias=False)
            kernel_hwc = w.transpose(2, 3, 1, 0)  # (O, I, KH, KW) -> (KH, KW, I, O)
        x = conv_layer(x)
        conv_layer.set_weights([kernel_hwc])
        norm = layers.BatchNormalization(epsilon=BN_EPS)
        x = norm(x)
        norm.set_weights([state[f"{bn}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")])
        return layers.ReLU(6.0)(x) if relu6 else x

    inp = keras.Input(batch_shape=(1, 32, 32, 3))
    x = conv_bn(inp, "features.0.0", "features.0.1", 1, True)
    blocks = sorted({int(k.split(".")[1]) for k in state if k.startswith("features.") and ".conv." in k})
    for i in blocks:
        seq = f"features.{i}.conv"
        y, step = x, 0
        if state[f"{seq}.0.0.weight"].shape[2] == 1:  # a 1x1 expansion comes first (t > 1)
            y, step = conv_bn(y, f"{seq}.0.0", f"{seq}.0.1", 1, True), 1
        stride = 2 if i in STRIDE_2_BLOCKS else 1
        y = conv_bn(y, f"{seq}.{step}.0", f"{seq}.{step}.1", stride, True)
        y = conv_bn(y, f"{seq}.{step + 1}", f"{seq}.{step + 2}", 1, False)  # the linear bottleneck
        x = layers.Add()([x, y]) if stride == 1 and x.shape[-1] == y.shape[-1] else y
    last = blocks[-1] + 1
    x = conv_bn(x, f"features.{last}.0", f"features.{last}.1", 1, True)
    x = layers.GlobalAveragePooling2D()(x)
    dense = layers.Dense(state["classifier.weight"].shape[0])
    out = dense(x)
    dense.set_weights([state["classifier.weight"].T, state["classifier.bias"]])
    return keras.Model(inp, out)


def build_mobilenetv2_int8(path: Path, calib_images: np.ndarray, check_images: np.ndarray, log=print) -> Path:
    """The int8 .tflite at `path` (kept from an earlier call), converted with `calib_images` (uint8) as the
    representative set after the Keras rebuild matched PyTorch's logits on `check_images`."""
    if path.exists():
        return path
    import tensorflow as tf
    import torch
    state = {k: v.numpy() for k, v in torch.load(STATE_DICT, weights_only=True).items()}
    model = keras_mobilenetv2(tf.keras, state)
    reference = torch.jit.load(str(TORCHSCRIPT)).eval()
    inputs = normalize(check_images)
    with torch.no_grad():
        expected = reference(torch.from_numpy(inputs.transpose(0, 3, 1, 2).copy())).numpy()
    got = np.concatenate([model(x[None]).numpy() for x in inputs])
    worst = float(np.abs(got - expected).max())
    if worst > FLOAT_TOLERANCE:
        raise SystemExit(f"MobileNetV2 Keras rebuild: logits differ from PyTorch's by {worst:.2e} "
                         f"(> {FLOAT_TOLERANCE:g}) on {len(inputs)} images")
    log(f"MobileNetV2 Keras rebuild: logits within {worst:.2e} of PyTorch's on {len(inputs)} CIFAR-10 images "
        f"(top-1 agrees on {int((got.argmax(1) == expected.argmax(1)).sum())})")
    path.parent.mkdir(parents=True, exist_ok=True)
    return perf.convert_int8(model, normalize(calib_images), path)
