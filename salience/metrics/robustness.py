"""Robustness of maps to small input changes (lower is better for all three).

- Max- and average-sensitivity (Yeh, Hsieh, Suggala, Inouye & Ravikumar, 2019, NeurIPS,
  arXiv:1901.09392): inputs y = x + U[-radius, radius] per value (an L-infinity ball), the
  score is max (or mean) over samples of ||a(y) - a(x)|| / ||a(x)||, the normalised form of the
  reference code (``normalize=False`` drops the denominator).
- Local Lipschitz estimate (Alvarez-Melis & Jaakkola, 2018, arXiv:1806.08049):
  max over x' = x + N(0, noise^2) of ||a(x) - a(x')|| / ||x - x'||.

The maps of perturbed inputs explain the class explained for the clean image. ``saliency``:
the method's maps of the clean batch with this ``seed``, when already computed. All perturbed
copies of a few images go through the method in one batched call.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn

from salience._guard import model_guard
from salience.errors import SalienceError
from salience.metrics._common import (
    ClassesLike,
    ExplainFn,
    MethodLike,
    check_batch,
    explainer,
    generator,
    resolve_classes,
    trained_maps,
)
from salience.metrics._registry import register_metric, seeded, variant
from salience.metrics._result import MetricScores
from salience.outputs import OutputSelector

YEH = "Yeh et al., On the (in)fidelity and sensitivity of explanations, NeurIPS 2019"
ALVAREZ = "Alvarez-Melis & Jaakkola, On the robustness of interpretability methods, 2018"
_ROWS = 64  # perturbed rows handed to the method per call


def _map_changes(
    model: nn.Module,
    x: torch.Tensor,
    explain: ExplainFn,
    classes: torch.Tensor,
    samples: int,
    draw: str,
    size: float,
    seed: int,
    saliency: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``||a(x + d) - a(x)||`` ``[N, S]``, ``||a(x)||`` ``[N]`` and ``||d||`` ``[N, S]``;
    the perturbed copies of a few images at a time go through the method in one call."""
    if samples < 1:
        raise SalienceError("samples must be >= 1")
    gen = generator(seed, x.device)
    original = trained_maps(model, x, classes, explain, saliency, seed)
    n = x.shape[0]
    per_call = max(1, _ROWS // samples)
    changes, sizes = [], []
    for a in range(0, n, per_call):
        b = min(a + per_call, n)
        shape = (b - a, samples, *x.shape[1:])
        if draw == "uniform":
            d = (torch.rand(shape, generator=gen, device=x.device, dtype=x.dtype) * 2 - 1) * size
        else:
            d = torch.randn(shape, generator=gen, device=x.device, dtype=x.dtype) * size
        inputs = (x[a:b, None] + d).flatten(0, 1)
        with seeded(seed + 1 + a):
            maps = explain(model, inputs, classes[a:b].repeat_interleave(samples))
        maps = maps.view(b - a, samples, -1).double()
        changes.append((maps - original[a:b].flatten(1).double()[:, None]).norm(dim=2))
        sizes.append(d.flatten(2).double().norm(dim=2))
    return torch.cat(changes), original.flatten(1).double().norm(dim=1), torch.cat(sizes)


def sensitivity(
    model: nn.Module,
    x: torch.Tensor,
    method: MethodLike,
    target: ClassesLike = None,
    *,
    method_params: dict[str, Any] | None = None,
    saliency: torch.Tensor | None = None,
    radius: float = 0.2,
    samples: int = 50,
    normalize: bool = True,
    reduce: Literal["max", "mean"] = "max",
    seed: int = 0,
    output: OutputSelector = None,
) -> MetricScores:
    """Largest (``reduce="max"``) or mean relative change of the map within an L-infinity
    ball."""
    check_batch(x)
    x = x.detach()
    explain = explainer(method, method_params, output)
    with model_guard(model):
        classes = resolve_classes(model, x, target, output)
    diff, norm, _ = _map_changes(
        model, x, explain, classes, samples, "uniform", radius, seed, saliency
    )
    if normalize:
        diff = diff / norm[:, None]
    score = diff.amax(1) if reduce == "max" else diff.mean(1)
    return MetricScores(score, curves={"per_sample": diff})


max_sensitivity = register_metric(
    "max_sensitivity", category="robustness", direction="lower", paper=YEH
)(
    variant(
        sensitivity,
        "max_sensitivity",
        "Largest relative change of the map within an L-infinity ball (lower is better).",
        fixed={"reduce": "max"},
    )
)
avg_sensitivity = register_metric(
    "avg_sensitivity", category="robustness", direction="lower", paper=YEH
)(
    variant(
        sensitivity,
        "avg_sensitivity",
        "Mean relative change of the map within an L-infinity ball (lower is better).",
        fixed={"reduce": "mean"},
    )
)


@register_metric("local_lipschitz", category="robustness", direction="lower", paper=ALVAREZ)
def local_lipschitz(
    model: nn.Module,
    x: torch.Tensor,
    method: MethodLike,
    target: ClassesLike = None,
    *,
    method_params: dict[str, Any] | None = None,
    noise: float = 0.1,
    samples: int = 50,
    seed: int = 0,
    output: OutputSelector = None,
) -> MetricScores:
    """Largest ratio of map change to input change under Gaussian noise (lower is better)."""
    check_batch(x)
    x = x.detach()
    explain = explainer(method, method_params, output)
    with model_guard(model):
        classes = resolve_classes(model, x, target, output)
    num, _, den = _map_changes(model, x, explain, classes, samples, "normal", noise, seed)
    ratio = num / den.clamp_min(1e-300)
    return MetricScores(ratio.amax(1), curves={"per_sample": ratio})
