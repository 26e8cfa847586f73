"""Input × gradient (Shrikumar et al., 2016, arXiv:1605.01713)."""

from __future__ import annotations

import torch

from salience.methods._base import Attribution, Problem
from salience.methods._batching import spans
from salience.methods._registry import register_method


@register_method
class InputXGradient(Attribution):
    """The input multiplied elementwise by the gradient of the target score."""

    name = "input_x_gradient"
    family = "gradient"
    signed = True
    passes = "1 fwd+bwd"

    def attribute(self, problem: Problem) -> torch.Tensor:
        index = problem.rows()
        return torch.cat(
            [
                problem.x[a:b] * problem.input_gradient(problem.x[a:b], index[a:b], clean=True)[0]
                for a, b in spans(problem.n, problem.chunk("backward"))
            ]
        )
