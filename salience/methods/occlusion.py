"""Occlusion (Zeiler & Fergus, 2014, ECCV, arXiv:1311.2901)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from salience.errors import SalienceError
from salience.methods._base import Attribution, ExplainJob
from salience.methods._registry import register_method
from salience.methods.baselines import Baseline, baseline_like, check_baseline


def _pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(value)
    if len(pair) != 2 or not all(isinstance(v, int) and v >= 1 for v in pair):
        raise SalienceError(f"{name} must be a positive int or a pair (h, w), got {value!r}")
    return int(pair[0]), int(pair[1])


@register_method
class Occlusion(Attribution):
    """Score drop when a sliding window is replaced by a baseline, averaged over the windows.

    The window covers all channels and slides from the top-left corner in steps of ``stride``;
    as in Captum, the last window of a row or column is cut at the border when ``stride`` does
    not divide the remaining size. A pixel gets the mean of ``score(x) - score(occluded)`` over
    the windows covering it, so the map is signed. ``baseline``: 0 (or any number), a name
    from :data:`~salience.methods.baselines.BASELINES` (``"mean"``, ``"blur"``, ...) or a tensor
    broadcastable to x (see :func:`~salience.methods.baselines.baseline_like`).
    """

    name = "occlusion"
    family = "perturbation"
    signed = True
    passes = "1 fwd per window position"

    def __init__(
        self,
        *,
        window: int | tuple[int, int] = 16,
        stride: int | tuple[int, int] = 8,
        baseline: Baseline = 0.0,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size)
        baseline = check_baseline(baseline)
        self.window = window
        self.stride = stride
        self.baseline = baseline

    def attribute(self, job: ExplainJob) -> torch.Tensor:
        x = job.x
        n, _, h, w = x.shape
        wh, ww = _pair(self.window, "window")
        sh, sw = _pair(self.stride, "stride")
        if wh > h or ww > w:
            raise SalienceError(f"occlusion window {(wh, ww)} is larger than the image {(h, w)}")
        if sh > wh or sw > ww:
            raise SalienceError(
                f"occlusion stride {(sh, sw)} exceeds the window {(wh, ww)}, leaving pixels "
                "never occluded; use a stride <= window"
            )
        ny, nx = math.ceil((h - wh) / sh) + 1, math.ceil((w - ww) / sw) + 1
        positions = ny * nx
        base = baseline_like(x, self.baseline)
        dev = x.device
        top, left = torch.arange(ny, device=dev) * sh, torch.arange(nx, device=dev) * sw
        ys, xs = torch.arange(h, device=dev), torch.arange(w, device=dev)

        def build(a: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:
            row = torch.arange(a, b, device=dev)
            img, pos = row // positions, row % positions
            y0, x0 = top[pos // nx, None], left[pos % nx, None]
            inside = ((ys >= y0) & (ys < y0 + wh))[:, :, None] & ((xs >= x0) & (xs < x0 + ww))[
                :, None, :
            ]
            return torch.where(inside[:, None], base[img], x[img]), img

        clean = job.clean_scores()
        scores = job.perturbed_scores(n * positions, build)
        drop = (clean[:, None] - scores.view(n, positions)).view(n, 1, ny, nx)
        # Spread each window's drop over the pixels it covers, then average per pixel.
        kernel = torch.ones(1, 1, wh, ww, device=dev, dtype=drop.dtype)
        total = F.conv_transpose2d(drop, kernel, stride=(sh, sw))[..., :h, :w]
        count = F.conv_transpose2d(torch.ones_like(drop[:1]), kernel, stride=(sh, sw))[..., :h, :w]
        return (total / count).squeeze(1)
