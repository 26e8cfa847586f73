"""Baselines for path methods (integrated gradients): the "absence of signal" a path starts at.

See Sturmfels, Lundberg & Lee, "Visualizing the Impact of Feature Attribution Baselines"
(Distill, 2020) for why the choice matters. Every baseline is built per image from that image
alone (or from one shared seeded draw), so a batch gives the same result as one image at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from salience.errors import SalienceError
from salience.methods._perturb import BLUR_FRACTION, baseline_like, gaussian_blur

PathBaseline = str | float | torch.Tensor
PATH_BASELINES = ("zero", "black", "blur", "uniform", "a number", "a tensor broadcastable to x")
_NAMES = ("zero", "black", "blur", "uniform")


def check_path_baseline(baseline: PathBaseline) -> None:
    """Reject an unknown baseline name early (at construction, not mid-run)."""
    if isinstance(baseline, bool) or (isinstance(baseline, str) and baseline not in _NAMES):
        raise SalienceError(
            f"unknown baseline {baseline!r}; use one of: {', '.join(PATH_BASELINES)}"
        )


def path_baseline(
    x: torch.Tensor,
    baseline: PathBaseline,
    *,
    black: float | Sequence[float] | None = None,
    sigma: float | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """The baseline ``[N, C, H, W]`` for the preprocessed batch ``x``.

    ``"zero"``: all zeros. ``"black"``: the preprocessed black image: ``black`` (one value, or
    one per channel, e.g. ``-mean / std``) when given, else each image's per-channel minimum
    over H and W. ``"blur"``: the image blurred by a Gaussian of ``sigma`` pixels (default
    ``BLUR_FRACTION`` of the longer side). ``"uniform"``: uniform noise between each image's
    minimum and maximum, from one draw seeded by ``seed`` shared by all images. A number or a
    tensor broadcastable to ``x``: used as given.
    """
    check_path_baseline(baseline)
    if baseline == "zero":
        return torch.zeros_like(x)
    if baseline == "black":
        return _black(x, black)
    if baseline == "blur":
        s = BLUR_FRACTION * max(x.shape[-2:]) if sigma is None else float(sigma)
        if s <= 0:
            raise SalienceError(f"sigma must be > 0 pixels, got {sigma}")
        return gaussian_blur(x, s)
    if baseline == "uniform":
        gen = torch.Generator().manual_seed(seed)
        u = torch.rand((1, *x.shape[1:]), generator=gen, dtype=torch.float64)
        lo = x.amin(dim=(1, 2, 3), keepdim=True)
        hi = x.amax(dim=(1, 2, 3), keepdim=True)
        return lo + (hi - lo) * u.to(device=x.device, dtype=x.dtype)
    assert not isinstance(baseline, str)
    return baseline_like(x, baseline).expand_as(x)


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
