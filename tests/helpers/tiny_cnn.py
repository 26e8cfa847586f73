"""The tiny CNN most tests explain (the ``tiny_cnn`` fixture is it in float64)."""

from __future__ import annotations

import torch
from torch import nn


class TinyCNN(nn.Module):
    """conv-relu-conv-relu-pool-linear; float64 friendly, ~1k parameters."""

    def __init__(self, classes: int = 5, inplace: bool = False) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 3, padding=1)
        self.relu1 = nn.ReLU(inplace=inplace)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.relu2 = nn.ReLU(inplace=inplace)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu2(self.conv2(self.relu1(self.conv1(x))))
        return self.fc(self.pool(x).flatten(1))
