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
from salience.metrics._common import forward_rows
from salience.outputs import OutputSelector

BASELINES = ("zeros", "mean", "blur", "uniform")
Baseline = str | float | torch.Tensor


def baseline_image(
    x: torch.Tensor,
    kind: Baseline,
    *,
    blur_kernel: int = 11,
    blur_sigma: float = 5.0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The image pixels are replaced with: ``"zeros"`` (0 in the model's input space, i.e. the
    mean colour for mean/std-normalised inputs, as in Petsiuk et al.), ``"mean"`` (per image and
    channel), ``"blur"`` (Gaussian blur, kernel 11 and sigma 5 as in RISE), ``"uniform"`` (noise
    between the image's min and max, as in Samek et al.), a number, or a tensor."""
    if isinstance(kind, torch.Tensor):
        return kind.to(device=x.device, dtype=x.dtype).expand_as(x)
    if isinstance(kind, (int, float)) and not isinstance(kind, bool):
        return torch.full_like(x, float(kind))
    if kind == "zeros":
        return torch.zeros_like(x)
    if kind == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()
    if kind == "blur":
        return gaussian_blur(x, blur_kernel, blur_sigma)
    if kind == "uniform":
        lo = x.amin(dim=(1, 2, 3), keepdim=True)
        hi = x.amax(dim=(1, 2, 3), keepdim=True)
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return lo + (hi - lo) * u
    raise SalienceError(
        f"unknown baseline {kind!r}; choose one of {', '.join(BASELINES)}, a number or a tensor"
    )


def gaussian_blur(x: torch.Tensor, kernel: int, sigma: float) -> torch.Tensor:
    """Per-channel Gaussian blur with zero padding (the RISE reference blurs the same way)."""
    if kernel < 1 or kernel % 2 == 0 or sigma <= 0:
        raise SalienceError("blur_kernel must be a positive odd number and blur_sigma > 0")
    r = kernel // 2
    t = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    c = x.shape[1]
    out = F.conv2d(x, g.view(1, 1, 1, -1).repeat(c, 1, 1, 1), padding=(0, r), groups=c)
    return F.conv2d(out, g.view(1, 1, -1, 1).repeat(c, 1, 1, 1), padding=(r, 0), groups=c)


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
