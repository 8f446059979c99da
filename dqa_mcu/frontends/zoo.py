"""Built-in architectures, so that a bare state_dict checkpoint can be imported.

The CIFAR-10 ResNets follow akamaster/pytorch_resnet_cifar10 exactly (same
module names, so its checkpoints load unchanged): 3x3 convolutions without
bias, BatchNorm, ReLU, three stages of 16/32/64 channels, global average
pooling and a linear layer. The stride-2 shortcut is "option A": subsample
``x[:, :, ::2, ::2]`` and zero-pad the channels, no parameters. It is written
as a small module (``OptionAShortcut``) rather than a lambda so that torch.fx
traces it into ``getitem(slice)`` + ``pad``, which the importer understands.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass(frozen=True)
class Normalization:
    """x_norm[c] = (pixel * pixel_scale - mean[c]) / std[c], pixel a uint8 value."""

    pixel_scale: float
    mean: tuple[float, ...]
    std: tuple[float, ...]


CIFAR_NORMALIZATION = Normalization(1.0 / 255.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


class OptionAShortcut(nn.Module):
    """akamaster's option-A shortcut: subsample by 2, zero-pad `planes // 4` channels each side."""

    def __init__(self, planes: int):
        super().__init__()
        self.pad = planes // 4

    def forward(self, x):
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad), "constant", 0.0)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        if stride != 1 or in_planes != planes:
            self.shortcut = OptionAShortcut(planes)
        else:
            self.shortcut = nn.Sequential()

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + self.shortcut(x)
        out = F.relu(out)
        return out


class CifarResNet(nn.Module):
    def __init__(self, num_blocks: tuple[int, int, int], num_classes: int = 10):
        super().__init__()
        self.in_planes = 16
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(16, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(32, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(64, num_blocks[2], stride=2)
        self.linear = nn.Linear(64, num_classes)

    def _make_layer(self, planes: int, num_blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for s in [stride] + [1] * (num_blocks - 1):
            layers.append(BasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        out = F.avg_pool2d(out, out.size()[3])
        out = out.view(out.size(0), -1)
        out = self.linear(out)
        return out


@dataclass(frozen=True)
class ZooEntry:
    build: Callable[[], nn.Module]
    normalization: Normalization
    input_shape_hwc: tuple[int, int, int]


def _resnet(n: int) -> Callable[[], nn.Module]:
    return lambda: CifarResNet((n, n, n))


ZOO: dict[str, ZooEntry] = {
    "resnet20": ZooEntry(_resnet(3), CIFAR_NORMALIZATION, (32, 32, 3)),
    "resnet32": ZooEntry(_resnet(5), CIFAR_NORMALIZATION, (32, 32, 3)),
    "resnet44": ZooEntry(_resnet(7), CIFAR_NORMALIZATION, (32, 32, 3)),
    "resnet56": ZooEntry(_resnet(9), CIFAR_NORMALIZATION, (32, 32, 3)),
}


def get_entry(arch: str) -> ZooEntry:
    try:
        return ZOO[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; valid: {', '.join(sorted(ZOO))}") from None


def build(arch: str) -> nn.Module:
    """A freshly initialised model of a built-in architecture, in eval mode."""
    return get_entry(arch).build().eval()


def _first(keys, k: int = 5) -> str:
    keys = sorted(keys)
    more = f", ... ({len(keys) - k} more)" if len(keys) > k else ""
    return ", ".join(keys[:k]) + more


def load_state_dict_checkpoint(path, arch: str) -> nn.Module:
    """Build `arch` and load a state_dict checkpoint into it (eval mode).

    Accepts a dict holding 'state_dict' (as saved by akamaster's trainer) or a raw
    state_dict; strips DataParallel's ``module.`` prefixes. Loaded with
    ``weights_only=True``: this never runs code from the file.
    """
    entry = get_entry(arch)
    ck = torch.load(Path(path), map_location="cpu", weights_only=True)
    sd = ck.get("state_dict", ck) if isinstance(ck, dict) else None
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"{path}: not a state_dict checkpoint (expected a dict of tensors, "
                         f"or a dict with a 'state_dict' entry)")
    sd = {(k[len("module."):] if k.startswith("module.") else k): v for k, v in sd.items()}
    model = entry.build()
    expected = model.state_dict()
    for k in expected:  # checkpoints from torch < 0.4.1 have no BatchNorm counter; harmless
        if k.endswith("num_batches_tracked") and k not in sd:
            sd[k] = expected[k]
    missing = set(expected) - set(sd)
    unexpected = set(sd) - set(expected)
    if missing or unexpected:
        parts = [f"{path}: state_dict does not match architecture {arch!r}"]
        if missing:
            parts.append(f"missing keys ({len(missing)}): {_first(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {_first(unexpected)}")
        raise ValueError("; ".join(parts))
    bad = [k for k in expected if tuple(expected[k].shape) != tuple(sd[k].shape)]
    if bad:
        raise ValueError(f"{path}: state_dict does not match architecture {arch!r}; shape mismatch: "
                         + ", ".join(f"{k} {tuple(sd[k].shape)} vs {tuple(expected[k].shape)}"
                                     for k in bad[:5]))
    model.load_state_dict(sd, strict=True)
    return model.eval()
