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
from salience.methods.batching import chunk_size
from salience.methods.scoring import class_scores, logits_of
from salience.metrics._common import (
    ClassesLike,
    check_batch,
    forward_rows,
    resolve_classes,
)
from salience.metrics._registry import register_metric
from salience.metrics._result import MetricScores
from salience.outputs import OutputSelector

YEH = "Yeh et al., On the (in)fidelity and sensitivity of explanations, NeurIPS 2019"


def _perturbations(
    x: torch.Tensor,
    img: torch.Tensor,
    rows: torch.Tensor,
    per_channel: bool,
    kind: str,
    noise: float,
    square: int,
    seed: int,
) -> torch.Tensor:
    """I for the given (image ``img``, row number ``rows``) rows, ``[R, C or 1, H, W]``; each
    row draws from its own seeded generator, so results do not depend on the chunking."""
    _, c, h, w = x.shape
    gen = torch.Generator(device=x.device)
    out = []
    for i, r in zip(img.tolist(), rows.tolist(), strict=True):
        gen.manual_seed(seed * 1_000_003 + r)
        if kind == "gaussian":
            shape = (c if per_channel else 1, h, w)
            out.append(noise * torch.randn(shape, generator=gen, device=x.device, dtype=x.dtype))
        else:
            top = int(torch.randint(0, h - square + 1, (1,), generator=gen, device=x.device))
            left = int(torch.randint(0, w - square + 1, (1,), generator=gen, device=x.device))
            patch = torch.zeros_like(x[i])
            patch[:, top : top + square, left : left + square] = x[
                i, :, top : top + square, left : left + square
            ]
            out.append(patch)
    return torch.stack(out)


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
) -> MetricScores:
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
    if perturbation not in ("gaussian", "square"):
        raise SalienceError(f"unknown perturbation {perturbation!r}; choose gaussian or square")
    if perturbation == "square" and not 1 <= square <= min(x.shape[-2:]):
        raise SalienceError(f"square must be between 1 and {min(x.shape[-2:])}")
    per_channel = a.shape[1] > 1
    n = x.shape[0]
    img = torch.arange(n, device=x.device).repeat_interleave(samples)
    sums: list[torch.Tensor] = []
    with model_guard(model):
        classes = resolve_classes(model, x, target, output, batch_size)
        with torch.inference_mode():
            clean = class_scores(logits_of(model, x, output), classes, softmax)

        def make_rows(lo: int, hi: int) -> tuple[torch.Tensor, torch.Tensor]:
            rows = torch.arange(lo, hi, device=x.device)
            pert = _perturbations(
                x, img[lo:hi], rows, per_channel, perturbation, noise, square, seed
            )
            sums.append((pert * a[img[lo:hi]]).flatten(1).sum(1))
            return x[img[lo:hi]] - pert, classes[img[lo:hi]]

        scores, _ = forward_rows(
            model,
            n * samples,
            make_rows,
            softmax,
            output,
            chunk_size(model, x, "forward", batch_size),
        )
    predicted = torch.cat(sums).view(n, samples).double()
    actual = (clean.repeat_interleave(samples) - scores).view(n, samples).double()
    beta = torch.ones(n, 1, dtype=torch.float64, device=x.device)
    if scale == "optimal":
        num = (predicted * actual).mean(1, keepdim=True)
        den = (predicted**2).mean(1, keepdim=True)
        beta = torch.where(den > 0, num / den.clamp_min(1e-300), torch.zeros_like(den))
    err = ((beta * predicted - actual) ** 2).mean(1)
    return MetricScores(err, details={"scale_factor": beta.squeeze(1).tolist()})
