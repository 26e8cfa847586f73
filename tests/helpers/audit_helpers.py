"""Tiny models and generated image folders for the audit and store tests (no demo data)."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from salience.models.preprocess import Preprocess

CLASSES = ("ant", "bee", "cat")
SIZE = (20, 16)  # width, height of generated images


class TinyNet(nn.Module):
    """conv-relu-conv-relu-pool-linear in float32; ``delay`` seconds of sleep per forward."""

    def __init__(self, classes: int = 3, delay: float = 0.0) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(3, 4, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1)
        self.relu2 = nn.ReLU()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(6, classes)
        self.delay = delay

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.delay:
            time.sleep(self.delay)
        return self.fc(self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x))))).flatten(1))


@dataclass
class TinyModel:
    """Stands in for ``salience.models.LoadedModel``."""

    module: nn.Module = field(default_factory=TinyNet)
    preprocess: Preprocess = field(
        default_factory=lambda: Preprocess(size=16, resize=16, mean=(0.5,) * 3, std=(0.5,) * 3)
    )
    class_names: list[str] = field(default_factory=lambda: list(CLASSES))
    cam_layer: str | None = None
    spec: str = "tests:TinyNet"


def image(seed: int, size: tuple[int, int] = SIZE) -> Image.Image:
    rng = np.random.default_rng(seed)
    w, h = size
    arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    return Image.fromarray(arr)


def region_mask(size: tuple[int, int] = SIZE) -> np.ndarray:
    """Top quarter "head" (1), middle half "uniform" (2), the rest background."""
    w, h = size
    m = np.zeros((h, w), dtype=np.uint8)
    m[: h // 4] = 1
    m[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 2
    return m


def make_folder(root: Path, per_class: int = 4, masks: bool = True) -> Path:
    """``root/<class>/<i>.png`` with ``<i>.mask.png`` and ``regions.json``."""
    for c, name in enumerate(CLASSES):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            image(1000 * c + i).save(folder / f"{i:04d}.png")
            if masks:
                Image.fromarray(region_mask()).save(folder / f"{i:04d}.mask.png")
    if masks:
        (root / "regions.json").write_text(json.dumps({"1": "head", "2": "uniform"}))
    return root


def importable_by_ray_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ray workers unpickle a model by importing its module (as a user's model code must be
    installed on every node): put this folder on their ``PYTHONPATH``."""
    paths = [str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))


def skip_without_ray_cluster(message: str) -> None:
    """Skip (not fail) when this machine cannot start a local Ray cluster at all."""
    if "could not start or reach Ray" in message:
        pytest.skip(f"no local Ray cluster here: {message}")
