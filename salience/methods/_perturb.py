"""Shared machinery of the perturbation family: forward-only scoring.

Perturbation methods evaluate many modified copies of each image. The copies are built one
chunk of ``problem.chunk("forward")`` rows at a time (never all at once), on the input's
device, and scored under ``torch.no_grad``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from salience.errors import SalienceError
from salience.methods._base import ExplainJob
from salience.methods.batching import spans


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
