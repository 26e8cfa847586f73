"""Constant-map control: the same value everywhere, whatever the model or the image."""

from __future__ import annotations

import math

import torch

from salience.errors import SalienceError
from salience.methods._base import Attribution, ExplainJob
from salience.methods._registry import register_method


@register_method
class Constant(Attribution):
    """A map equal to ``value`` at every pixel; identical under any model randomization.

    It calibrates metrics: a similarity check scores it 1 (nothing changes) and a faithfulness
    check scores it like a random ordering (it ranks no pixel above another).
    """

    name = "constant"
    family = "control"
    signed = False
    passes = "none"

    def __init__(self, *, value: float = 1.0, batch_size: int | None = None) -> None:
        super().__init__(batch_size=batch_size)
        self.value = value

    def attribute(self, job: ExplainJob) -> torch.Tensor:
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)):
            raise SalienceError(f"value must be a number, got {self.value!r}")
        if not math.isfinite(self.value):
            raise SalienceError(f"value must be finite, got {self.value}")
        x = job.x
        return torch.full(
            (x.shape[0], *x.shape[2:]), float(self.value), device=x.device, dtype=x.dtype
        )
