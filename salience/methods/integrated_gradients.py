"""Integrated gradients (Sundararajan, Taly & Yan, 2017, ICML, arXiv:1703.01365)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from salience.errors import SalienceError
from salience.methods._base import Attribution, ExplainJob
from salience.methods._registry import register_method
from salience.methods.baselines import Baseline, baseline_like, check_baseline
from salience.methods.batching import spans

RULES = ("gauss_legendre", "trapezoid", "riemann_left", "riemann_right", "riemann_middle")


def path_points(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Points ``alpha`` in [0, 1] and weights summing to 1 of the quadrature ``rule``."""
    if rule == "gauss_legendre":
        nodes, weights = np.polynomial.legendre.leggauss(steps)
        return (nodes + 1) / 2, weights / 2
    if rule == "trapezoid":
        weights = np.full(steps, 1.0 / (steps - 1))
        weights[[0, -1]] /= 2
        return np.linspace(0.0, 1.0, steps), weights
    offset = {"riemann_left": 0.0, "riemann_right": 1.0, "riemann_middle": 0.5}[rule]
    return (np.arange(steps) + offset) / steps, np.full(steps, 1.0 / steps)


@register_method
class IntegratedGradients(Attribution):
    """(x - baseline) times the gradient averaged along the straight path from the baseline.

    ``baseline``: see :func:`salience.methods.baselines.baseline_like` (``black``, ``sigma``
    and ``seed`` configure it). ``rule``: the quadrature over the path, Gauss-Legendre by
    default (exact for polynomials of degree < 2 * steps along the path). Rows of
    ``N * steps`` path points are built one chunk at a time.

    ``return_error=True`` also runs the input and the baseline forward once and stores, after
    each call, ``last_score_delta`` = f(x) - f(baseline) and ``last_completeness_error`` =
    sum of attributions minus that delta (both ``[N]``): the completeness axiom says it is 0.
    """

    name = "integrated_gradients"
    family = "gradient"
    signed = True
    passes = "steps fwd+bwd"

    def __init__(
        self,
        *,
        baseline: Baseline = "zero",
        steps: int = 50,
        rule: str = "gauss_legendre",
        black: float | Sequence[float] | None = None,
        sigma: float | None = None,
        seed: int = 0,
        return_error: bool = False,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size)
        baseline = check_baseline(baseline)
        if rule not in RULES:
            raise SalienceError(f"unknown rule {rule!r}; choose one of: {', '.join(RULES)}")
        if not isinstance(steps, int) or steps < (2 if rule == "trapezoid" else 1):
            raise SalienceError(f"steps must be an integer >= {2 if rule == 'trapezoid' else 1}")
        self.baseline, self.steps, self.rule = baseline, steps, rule
        self.black, self.sigma, self.seed = black, sigma, seed
        self.return_error = return_error
        self.last_score_delta: torch.Tensor | None = None
        self.last_completeness_error: torch.Tensor | None = None

    def attribute(self, job: ExplainJob) -> torch.Tensor:
        x, steps = job.x, self.steps
        base = baseline_like(x, self.baseline, black=self.black, sigma=self.sigma, seed=self.seed)
        f_x = job.clean_scores() if self.return_error else None
        job.resolve_target()
        alphas, weights = (
            torch.as_tensor(a, dtype=x.dtype, device=x.device).view(-1, 1, 1, 1)
            for a in path_points(self.rule, steps)
        )
        total = torch.zeros_like(x)
        for a, b in spans(job.n * steps, job.chunk("backward")):
            row = torch.arange(a, b, device=x.device)
            image, step = row // steps, row % steps
            start = base[image]
            inputs = start + alphas[step] * (x[image] - start)
            grad, _ = job.input_gradient(inputs, image)
            total.index_add_(0, image, grad * weights[step])
        attr = (x - base) * total
        self.last_score_delta = self.last_completeness_error = None
        if f_x is not None:
            delta = f_x - job.scores(base, job.rows())
            self.last_score_delta = delta
            self.last_completeness_error = attr.sum(dim=(1, 2, 3)) - delta
        return attr
