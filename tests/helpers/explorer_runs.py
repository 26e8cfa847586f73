"""Two real audit runs for the explorer and report tests: the demo's generated figures (with
head and uniform masks), a tiny CNN trained for a few steps, audited twice ("v1" after a few
steps, "v2" after more), so that the runs differ and some predictions flip."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from salience.audit import audit
from salience.data.demo import generate, write
from salience.models.preprocess import Preprocess

SIZE = 32
METHODS = ["gradcam", "gradient", "input_x_gradient"]


class Net(nn.Module):
    def __init__(self, classes: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
        )  # fmt: skip
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@dataclass
class Model:
    """What ``salience.audit.audit`` needs of a loaded model."""

    module: nn.Module
    class_names: list[str]
    spec: str
    preprocess: Preprocess = field(
        default_factory=lambda: Preprocess(size=SIZE, resize=SIZE, mean=(0.5,) * 3, std=(0.5,) * 3)
    )
    cam_layer: str | None = "features.4"


def make_data(root: Path, n: int = 48) -> Path:
    """The demo's figures as an image folder with masks; returns the manifest (CSV)."""
    return write(generate(n, seed=3, size=SIZE), root, "test")


def train(manifest: Path, steps: int, classes: list[str]) -> nn.Module:
    import csv

    torch.manual_seed(0)
    net = Net(len(classes))
    pre = Model(net, classes, "x").preprocess
    rows = list(csv.DictReader(manifest.open()))
    x = torch.stack([pre(Image.open(manifest.parent / r["path"]).convert("RGB")) for r in rows])
    y = torch.tensor([classes.index(r["label"]) for r in rows])
    opt = torch.optim.Adam(net.parameters(), lr=0.02)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net.eval()


def make_runs(root: Path) -> tuple[Path, Path]:
    """``root/v1`` and ``root/v2``: the same images audited with a less and a more trained net."""
    manifest = make_data(root / "data")
    classes = sorted({line.split(",")[1] for line in manifest.read_text().splitlines()[1:]})
    runs = []
    for name, steps in (("v1", 3), ("v2", 40)):
        model = Model(train(manifest, steps, classes), classes, f"tests:Net:{steps}")
        audit(model, manifest, root / name, METHODS, batch_size=16, shard_size=20, map_size=SIZE)
        runs.append(root / name)
    return runs[0], runs[1]
