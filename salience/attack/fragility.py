"""Explanation fragility (Ghorbani, Abid and Zou, AAAI 2019, arXiv:1710.10547): a perturbation
within an L-inf budget that keeps the predicted label and moves the map as far as possible,
against random sign noise of the same budget.

The attack is their iterative top-k attack: signed steps that lower the share of the map's
mass on the clean map's top-k pixels, projected on the budget ball and clipped to 0..1,
from a random start (the control's random sign point, where it keeps the label). Steps
are taken through the softplus surrogate (Dombrowski et al., NeurIPS 2019); the label is
checked on the real model after every step, an image whose label would change stops there,
and each image keeps the iterate with the lowest share among those that kept the label.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from salience.attack._maps import DIFFERENTIABLE, surrogate_for
from salience.attack._measures import top_k_mask
from salience.attack._pixel import PixelModel
from salience.attack._surrogate import SoftplusSurrogate
from salience.models.layers import CamLayer


@dataclass(frozen=True)
class FragilityConfig:
    eps: float = 2 / 255  # L-inf, pixel space
    steps: int = 20
    beta: float = 10.0  # softplus surrogate
    k: int = 1000
    seed: int = 0


def _mass_share(maps: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    a = maps.abs().flatten(1)
    return (a * mask).sum(1) / a.sum(1).clamp_min(1e-12)


def fragility_attack(
    pm: PixelModel,
    pixels: torch.Tensor,
    labels: torch.Tensor,
    clean_map: torch.Tensor,
    method: str,
    config: FragilityConfig,
    k: int,
    layer: CamLayer | None = None,
    progress: Callable[[], None] | None = None,
    start: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Attacked pixels and whether each differs from the clean image.

    ``clean_map`` is the real map of ``method`` on ``pixels``; its top-``k`` pixels are moved
    away from. The attack optimises the differentiable map :func:`surrogate_for` names. It
    starts from ``start`` where that keeps the label (a random start, as in PGD; the pipeline
    passes the control's random sign point), else from the clean image."""
    map_fn = DIFFERENTIABLE[surrogate_for(method)]
    mask = top_k_mask(clean_map, k).to(pixels.dtype)
    alpha = 2.5 * config.eps / config.steps
    cur = pixels.detach().clone()
    if start is not None:
        keeps = pm.predict(start).argmax(1) == labels
        cur[keeps] = start.detach()[keeps]
    best = cur.clone()
    best_share = torch.full((len(pixels),), float("inf"), dtype=pixels.dtype, device=pixels.device)
    active = torch.ones(len(pixels), dtype=torch.bool, device=pixels.device)
    for t in range(config.steps + 1):
        kept = pm.predict(cur).argmax(1) == labels
        active &= kept
        inp = cur.detach().requires_grad_(True)
        with SoftplusSurrogate(config.beta):
            share = _mass_share(map_fn(pm, inp, labels, layer), mask)
        better = active & (share.detach() < best_share)
        best[better] = cur[better]
        best_share[better] = share.detach()[better]
        if progress:
            progress()
        if t == config.steps or not active.any():
            break
        (grad,) = torch.autograd.grad(share.sum(), inp)
        step = cur - alpha * grad.sign()
        step = torch.min(torch.max(step, pixels - config.eps), pixels + config.eps).clamp(0, 1)
        cur = torch.where(active.view(-1, 1, 1, 1), step, cur).detach()
    return best, (best != pixels).flatten(1).any(1)


def random_sign(pixels: torch.Tensor, eps: float, seed: int) -> torch.Tensor:
    """The control: ``pixels + eps * sign(noise)``, clipped to 0..1, from a seeded generator."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    noise = torch.randint(0, 2, pixels.shape, generator=gen).to(pixels) * 2 - 1
    return (pixels + eps * noise).clamp(0, 1)
