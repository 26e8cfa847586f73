"""Infidelity (Yeh, Hsieh, Suggala, Inouye & Ravikumar, 2019, NeurIPS, arXiv:1901.09392).

INFD = E_I[(I^T a - (f(x) - f(x - I)))^2]: how well the attribution predicts the change of the
target score under random perturbations I. ``perturbation="gaussian"`` draws I ~ N(0, noise^2)
per pixel; ``"square"`` removes a random ``square x square`` patch (I = x inside it). With a
single-channel map ``[N, H, W]`` the same I is applied to every channel, so I^T a is exact for a
map summed over channels; an ``[N, C, H, W]`` map gets a separate I per channel. With
``scale="optimal"`` the map is first rescaled by the least-squares factor, as in the reference
code, so that maps are not penalised for their arbitrary scale. Lower is better.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from salience._guard import model_guard
from salience.errors import SalienceError
from salience.methods._batching import chunk_size
from salience.metrics._common import (
    ClassesLike,
    check_batch,
    class_scores,
    forward_rows,
    generator,
    logits_of,
    resolve_classes,
)
from salience.metrics._registry import register_metric
from salience.metrics._result import Outcome
from salience.outputs import OutputSelector

YEH = "Yeh et al., On the (in)fidelity and sensitivity of explanations, NeurIPS 2019"


def _perturbations(
    x: torch.Tensor,
    per_channel: bool,
    kind: str,
    noise: float,
    square: int,
    samples: int,
    gen: torch.Generator,
) -> torch.Tensor:
    """I for every (image, sample) row, ``[N * samples, C or 1, H, W]``."""
    n, c, h, w = x.shape
    rows = n * samples
    if kind == "gaussian":
        ch = c if per_channel else 1
        return noise * torch.randn((rows, ch, h, w), generator=gen, device=x.device, dtype=x.dtype)
    if kind == "square":
        if not 1 <= square <= min(h, w):
            raise SalienceError(f"square must be between 1 and {min(h, w)}")
        top = torch.randint(0, h - square + 1, (rows,), generator=gen, device=x.device)
        left = torch.randint(0, w - square + 1, (rows,), generator=gen, device=x.device)
        yy = torch.arange(h, device=x.device)[None, :, None]
        xx = torch.arange(w, device=x.device)[None, None, :]
        inside = (
            (yy >= top[:, None, None])
            & (yy < top[:, None, None] + square)
            & (xx >= left[:, None, None])
            & (xx < left[:, None, None] + square)
        )
        return x.repeat_interleave(samples, 0) * inside[:, None].to(x.dtype)
    raise SalienceError(f"unknown perturbation {kind!r}; choose gaussian or square")


@register_metric("infidelity", category="faithfulness", direction="lower", paper=YEH)
def infidelity(
    model: nn.Module,
    x: torch.Tensor,
    saliency: torch.Tensor,
    target: ClassesLike = None,
    *,
    perturbation: Literal["gaussian", "square"] = "gaussian",
    noise: float = 0.1,
    square: int = 16,
    samples: int = 50,
    scale: Literal["optimal", "none"] = "optimal",
    softmax: bool = False,
    seed: int = 0,
    batch_size: int | None = None,
    output: OutputSelector = None,
) -> Outcome:
    """Expected squared error of the attribution's prediction of score changes (lower is better)."""
    check_batch(x)
    if scale not in ("optimal", "none"):
        raise SalienceError("scale must be 'optimal' or 'none'")
    x = x.detach()
    a = saliency.detach().to(device=x.device, dtype=x.dtype)
    if a.ndim == 3:
        a = a[:, None]
    if a.ndim != 4 or a.shape[0] != x.shape[0] or a.shape[-2:] != x.shape[-2:]:
        raise SalienceError(f"saliency {tuple(saliency.shape)} does not match x {tuple(x.shape)}")
    per_channel = a.shape[1] > 1
    n = x.shape[0]
    gen = generator(seed, x.device)
    with model_guard(model):
        classes = resolve_classes(model, x, target, output, batch_size)
        with torch.inference_mode():
            clean = class_scores(logits_of(model, x, output), classes, softmax)
        pert = _perturbations(x, per_channel, perturbation, noise, square, samples, gen)
        img = torch.arange(n, device=x.device).repeat_interleave(samples)

        def make_rows(lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
            return x[img[lo:hi]] - pert[lo:hi], classes[img[lo:hi]]

        scores, _ = forward_rows(
            model,
            n * samples,
            make_rows,
            softmax,
            output,
            chunk_size(model, x, "forward", batch_size),
        )
    predicted = (pert * a[img]).flatten(1).sum(1).view(n, samples).double()
    actual = (clean.repeat_interleave(samples) - scores).view(n, samples).double()
    beta = torch.ones(n, 1, dtype=torch.float64, device=x.device)
    if scale == "optimal":
        num = (predicted * actual).mean(1, keepdim=True)
        den = (predicted**2).mean(1, keepdim=True)
        beta = torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(den))
    err = ((beta * predicted - actual) ** 2).mean(1)
    return Outcome(err, details={"scale_factor": beta.squeeze(1).tolist()})
