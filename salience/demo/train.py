"""A plain CPU training loop for the demo's models (AdamW, one-cycle schedule, flips)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from salience.errors import SalienceError

Progress = Callable[[int, int, float], None]  # (step, total steps, running accuracy)


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 8
    batch_size: int = 32
    max_lr: float = 6e-3
    weight_decay: float = 1e-4
    seed: int = 0


@dataclass
class TrainResult:
    train_accuracy: list[float] = field(default_factory=list)  # per epoch
    steps: int = 0


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` -> float32 ``[N, 3, H, W]`` in -1..1 (the ``half`` preset)."""
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise SalienceError("images must be uint8 [N, H, W, 3]")
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    return x.div_(127.5).sub_(1.0)


def train(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    config: TrainConfig = TrainConfig(),
    progress: Progress | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``images`` (uint8 NHWC) and integer ``labels``."""
    if len(images) != len(labels) or len(labels) == 0:
        raise SalienceError("need as many labels as images, and at least one image")
    gen = torch.Generator().manual_seed(config.seed)
    x, y = to_tensor(images), torch.from_numpy(np.asarray(labels, dtype=np.int64))
    n, bs = len(y), config.batch_size
    per_epoch = (n + bs - 1) // bs
    total = config.epochs * per_epoch
    opt = torch.optim.AdamW(model.parameters(), lr=config.max_lr, weight_decay=config.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, config.max_lr, total_steps=total)
    result = TrainResult()
    model.train()
    try:
        for _ in range(config.epochs):
            order = torch.randperm(n, generator=gen)
            correct = 0
            for start in range(0, n, bs):
                idx = order[start : start + bs]
                xb, yb = x[idx], y[idx]
                flip = torch.rand(len(idx), generator=gen) < 0.5
                xb = torch.where(flip[:, None, None, None], xb.flip(3), xb)
                out = model(xb)
                loss = F.cross_entropy(out, yb)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                correct += int((out.argmax(1) == yb).sum())
                result.steps += 1
                if progress is not None:
                    progress(result.steps, total, correct / min(n, start + bs))
            result.train_accuracy.append(correct / n)
    finally:
        model.eval()
    return result


@torch.no_grad()
def predict(model: nn.Module, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Predicted class per image."""
    model.eval()
    x = to_tensor(images)
    return torch.cat(
        [model(x[i : i + batch_size]).argmax(1) for i in range(0, len(x), batch_size)]
    ).numpy()


def balanced_accuracy(labels: np.ndarray, preds: np.ndarray) -> float:
    """Mean per-class recall over the classes present in ``labels``."""
    classes = np.unique(labels)
    return float(np.mean([(preds[labels == c] == c).mean() for c in classes]))
