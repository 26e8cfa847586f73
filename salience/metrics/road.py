"""ROAD: RemOve And Debias (Rong, Leemann, Borisov, Kasneci & Kasneci, 2022, ICML,
arXiv:2202.00449).

For each fraction p, the pixels to remove are replaced by noisy linear imputation from their
neighbours (no fixed colour, so the mask's shape leaks no class information), and the model
scores the result without retraining. MoRF removes the most relevant fraction p first (a
faithful map makes the probability drop fast: lower is better); LeRF removes the least relevant
fraction p (a faithful map keeps the probability up: higher is better). The per-image score is
the mean target probability over the fractions; the accuracy (argmax == target) per fraction,
which the paper plots, is in ``curves["correct"]``. The imputation of all rows of a chunk is one
batched solve on the device (:mod:`salience.metrics._imputation`); its time is reported
separately in ``details``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from salience._guard import model_guard
from salience.device import synchronize
from salience.errors import SalienceError
from salience.methods.batching import chunk_size
from salience.metrics._common import (
    ClassesLike,
    as_map,
    check_batch,
    descending_order,
    forward_rows,
    generator,
    ranks,
    resolve_classes,
)
from salience.metrics._imputation import impute
from salience.metrics._registry import register_metric, variant
from salience.metrics._result import MetricScores
from salience.outputs import OutputSelector

RONG = "Rong, Leemann, Borisov, Kasneci & Kasneci, ROAD, ICML 2022 (arXiv:2202.00449)"
PERCENTAGES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def _row_noise(rows: torch.Tensor, x: torch.Tensor, seed: int) -> torch.Tensor:
    """Standard normal noise per row, seeded by (seed, row): independent of the chunking."""
    gen = torch.Generator(device=x.device)
    out = torch.empty((rows.numel(), *x.shape[1:]), device=x.device, dtype=x.dtype)
    for i, r in enumerate(rows.tolist()):
        gen.manual_seed(seed * 1_000_003 + r)
        out[i].normal_(generator=gen)
    return out


def road(
    model: nn.Module,
    x: torch.Tensor,
    saliency: torch.Tensor,
    target: ClassesLike = None,
    *,
    order: Literal["morf", "lerf"] = "morf",
    percentages: Sequence[float] = PERCENTAGES,
    noise: float = 0.01,
    softmax: bool = True,
    tol: float = 1e-4,
    seed: int = 0,
    batch_size: int | None = None,
    output: OutputSelector = None,
) -> MetricScores:
    """Mean target probability with the most (``order="morf"``) or least (``"lerf"``)
    relevant fractions imputed away. ``tol``: the imputation solve's relative residual; at
    1e-4 the imputed pixels are within a small fraction of the added ``noise`` of the exact
    solution (tests/test_metrics_faithfulness.py checks the exact solve)."""
    check_batch(x)
    x = x.detach()
    s = as_map(saliency, x)
    fractions = torch.tensor([float(p) for p in percentages], dtype=torch.float64)
    if fractions.numel() == 0 or bool(((fractions <= 0) | (fractions >= 1)).any()):
        raise SalienceError("percentages must be fractions strictly between 0 and 1")
    n, _, h, w = x.shape
    gen = generator(seed, x.device)
    counts = torch.round(fractions * h * w).long().to(x.device)
    k = counts.numel()
    imputation = 0.0

    def make_rows(a: int, b: int) -> tuple[torch.Tensor, torch.Tensor]:
        nonlocal imputation
        rows = torch.arange(a, b, device=x.device)
        img, j = rows // k, rows % k
        if order == "morf":
            removed = rank[img] < counts[j, None]
        else:
            removed = rank[img] >= h * w - counts[j, None]
        start = time.perf_counter()
        eps = _row_noise(rows, x, seed) if noise > 0 else None
        inputs = impute(x[img], removed.view(-1, h, w), noise=noise, eps=eps, tol=tol)
        synchronize(x.device)
        imputation += time.perf_counter() - start
        return inputs, classes[img]

    with model_guard(model):
        classes = resolve_classes(model, x, target, output, batch_size)
        rank = ranks(descending_order(s.flatten(1), gen))
        step = chunk_size(model, x, "forward", batch_size)
        start = time.perf_counter()
        scores, preds = forward_rows(model, n * k, make_rows, softmax, output, step)
        synchronize(x.device)
        total = time.perf_counter() - start
    image = torch.arange(n * k, device=preds.device) // k
    correct = (preds == classes[image].to(preds.device)).double()
    timing = {"imputation_seconds": imputation, "forward_seconds": total - imputation}
    curve = scores.view(n, k).double()
    return MetricScores(
        curve.mean(1),
        curves={"scores": curve, "correct": correct.view(n, k), "fraction": fractions},
        details={"classes": classes.tolist(), **timing},
    )


road_morf = register_metric("road_morf", category="faithfulness", direction="lower", paper=RONG)(
    variant(
        road,
        "road_morf",
        "Mean target probability with the most relevant fractions imputed away (lower is better).",
        fixed={"order": "morf"},
    )
)
road_lerf = register_metric("road_lerf", category="faithfulness", direction="higher", paper=RONG)(
    variant(
        road,
        "road_lerf",
        "Mean target probability with the least relevant fractions imputed away (higher is "
        "better).",
        fixed={"order": "lerf"},
    )
)
