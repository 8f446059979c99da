"""The demo's model and data: a small residual CNN trained in seconds on the
handwritten digits that scikit-learn ships (8x8 grey images, 1,797 of them),
so the whole pipeline runs on a fresh machine with nothing downloaded.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from dqa_mcu.frontends.zoo import Normalization

DIGITS_PIXEL_MAX = 16  # sklearn digits are 0..16
DEMO_NORMALIZATION = Normalization(1.0 / 255.0, (0.1,), (0.3,))


def digits_dataset(seed: int = 0):
    """(train_x, train_y, test_x, test_y): uint8 NHWC (N, 8, 8, 1) pixels 0..255."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    x = np.rint(digits.images * (255.0 / DIGITS_PIXEL_MAX)).astype(np.uint8)[..., None]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    split = len(x) * 2 // 3
    train, test = order[:split], order[split:]
    return x[train], y[train], x[test], y[test]


class DigitsNet(nn.Module):
    """conv 3x3 (16) -> residual block (16) -> conv 3x3 stride 2 (32) -> maxpool -> GAP -> linear."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.block_conv1 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.block_bn1 = nn.BatchNorm2d(16)
        self.block_conv2 = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.block_bn2 = nn.BatchNorm2d(16)
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.block_bn1(self.block_conv1(x)))
        x = F.relu(self.block_bn2(self.block_conv2(y)) + x)
        x = self.pool(F.relu(self.conv2(x)))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


def normalize(pixels: np.ndarray, norm: Normalization = DEMO_NORMALIZATION) -> torch.Tensor:
    x = torch.from_numpy(pixels).float().permute(0, 3, 1, 2) * norm.pixel_scale
    return (x - torch.tensor(norm.mean).view(1, -1, 1, 1)) / torch.tensor(norm.std).view(1, -1, 1, 1)


def train_digits_model(train_x, train_y, epochs: int = 30, seed: int = 0) -> nn.Module:
    # one thread: the ops are tiny, and OpenMP worker threads spin badly when
    # another process shares the cores (minutes instead of seconds)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch.manual_seed(seed)
        model = DigitsNet()
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        x, y = normalize(train_x), torch.from_numpy(train_y)
        for _ in range(epochs):
            model.train()
            perm = torch.randperm(len(x))
            for i in range(0, len(x), 64):
                idx = perm[i:i + 64]
                opt.zero_grad()
                F.cross_entropy(model(x[idx]), y[idx]).backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()
