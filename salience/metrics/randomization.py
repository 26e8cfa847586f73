"""Randomization tests: does the map depend on what the model learned?

- Model parameter randomization (Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim, 2018,
  NeurIPS, arXiv:1810.03292): re-initialise the layers of a deep copy of the model from the
  logits down, cumulatively (``order="cascading"``) or one group at a time with the rest
  trained (``"independent"``), and compare each map with the original one.
- Random logit (Sixt, Granz & Landgraf, 2020, ICML, arXiv:1912.09818): compare the map of the
  target class with the map of a random other class.
- Data randomization (Adebayo et al., 2018): compare the maps of the model with those of the
  same architecture trained on permuted labels (you train that model; pass it in).

For all three, a map that stays similar is a bad sign: lower is better. Maps of the randomized
model explain the same classes as the original. Stochastic methods get a different seed for
every stage, so the ``random`` control scores near 0 and ``constant`` scores 1 (Binder et al.,
2023, CVPR: passing these tests is necessary, not sufficient; compare with the controls).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
from torch import nn

from salience._guard import model_guard
from salience.errors import SalienceError
from salience.methods.scoring import predict
from salience.metrics._common import (
    ClassesLike,
    MethodLike,
    check_batch,
    explainer,
    resolve_classes,
    trained_maps,
)
from salience.metrics._layers import (
    copy_model,
    groups,
    parameter_layers,
    reinitialize,
    restore,
    snapshot,
)
from salience.metrics._registry import register_metric, seeded
from salience.metrics._result import MetricScores
from salience.metrics._similarity import SIMILARITIES, SimilarityTo
from salience.metrics._similarity import similarity as similarity_of
from salience.outputs import OutputSelector

ADEBAYO = "Adebayo et al., Sanity checks for saliency maps, NeurIPS 2018 (arXiv:1810.03292)"
SIXT = "Sixt, Granz & Landgraf, When explanations lie, ICML 2020 (arXiv:1912.09818)"


def _check_similarities(names: Sequence[str]) -> list[str]:
    for name in names:
        if name not in SIMILARITIES:
            known = ", ".join(SIMILARITIES)
            raise SalienceError(f"unknown similarity {name!r}; choose one of: {known}")
    return list(dict.fromkeys(names))


def _label(group: list[tuple[str, nn.Module]]) -> str:
    return group[0][0] if len(group) == 1 else f"{group[0][0]} .. {group[-1][0]}"


@register_metric("model_randomization", category="randomization", direction="lower", paper=ADEBAYO)
def model_randomization(
    model: nn.Module,
    x: torch.Tensor,
    method: MethodLike,
    target: ClassesLike = None,
    *,
    method_params: dict[str, Any] | None = None,
    saliency: torch.Tensor | None = None,
    order: Literal["cascading", "independent"] = "cascading",
    layers: int | None = None,
    similarity: str = "spearman_abs",
    extra_similarities: Sequence[str] = (),
    seed: int = 0,
    output: OutputSelector = None,
) -> MetricScores:
    """Similarity of the maps before and after re-initialising layers (lower is better).

    ``layers`` groups the parameter layers (top first) into that many stages (``None``: every
    layer is a stage). The score is the similarity after the last cascading stage (the fully
    randomized model), or the mean over the independent stages. ``curves`` holds the
    similarity per stage, ``details["layers"]`` the stage names. ``saliency``: the method's maps
    of ``x`` on the trained model with this ``seed``, when already computed (not recomputed)."""
    check_batch(x)
    if order not in ("cascading", "independent"):
        raise SalienceError("order must be 'cascading' or 'independent'")
    names = _check_similarities([similarity, *extra_similarities])
    x = x.detach()
    explain = explainer(method, method_params, output)
    work = copy_model(model)
    with model_guard(model):
        classes = resolve_classes(model, x, target, output)
        original = trained_maps(model, x, classes, explain, saliency, seed)
    stages = groups(list(reversed(parameter_layers(work, x))), layers)
    curves: dict[str, list[torch.Tensor]] = {n: [] for n in names}
    to_original = SimilarityTo(original)
    for k, stage in enumerate(stages):
        modules = [m for _, m in stage]
        saved = snapshot(modules) if order == "independent" else []
        with seeded(seed + 7919 * (k + 1)):
            for m in modules:
                reinitialize(m)
        with seeded(seed + k + 1):
            maps = explain(work, x, classes)
        for n in names:
            curves[n].append(to_original(n, maps))
        if order == "independent":
            restore(modules, saved)
    per_stage = {n: torch.stack(v, dim=1) for n, v in curves.items()}
    main = per_stage[similarity]
    score = main[:, -1] if order == "cascading" else main.mean(1)
    return MetricScores(
        score,
        curves={"similarity": main, **{f"similarity_{n}": v for n, v in per_stage.items()}},
        details={"layers": [_label(g) for g in stages], "layer_count": sum(map(len, stages))},
    )


@register_metric("random_logit", category="randomization", direction="lower", paper=SIXT)
def random_logit(
    model: nn.Module,
    x: torch.Tensor,
    method: MethodLike,
    target: ClassesLike = None,
    *,
    method_params: dict[str, Any] | None = None,
    similarity: str = "ssim",
    seed: int = 0,
    output: OutputSelector = None,
) -> MetricScores:
    """Similarity of the map of the target class and of a random other class (lower is better)."""
    check_batch(x)
    _check_similarities([similarity])
    x = x.detach()
    explain = explainer(method, method_params, output)
    with model_guard(model):
        logits = predict(model, x, output)
        classes = resolve_classes(model, x, target, output)
    k = logits.shape[1]
    if k < 2:
        raise SalienceError("the random-logit test needs a model with at least 2 classes")
    gen = torch.Generator().manual_seed(seed)
    shift = torch.randint(1, k, (x.shape[0],), generator=gen).to(classes.device)
    other = (classes + shift) % k  # uniform over the other classes
    with seeded(seed):
        a = explain(model, x, classes)
    with seeded(seed + 1):
        b = explain(model, x, other)
    return MetricScores(similarity_of(similarity, a, b), details={"other_classes": other.tolist()})


@register_metric("data_randomization", category="randomization", direction="lower", paper=ADEBAYO)
def data_randomization(
    model: nn.Module,
    random_model: nn.Module,
    x: torch.Tensor,
    method: MethodLike,
    target: ClassesLike = None,
    *,
    method_params: dict[str, Any] | None = None,
    similarity: str = "spearman_abs",
    seed: int = 0,
    output: OutputSelector = None,
) -> MetricScores:
    """Similarity of the maps of ``model`` and of ``random_model``, the same architecture trained
    on permuted labels (lower is better). ``target=None`` explains each model's own prediction."""
    check_batch(x)
    _check_similarities([similarity])
    x = x.detach()
    explain = explainer(method, method_params, output)
    with model_guard(model), model_guard(random_model):
        ca = resolve_classes(model, x, target, output)
        cb = resolve_classes(random_model, x, target, output)
    with seeded(seed):
        a = explain(model, x, ca)
    with seeded(seed + 1):
        b = explain(random_model, x, cb)
    return MetricScores(
        similarity_of(similarity, a, b),
        details={"classes": ca.tolist(), "random_model_classes": cb.tolist()},
    )
