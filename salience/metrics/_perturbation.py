"""The engine behind deletion, insertion, pixel flipping and AOPC.

Every image gets a rank per pixel (0 = replaced first). Step ``s`` of the curve replaces the
pixels with ``rank < counts[s]`` by the ``finish`` image and keeps ``start`` elsewhere. The rows
(image, step) are built one chunk at a time right before their forward pass, so memory stays at
one chunk of images whatever the number of steps, and no autograd graph is recorded.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from salience.errors import SalienceError
from salience.methods.baselines import BASELINES, Baseline, baseline_like
from salience.metrics._common import forward_rows
from salience.outputs import OutputSelector

# Every baseline of the one vocabulary but "black", which needs the preprocessing's black.
CURVE_BASELINES = tuple(b for b in BASELINES if b != "black")


def baseline_image(
    x: torch.Tensor,
    kind: Baseline,
    *,
    blur_kernel: int = 11,
    blur_sigma: float = 5.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The image pixels are replaced with (see :func:`salience.methods.baselines.baseline_like`):
    ``"zero"`` (also ``"zeros"``), ``"mean"``, ``"blur"`` (Gaussian blur, kernel 11 and sigma 5
    with zero padding, as in RISE), ``"uniform"`` (noise per image from ``generator``), a number
    or a tensor."""
    return baseline_like(
        x,
        kind,
        allowed=CURVE_BASELINES,
        sigma=blur_sigma,
        size=blur_kernel,
        padding="zeros",
        generator=generator,
    )


def step_counts(total: int, steps: int, device: torch.device) -> torch.Tensor:
    """Units replaced at each of the ``steps + 1`` points: round(k * total / steps)."""
    if steps < 1:
        raise SalienceError("steps must be >= 1")
    k = torch.arange(steps + 1, device=device, dtype=torch.float64)
    return torch.round(k * total / steps).long()


def curve(
    model: nn.Module,
    start: torch.Tensor,
    finish: torch.Tensor,
    rank: torch.Tensor,
    counts: torch.Tensor,
    classes: torch.Tensor,
    *,
    softmax: bool,
    output: OutputSelector,
    chunk: int,
) -> torch.Tensor:
    """Target scores ``[N, S]``; row (i, s) replaces pixels with ``rank[i] < counts[s]``."""
    n, _, h, w = start.shape
    if rank.shape != (n, h * w):
        raise RuntimeError(f"rank has shape {tuple(rank.shape)}, expected {(n, h * w)}")
    s = counts.numel()

    def make_rows(a: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        r = torch.arange(a, b, device=start.device)
        img, step = r // s, r % s
        mask = (rank[img] < counts[step, None]).view(-1, 1, h, w)
        return torch.where(mask, finish[img], start[img]), classes[img]

    scores, _ = forward_rows(model, n * s, make_rows, softmax, output, chunk)
    return scores.view(n, s)


def trapezoid(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Area under each row of ``y`` over ``x`` (trapezoidal rule), ``[N]``."""
    dx = (x[1:] - x[:-1]).to(y.dtype)
    return ((y[:, 1:] + y[:, :-1]) * 0.5 * dx).sum(1)


def patch_ranks(order: torch.Tensor, patch: int, h: int, w: int) -> torch.Tensor:
    """Pixel ranks ``[N, H*W]`` from the order of a ``ceil(H/patch) x ceil(W/patch)`` patch grid."""
    gw = math.ceil(w / patch)
    n = order.shape[0]
    patch_rank = torch.empty_like(order)
    positions = torch.arange(order.shape[1], device=order.device).expand_as(order)
    patch_rank.scatter_(1, order, positions)
    yy = torch.arange(h, device=order.device) // patch
    xx = torch.arange(w, device=order.device) // patch
    pixel_patch = (yy[:, None] * gw + xx[None, :]).flatten()
    return patch_rank[:, pixel_patch].view(n, h * w)


def patch_sums(saliency: torch.Tensor, patch: int) -> torch.Tensor:
    """Sum of the map over each patch of a grid (last patches may be partial), ``[N, P]``."""
    h, w = saliency.shape[-2:]
    ph, pw = math.ceil(h / patch) * patch, math.ceil(w / patch) * patch
    padded = F.pad(saliency, (0, pw - w, 0, ph - h))
    return F.avg_pool2d(padded[:, None], patch).flatten(1) * patch * patch
