"""The demo's third version: v2 fine-tuned with PGD adversarial training (Madry et al., ICLR
2018), and how robust each version is.

Adversarially robust models are reported to have more perceptually aligned input gradients
(Tsipras et al., ICLR 2019; Etmann et al., ICML 2019); the demo measures where each version's
plain gradient maps fall (head / uniform density) next to its accuracy under attack. Attacks
come from torchattacks via :mod:`salience.attack`, in pixel space (the demo normalises pixels
to -1..1, the ``half`` preset).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from salience.attack import ATTACKS, PixelModel, run_attack

HALF = ((0.5,) * 3, (0.5,) * 3)


@dataclass(frozen=True)
class RobustConfig:
    epochs: int = 2
    eps: float = 4 / 255  # training budget, L-inf pixels
    clean_weight: float = 0.5  # share of the loss on clean images (Goodfellow et al., 2015)
    steps: int = 3  # PGD steps while training
    lr: float = 1e-3
    batch_size: int = 64
    eval_eps: tuple[float, float] = (2 / 255, 8 / 255)
    eval_steps: int = 10
    eval_images: int = 200
    seed: int = 0


def pixels_of(images: np.ndarray) -> torch.Tensor:
    """uint8 ``[N, H, W, 3]`` -> float32 pixels ``[N, 3, H, W]`` in 0..1."""
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255


def adversarial_finetune(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    config: RobustConfig,
    progress: Callable[[int, int], None] | None = None,
) -> None:
    """Fine-tune ``model`` in place on every batch and its PGD examples, the loss mixing both
    (``config.clean_weight`` on the clean half) so that clean accuracy is kept; the attack runs
    in eval mode, and batch norm sees clean and adversarial images in one batch."""
    pm = PixelModel(model, *HALF)
    x, y = pixels_of(images), torch.from_numpy(np.asarray(labels, dtype=np.int64))
    gen = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr)
    bs = config.batch_size
    total, step = config.epochs * ((len(y) + bs - 1) // bs), 0
    try:
        for _ in range(config.epochs):
            order = torch.randperm(len(y), generator=gen)
            for start in range(0, len(y), bs):
                idx = order[start : start + bs]
                model.eval()
                adv = run_attack(
                    pm,
                    x[idx],
                    y[idx],
                    ATTACKS["pgd"],
                    config.eps,
                    steps=config.steps,
                    seed=config.seed + step,
                )
                model.train()
                logits = pm(torch.cat([x[idx], adv]))
                per_image = F.cross_entropy(logits, torch.cat([y[idx], y[idx]]), reduction="none")
                w = config.clean_weight
                loss = w * per_image[: len(idx)].mean() + (1 - w) * per_image[len(idx) :].mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                if progress is not None:
                    progress(step, total)
    finally:
        model.eval()


def robustness(
    model: nn.Module, images: np.ndarray, labels: np.ndarray, config: RobustConfig
) -> dict[str, object]:
    """Clean accuracy and accuracy under L-inf PGD at ``config.eval_eps`` (pixel space) on the
    first ``config.eval_images`` images."""
    pm = PixelModel(model.eval(), *HALF)
    n = min(config.eval_images, len(labels))
    x, y = pixels_of(images[:n]), torch.from_numpy(np.asarray(labels[:n], dtype=np.int64))
    clean = float((pm.predict(x).argmax(1) == y).float().mean())
    attacked = {}
    for eps in config.eval_eps:
        adv = run_attack(pm, x, y, ATTACKS["pgd"], eps, steps=config.eval_steps, seed=config.seed)
        attacked[f"{eps * 255:g}/255"] = float((pm.predict(adv).argmax(1) == y).float().mean())
    return {"images": n, "clean_accuracy": clean, "attacked_accuracy": attacked}
