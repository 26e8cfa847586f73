"""Deletion and insertion (Petsiuk, Das & Saenko, 2018, BMVC, arXiv:1806.07421).

Pixels are ranked by saliency (ties broken at random, seeded). Deletion replaces the most
salient pixels first by a baseline and tracks the probability of the target class; insertion
starts from a blurred image and puts the original pixels back, most salient first. The score
is the area under the curve over the fraction of pixels replaced (trapezoidal rule on [0, 1]);
with ``steps`` dividing H*W this equals the RISE reference ``(sum - first/2 - last/2)/(n - 1)``.
``steps=H*W/224`` reproduces its 224-pixel step on 224x224 images.
"""

from __future__ import annotations

import torch
from torch import nn

from salience._guard import model_guard
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
from salience.metrics._perturbation import Baseline, baseline_image, curve, step_counts, trapezoid
from salience.metrics._registry import register_metric, variant
from salience.metrics._result import MetricScores
from salience.outputs import OutputSelector

PETSIUK = "Petsiuk, Das & Saenko, RISE, BMVC 2018 (arXiv:1806.07421)"


def replacement_curve(
    model: nn.Module,
    x: torch.Tensor,
    saliency: torch.Tensor,
    target: ClassesLike = None,
    *,
    insert: bool = False,
    baseline: Baseline = "zero",
    steps: int = 50,
    softmax: bool = True,
    blur_kernel: int = 11,
    blur_sigma: float = 5.0,
    seed: int = 0,
    batch_size: int | None = None,
    output: OutputSelector = None,
) -> MetricScores:
    """Area under the target probability as the most salient pixels go from the ``start`` to
    the ``finish`` image: deletion (``insert=False``: from x to the baseline) or insertion
    (from the baseline back to x)."""
    check_batch(x)
    x = x.detach()
    s = as_map(saliency, x)
    h, w = x.shape[-2:]
    gen = generator(seed, x.device)
    with model_guard(model):
        classes = resolve_classes(model, x, target, output, batch_size)
        order = descending_order(s.flatten(1), gen)
        base = baseline_image(
            x, baseline, blur_kernel=blur_kernel, blur_sigma=blur_sigma, generator=gen
        )
        start, finish = (base, x) if insert else (x, base)
        counts = step_counts(h * w, steps, x.device)
        scores = curve(
            model,
            start,
            finish,
            ranks(order),
            counts,
            classes,
            softmax=softmax,
            output=output,
            chunk=chunk_size(model, x, "forward", batch_size),
        )
    fraction = counts.double() / (h * w)
    auc = trapezoid(scores.double(), fraction)
    return MetricScores(
        auc, curves={"scores": scores, "fraction": fraction}, details={"classes": classes.tolist()}
    )


deletion = register_metric("deletion", category="faithfulness", direction="lower", paper=PETSIUK)(
    variant(
        replacement_curve,
        "deletion",
        "Area under the target probability as the most salient pixels are deleted (lower is "
        "better).",
        fixed={"insert": False},
    )
)
insertion = register_metric(
    "insertion", category="faithfulness", direction="higher", paper=PETSIUK
)(
    variant(
        replacement_curve,
        "insertion",
        "Area under the target probability as the most salient pixels are inserted into a "
        "blurred image (higher is better).",
        fixed={"insert": True},
        defaults={"baseline": "blur"},
    )
)
