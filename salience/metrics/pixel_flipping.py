"""Pixel flipping (Bach et al., 2015, PLOS ONE) and AOPC of region perturbation (Samek,
Binder, Montavon, Lapuschkin & Müller, 2017, IEEE TNNLS, arXiv:1509.06321).

Both replace the most relevant pixels (or patches) first by noise drawn uniformly between the
image's minimum and maximum and track the raw target score (logit), as in the papers.
Pixel flipping reports the area under that curve over the fraction flipped (lower is better).
AOPC ranks a grid of ``patch x patch`` regions by their summed relevance, removes them one at a
time and averages the drop ``f(x) - f(x_k)`` over k = 0..regions (higher is better).
"""

from __future__ import annotations

import torch
from torch import nn

from salience._guard import model_guard
from salience.errors import SalienceError
from salience.methods.batching import chunk_size
from salience.metrics._common import (
    ClassesLike,
    as_map,
    check_batch,
    descending_order,
    generator,
    ranks,
    resolve_classes,
)
from salience.metrics._perturbation import (
    Baseline,
    baseline_image,
    curve,
    patch_ranks,
    patch_sums,
    step_counts,
    trapezoid,
)
from salience.metrics._registry import register_metric
from salience.metrics._result import MetricScores
from salience.outputs import OutputSelector

BACH = "Bach et al., On pixel-wise explanations ..., PLOS ONE 2015"
SAMEK = "Samek et al., Evaluating the visualization of what a DNN has learned, TNNLS 2017"


@register_metric("pixel_flipping", category="faithfulness", direction="lower", paper=BACH)
def pixel_flipping(
    model: nn.Module,
    x: torch.Tensor,
    saliency: torch.Tensor,
    target: ClassesLike = None,
    *,
    baseline: Baseline = "uniform",
    steps: int = 50,
    softmax: bool = False,
    seed: int = 0,
    batch_size: int | None = None,
    output: OutputSelector = None,
) -> MetricScores:
    """Area under the target score as the most relevant pixels are flipped (lower is better)."""
    check_batch(x)
    x = x.detach()
    s = as_map(saliency, x)
    h, w = x.shape[-2:]
    gen = generator(seed, x.device)
    with model_guard(model):
        classes = resolve_classes(model, x, target, output, batch_size)
        rank = ranks(descending_order(s.flatten(1), gen))
        base = baseline_image(x, baseline, generator=gen)
        counts = step_counts(h * w, steps, x.device)
        scores = curve(
            model,
            x,
            base,
            rank,
            counts,
            classes,
            softmax=softmax,
            output=output,
            chunk=chunk_size(model, x, "forward", batch_size),
        )
    fraction = counts.double() / (h * w)
    return MetricScores(
        trapezoid(scores.double(), fraction), curves={"scores": scores, "fraction": fraction}
    )


@register_metric("aopc", category="faithfulness", direction="higher", paper=SAMEK)
def aopc(
    model: nn.Module,
    x: torch.Tensor,
    saliency: torch.Tensor,
    target: ClassesLike = None,
    *,
    patch: int = 9,
    regions: int = 100,
    baseline: Baseline = "uniform",
    softmax: bool = False,
    seed: int = 0,
    batch_size: int | None = None,
    output: OutputSelector = None,
) -> MetricScores:
    """Area over the perturbation curve, most relevant regions first (higher is better)."""
    check_batch(x)
    if patch < 1 or regions < 1:
        raise SalienceError("patch and regions must be >= 1")
    x = x.detach()
    s = as_map(saliency, x)
    h, w = x.shape[-2:]
    gen = generator(seed, x.device)
    with model_guard(model):
        classes = resolve_classes(model, x, target, output, batch_size)
        order = descending_order(patch_sums(s, patch), gen)
        rank = patch_ranks(order, patch, h, w)
        base = baseline_image(x, baseline, generator=gen)
        counts = torch.arange(min(regions, order.shape[1]) + 1, device=x.device)
        scores = curve(
            model,
            x,
            base,
            rank,
            counts,
            classes,
            softmax=softmax,
            output=output,
            chunk=chunk_size(model, x, "forward", batch_size),
        )
    drops = scores[:, :1] - scores
    return MetricScores(drops.double().mean(1), curves={"scores": scores, "regions": counts})
