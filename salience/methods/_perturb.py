"""Shared machinery of the perturbation family: baselines and forward-only scoring.

Perturbation methods evaluate many modified copies of each image. The copies are built one
chunk of ``problem.chunk("forward")`` rows at a time (never all at once), on the input's
device, and scored under ``torch.no_grad``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

from salience.errors import SalienceError
from salience.methods._base import ExplainJob
from salience.methods.batching import spans

Baseline = float | str | torch.Tensor
BASELINES = ("0", "mean", "blur", "a number", "a tensor broadcastable to x")
BLUR_FRACTION = 0.05  # "blur" baseline: Gaussian sigma as a fraction of the longer image side


def baseline_like(x: torch.Tensor, baseline: Baseline) -> torch.Tensor:
    """What removed pixels are replaced with, broadcastable to ``x`` ``[N, C, H, W]``.

    ``0`` or any number: that constant; ``"mean"``: each image's per-channel mean;
    ``"blur"``: the image blurred with a Gaussian of sigma ``BLUR_FRACTION * max(H, W)``;
    a tensor: used as given (``[C, H, W]``, ``[N, C, H, W]``, ``[C, 1, 1]``, ...).
    """
    if isinstance(baseline, torch.Tensor):
        try:
            shape = torch.broadcast_shapes(baseline.shape, x.shape)
        except RuntimeError:
            shape = None
        if shape != x.shape:
            raise SalienceError(
                f"baseline of shape {tuple(baseline.shape)} does not broadcast to the input "
                f"{tuple(x.shape)}; pass [C, H, W], [N, C, H, W] or [C, 1, 1]"
            )
        return baseline.to(device=x.device, dtype=x.dtype)
    if isinstance(baseline, bool):
        raise SalienceError(f"baseline must be one of: {', '.join(BASELINES)}; got a bool")
    if isinstance(baseline, (int, float)):
        return torch.full((1, 1, 1, 1), float(baseline), device=x.device, dtype=x.dtype)
    if baseline == "mean":
        return x.mean(dim=(2, 3), keepdim=True)
    if baseline == "blur":
        return gaussian_blur(x, BLUR_FRACTION * max(x.shape[-2:]))
    raise SalienceError(f"unknown baseline {baseline!r}; use one of: {', '.join(BASELINES)}")


def gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of ``[N, C, H, W]`` per channel, replicated borders."""
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    out = F.pad(x, (radius, radius, 0, 0), mode="replicate")
    out = F.conv2d(out, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    out = F.pad(out, (0, 0, radius, radius), mode="replicate")
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _score(
    problem: ExplainJob, logits: torch.Tensor, index: torch.Tensor, probs: bool
) -> torch.Tensor:
    if probs:
        if logits.shape[1] < 2:
            raise SalienceError(
                "score='prob' needs a model with several outputs; use score='logit'"
            )
        logits = logits.softmax(dim=1)
    return problem.resolve_target().scores(logits, index)


def clean_scores(problem: ExplainJob, probs: bool = False) -> torch.Tensor:
    """Scores ``[N]`` of the unperturbed images; resolves a predicted target from the same pass."""
    with torch.no_grad():
        step = problem.chunk("forward")
        logits = torch.cat([problem.logits(problem.x[a:b]) for a, b in spans(problem.n, step)])
    problem.resolve_target(logits)
    return _score(problem, logits, problem.rows(), probs)


def row_scores(
    problem: ExplainJob, inputs: torch.Tensor, index: torch.Tensor, probs: bool = False
) -> torch.Tensor:
    """Target scores of one chunk of perturbed rows; ``index[m]`` is row ``m``'s image."""
    with torch.no_grad():
        return _score(problem, problem.logits(inputs), index, probs)


def chunked_scores(
    problem: ExplainJob,
    total: int,
    build: Callable[[int, int], tuple[torch.Tensor, torch.Tensor]],
    probs: bool = False,
) -> torch.Tensor:
    """Scores of ``total`` perturbed rows; ``build(a, b)`` returns rows ``a..b-1`` and their
    image indices, so only one chunk of perturbed copies exists at a time."""
    problem.resolve_target()
    out = []
    for a, b in spans(total, problem.chunk("forward")):
        inputs, index = build(a, b)
        out.append(row_scores(problem, inputs, index, probs))
    return torch.cat(out)
