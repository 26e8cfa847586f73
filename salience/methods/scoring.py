"""Forward-only scoring: the target score of many (perturbed) rows, one chunk at a time.

Perturbation methods (occlusion, RISE, Kernel SHAP, integrated gradients' baseline score) and
the metrics (deletion/insertion, pixel flipping, AOPC, infidelity, ROAD) run the model on many
modified copies of each image. The copies are built one chunk at a time right before their
forward pass (never all at once), and no autograd graph is recorded. The methods reach this
through :class:`~salience.methods._base.ExplainJob`; the metrics call it directly.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from salience.errors import SalienceError
from salience.methods.batching import chunk_size, spans
from salience.outputs import OutputSelector, select_output
from salience.targets import Target

Forward = Callable[[torch.Tensor], torch.Tensor]  # a batch -> logits [M, K]
Build = Callable[[int, int], tuple[torch.Tensor, torch.Tensor]]  # (a, b) -> rows a..b-1, index
RowScore = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, index) -> [M]


def logits_of(model: nn.Module, x: torch.Tensor, output: OutputSelector = None) -> torch.Tensor:
    """The logits ``[M, K]`` of the batch ``x`` (``output`` picks them from a structured output)."""
    return select_output(model(x), output)


def clean_logits(forward: Forward, x: torch.Tensor, step: int) -> torch.Tensor:
    """Logits ``[N, K]`` of the unperturbed batch, ``step`` rows at a time, forward only."""
    with torch.no_grad():  # not inference_mode: the classes may later index autograd ops
        return torch.cat([forward(x[a:b]) for a, b in spans(x.shape[0], step)])


def predict(
    model: nn.Module, x: torch.Tensor, output: OutputSelector = None, batch_size: int | None = None
) -> torch.Tensor:
    """Logits ``[N, K]`` of a clean batch, forward only, in chunks sized for ``model``."""
    step = chunk_size(model, x, "forward", batch_size)
    return clean_logits(lambda rows: logits_of(model, rows, output), x, step)


def class_scores(logits: torch.Tensor, classes: torch.Tensor, softmax: bool) -> torch.Tensor:
    """Row ``m``'s score of class ``classes[m]``: its logit, or its softmax probability
    computed in float32 (the metrics' convention, whatever the model's precision)."""
    values = F.softmax(logits.float(), dim=1) if softmax else logits
    return values.gather(1, classes[:, None].to(logits.device)).squeeze(1)


def target_scores(
    logits: torch.Tensor, target: Target, index: torch.Tensor, probs: bool = False
) -> torch.Tensor:
    """Row ``m``'s score under ``target`` (``index[m]``: the image it came from): its logit,
    or with ``probs`` its softmax probability in the logits' dtype (the methods' convention)."""
    if probs:
        if logits.shape[1] < 2:
            raise SalienceError(
                "score='prob' needs a model with several outputs; use score='logit'"
            )
        logits = logits.softmax(dim=1)
    return target.scores(logits, index)


def score_rows(
    forward: Forward,
    total: int,
    build: Build,
    score: RowScore,
    step: int,
    *,
    inference: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores ``[total]`` of rows built ``step`` at a time by ``build(a, b) -> (inputs, index)``,
    and each row's predicted class ``[total]``. Only one chunk of rows exists at a time.

    Forward only: under ``torch.no_grad``, or ``torch.inference_mode`` with ``inference=True``
    (a little faster; its results cannot enter autograd later).
    """
    scores, preds = [], []
    with torch.inference_mode() if inference else torch.no_grad():
        for a, b in spans(total, step):
            inputs, index = build(a, b)
            logits = forward(inputs)
            scores.append(score(logits, index))
            preds.append(logits.argmax(1))
    return torch.cat(scores), torch.cat(preds)


__all__ = [
    "Build",
    "Forward",
    "RowScore",
    "class_scores",
    "clean_logits",
    "logits_of",
    "predict",
    "score_rows",
    "target_scores",
]
