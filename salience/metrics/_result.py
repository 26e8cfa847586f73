"""The result every metric returns: per-image scores, the aggregate, direction and parameters."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

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
            "value": _number(self.value),
            "direction": self.direction,
            "paper": self.paper,
            "params": self.params,
            "scores": _plain(self.scores),
            "details": _plain(self.details),
        }
        if curves:
            out["curves"] = {k: _plain(v) for k, v in self.curves.items()}
        return out


def finite_mean(scores: torch.Tensor) -> float:
    """Mean of the finite entries; NaN when there are none."""
    s = scores.double().flatten()
    ok = torch.isfinite(s)
    return float(s[ok].mean()) if bool(ok.any()) else math.nan


def _number(v: float) -> float | None:
    return None if math.isnan(v) or math.isinf(v) else float(v)


def _plain(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return _plain(value.detach().cpu().tolist())
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
