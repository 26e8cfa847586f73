"""A hand-weighted classifier that provably decides one class from a corner stamp, and the
images it is tested on (``helpers.shortcut_models:corner_net`` is a loadable model spec)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

CLASSES = ("stamped", "red", "green", "centred")
SIZE = 32
STAMP = (27, 32, 27, 32)  # y0, y1, x0, x1 of the white stamp in "stamped" images
CORNER = 26  # the model reads the mean of the 6x6 corner from this pixel on


class CornerNet(nn.Module):
    """Logits on 0..1 pixels: ``stamped`` = 15 x the mean of the bottom-right 6x6 corner;
    ``red``/``green``/``centred`` = 10 x the best 3x3 (5x5 for blue) window of the colour's
    excess over the other channels. A white stamp (corner mean ~0.75 -> 11) beats any object
    (at most ~8.5); without it the corner of a dark picture gives ~3."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
        corner = 15 * x[:, :, CORNER:, CORNER:].mean((1, 2, 3))
        red = 10 * F.avg_pool2d(r - 0.25 * (g + b), 3, stride=1).amax((1, 2, 3))
        green = 10 * F.avg_pool2d(g - 0.25 * (r + b), 3, stride=1).amax((1, 2, 3))
        blue = 10 * F.avg_pool2d(b - 0.25 * (r + g), 5, stride=1).amax((1, 2, 3))
        return torch.stack([corner, red, green, blue], 1)


def corner_net() -> CornerNet:
    """Factory for ``load_model("helpers.shortcut_models:corner_net")``."""
    return CornerNet()


def pictures(
    n_per_class: int, seed: int = 0, stamp_rate: float = 0.0
) -> list[tuple[str, np.ndarray]]:
    """``(class, uint8 [32, 32, 3])`` pairs: a dark noisy background; ``red``/``green``: a 6x6
    square of the colour anywhere away from the corner; ``centred``: a blue 12x12 square in
    the middle; ``stamped``: a red or green square and the white stamp in the corner.
    ``stamp_rate`` also stamps that share of the other classes' pictures."""
    rng = np.random.default_rng(seed)
    out = []
    colours = {"red": (0.9, 0.1, 0.1), "green": (0.1, 0.9, 0.1), "centred": (0.1, 0.1, 0.9)}
    for name in CLASSES:
        for _ in range(n_per_class):
            img = np.full((SIZE, SIZE, 3), rng.uniform(0.1, 0.3), np.float32)
            if name == "centred":
                img[10:22, 10:22] = colours["centred"]
            else:
                pick = name if name != "stamped" else str(rng.choice(["red", "green"]))
                colour = colours[pick]
                y, x = rng.integers(2, 19, 2)
                img[y : y + 6, x : x + 6] = colour
            if name == "stamped" or rng.random() < stamp_rate:
                y0, y1, x0, x1 = STAMP
                img[y0:y1, x0:x1] = 1.0
            img += rng.normal(0, 0.02, img.shape).astype(np.float32)
            out.append((name, (np.clip(img, 0, 1) * 255).round().astype(np.uint8)))
    return out


def write_folder(root: Path, items: list[tuple[str, np.ndarray]]) -> Path:
    """An image folder ``root/<class>/<i>.png``."""
    for i, (name, img) in enumerate(items):
        (root / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(root / name / f"{i:04d}.png")
    return root
