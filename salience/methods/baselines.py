"""Baselines: what removed pixels are replaced with, or where a path starts; one vocabulary.

Occlusion, RISE and Kernel SHAP replace pixels by a baseline, integrated gradients starts its
path at one, and deletion/insertion, pixel flipping and AOPC replace the most salient pixels by
one. See Sturmfels, Lundberg & Lee, "Visualizing the Impact of Feature Attribution Baselines"
(Distill, 2020) for why the choice matters. Every baseline is built per image from that image
alone (or from one shared seeded draw), so a batch gives the same result as one image at a time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F

from salience.errors import SalienceError

Baseline = str | float | torch.Tensor
Padding = Literal["replicate", "zeros"]

BASELINES: tuple[str, ...] = ("zero", "mean", "blur", "black", "uniform")
ALIASES: dict[str, str] = {"0": "zero", "zeros": "zero"}  # older spellings, still accepted
BLUR_FRACTION = 0.05  # default blur sigma as a fraction of the longer image side


def choices(allowed: Sequence[str] = BASELINES) -> str:
    """The accepted baselines in words, for error messages and help texts."""
    return f"{', '.join(allowed)}, a number or a tensor broadcastable to x"


def baseline_name(name: str, allowed: Sequence[str] = BASELINES) -> str:
    """The canonical name of a baseline (``"0"`` and ``"zeros"`` are ``"zero"``); a name not in
    ``allowed`` (a part of :data:`BASELINES`) is a one-line user error listing the choices."""
    canonical = ALIASES.get(name, name)
    if canonical not in allowed:
        raise SalienceError(f"unknown baseline {name!r}; use one of: {choices(allowed)}")
    return canonical


def check_baseline(baseline: Baseline, allowed: Sequence[str] = BASELINES) -> Baseline:
    """Reject a bool or an unknown name early (at construction, not mid-run); return the
    baseline with a name made canonical, so a method records ``"zero"`` for ``"zeros"``."""
    if isinstance(baseline, bool):
        raise SalienceError(f"baseline must be one of: {choices(allowed)}; got a bool")
    if isinstance(baseline, str):
        return baseline_name(baseline, allowed)
    return baseline


def baseline_like(
    x: torch.Tensor,
    baseline: Baseline,
    *,
    allowed: Sequence[str] = BASELINES,
    sigma: float | None = None,
    size: int | None = None,
    padding: Padding = "replicate",
    black: float | Sequence[float] | None = None,
    seed: int = 0,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """The baseline ``[N, C, H, W]`` (possibly an expanded view) for the batch ``x``.

    ``"zero"``: 0 in the model's input space (the mean colour for mean/std-normalised inputs,
    as in Petsiuk et al.). ``"mean"``: each image's per-channel mean. ``"blur"``: the image
    blurred by :func:`gaussian_blur` with ``sigma`` (default ``BLUR_FRACTION`` of the longer
    side), ``size`` and ``padding``. ``"black"``: the preprocessed black image: ``black`` (one
    value, or one per channel, e.g. ``-mean / std``) when given, else each image's per-channel
    minimum. ``"uniform"``: noise between each image's minimum and maximum (Samek et al.), drawn
    per image from ``generator`` when given, else one draw seeded by ``seed`` shared by all
    images. A number, or a tensor broadcastable to ``x`` (``[C, H, W]``, ``[N, C, H, W]``,
    ``[C, 1, 1]``, ...): used as given.
    """
    check_baseline(baseline, allowed)
    if isinstance(baseline, torch.Tensor):
        return _given(x, baseline)
    if isinstance(baseline, (int, float)):
        return torch.full((1, 1, 1, 1), float(baseline), device=x.device, dtype=x.dtype).expand_as(
            x
        )
    name = baseline_name(baseline, allowed)
    if name == "zero":
        return torch.zeros_like(x)
    if name == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x)
    if name == "blur":
        s = BLUR_FRACTION * max(x.shape[-2:]) if sigma is None else float(sigma)
        return gaussian_blur(x, s, size=size, padding=padding)
    if name == "black":
        return _black(x, black)
    return _uniform(x, seed, generator)


def gaussian_blur(
    x: torch.Tensor, sigma: float, *, size: int | None = None, padding: Padding = "replicate"
) -> torch.Tensor:
    """Separable Gaussian blur of ``[N, C, H, W]`` per channel.

    ``size``: the kernel's width, odd (default ``2 * ceil(3 * sigma) + 1``); ``padding``:
    ``"replicate"`` borders, or ``"zeros"`` as the RISE reference blurs (kernel 11, sigma 5).
    """
    if sigma <= 0:
        raise SalienceError(f"blur sigma must be > 0 pixels, got {sigma}")
    if size is not None and (size < 1 or size % 2 == 0):
        raise SalienceError(f"blur kernel size must be a positive odd number, got {size}")
    r = max(1, math.ceil(3 * sigma)) if size is None else size // 2
    t = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = g / g.sum()
    c = x.shape[1]
    row, col = g.view(1, 1, 1, -1).expand(c, 1, 1, -1), g.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    if padding == "zeros":
        out = F.conv2d(x, row, padding=(0, r), groups=c)
        return F.conv2d(out, col, padding=(r, 0), groups=c)
    out = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), row, groups=c)
    return F.conv2d(F.pad(out, (0, 0, r, r), mode="replicate"), col, groups=c)


def _given(x: torch.Tensor, baseline: torch.Tensor) -> torch.Tensor:
    try:
        shape = torch.broadcast_shapes(baseline.shape, x.shape)
    except RuntimeError:
        shape = None
    if shape != x.shape:
        raise SalienceError(
            f"baseline of shape {tuple(baseline.shape)} does not broadcast to the input "
            f"{tuple(x.shape)}; pass [C, H, W], [N, C, H, W] or [C, 1, 1]"
        )
    return baseline.to(device=x.device, dtype=x.dtype).expand_as(x)


def _black(x: torch.Tensor, black: float | Sequence[float] | None) -> torch.Tensor:
    if black is None:
        return x.amin(dim=(2, 3), keepdim=True).expand_as(x)
    value = torch.as_tensor(black, dtype=x.dtype, device=x.device).flatten()
    if value.numel() not in (1, x.shape[1]):
        raise SalienceError(
            f"black= has {value.numel()} values for {x.shape[1]} channels; "
            "give one value or one per channel"
        )
    return value.view(1, -1, 1, 1).expand_as(x)


def _uniform(x: torch.Tensor, seed: int, generator: torch.Generator | None) -> torch.Tensor:
    if generator is None:
        shared = torch.Generator().manual_seed(seed)
        u = torch.rand((1, *x.shape[1:]), generator=shared, dtype=torch.float64)
        u = u.to(device=x.device, dtype=x.dtype)
    else:
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    return lo + (hi - lo) * u


__all__ = [
    "ALIASES",
    "BASELINES",
    "BLUR_FRACTION",
    "Baseline",
    "Padding",
    "baseline_like",
    "baseline_name",
    "check_baseline",
    "choices",
    "gaussian_blur",
]
