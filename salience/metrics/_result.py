"""The result every metric returns: per-image scores, the aggregate, direction and parameters."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from salience.jsonsafe import finite, json_safe

Direction = Literal["higher", "lower"]


@dataclass(frozen=True)
class MetricScores:
    """What a metric function computes; the registry wraps it into a :class:`MetricResult`."""

    scores: torch.Tensor  # [N] one score per image
    curves: dict[str, torch.Tensor] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MetricResult:
    """One metric evaluated on a batch.

    ``value`` is the mean of the finite per-image ``scores``; ``direction`` says whether higher
    or lower is better; ``params`` holds every parameter the metric ran with (defaults included,
    seed included), so that a score can be reproduced and compared with the right one.
    ``curves`` holds per-image curves (e.g. deletion scores per step, ``[N, S]``) and their
    x axis; ``details`` holds anything else (layer names, patterns, ...).
    """

    name: str
    value: float
    scores: torch.Tensor
    direction: Direction
    paper: str
    params: dict[str, Any]
    curves: dict[str, torch.Tensor] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def __float__(self) -> float:
        return self.value

    def to_dict(self, curves: bool = True) -> dict[str, Any]:
        """A JSON-ready dict (tensors become lists, NaN becomes None)."""
        out: dict[str, Any] = {
            "name": self.name,
            "value": finite(self.value),
            "direction": self.direction,
            "paper": self.paper,
            "params": self.params,
            "scores": json_safe(self.scores),
            "details": json_safe(self.details),
        }
        if curves:
            out["curves"] = json_safe(self.curves)
        return out


def finite_mean(scores: torch.Tensor) -> float:
    """Mean of the finite entries; NaN when there are none."""
    s = scores.double().flatten()
    ok = torch.isfinite(s)
    return float(s[ok].mean()) if bool(ok.any()) else math.nan
