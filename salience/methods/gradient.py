"""Vanilla gradient saliency (Simonyan, Vedaldi & Zisserman, 2014, arXiv:1312.6034)."""

from __future__ import annotations

import torch

from salience.methods._base import Attribution, Problem
from salience.methods._batching import spans
from salience.methods._registry import register_method


@register_method
class Gradient(Attribution):
    """Gradient of the target score with respect to the input pixels."""

    name = "gradient"
    family = "gradient"
    signed = True
    passes = "1 fwd+bwd"

    def attribute(self, problem: Problem) -> torch.Tensor:
        index = problem.rows()
        return torch.cat(
            [
                problem.input_gradient(problem.x[a:b], index[a:b], clean=True)[0]
                for a, b in spans(problem.n, problem.chunk("backward"))
            ]
        )
