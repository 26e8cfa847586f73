"""The demo's classifier: a small CNN that trains on a CPU in about a minute."""

from __future__ import annotations

import torch
from torch import nn

from salience.data.demo import DEFAULT_CLASSES

# Pixels in 0..1 are normalised to -1..1 (``half`` preset); the demo's audits use the same.
PREPROCESS = "half:size={size},resize={size}"


def _block(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU()]


class ProfessionNet(nn.Module):
    """Four conv blocks (two max-pools, so the last feature map is a quarter of the input's
    size and Grad-CAM maps stay sharp), global average pooling, one linear layer."""

    def __init__(self, num_classes: int = len(DEFAULT_CLASSES), width: int = 16) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            *_block(3, w),
            nn.MaxPool2d(2),
            *_block(w, 2 * w),
            nn.MaxPool2d(2),
            *_block(2 * w, 4 * w),
            *_block(4 * w, 4 * w),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def profession_net() -> ProfessionNet:
    """Factory for ``load_model("salience.demo.model:profession_net", weights=...)``."""
    return ProfessionNet()
