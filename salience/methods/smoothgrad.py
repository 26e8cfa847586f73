"""SmoothGrad (Smilkov et al., 2017, arXiv:1706.03825) and its squared variant
(SmoothGrad-Squared, Hooker et al., 2019, NeurIPS, arXiv:1806.10758)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch

from salience.errors import SalienceError
from salience.methods._base import Attribution, ExplainJob
from salience.methods._registry import get_method, list_methods, method_info, register_method
from salience.methods.batching import spans
from salience.targets import Target

Statistic = Literal["mean", "square", "var"]


@dataclass(frozen=True)
class _RowTarget(Target):
    """The job's target for rows that are noisy copies: row ``m`` is image ``image[m]``."""

    target: Target
    image: torch.Tensor

    def scores(self, logits: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        return self.target.scores(logits, self.image[index.to(self.image.device)])


def noise_bases() -> list[str]:
    """Methods that may be averaged over noise: the gradient family, minus the noise wrappers."""
    return [n for n in list_methods("gradient") if not issubclass(get_method(n), NoisyAverage)]


def with_parameter(
    init: Callable[..., None], name: str, default: bool, *, after: str
) -> inspect.Signature:
    """The signature of ``init`` with one more keyword-only parameter placed after ``after``."""
    sig = inspect.signature(init)
    extra = inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation="bool"
    )
    params: list[inspect.Parameter] = []
    for p in sig.parameters.values():
        params.append(p)
        if p.name == after:
            params.append(extra)
    return sig.replace(parameters=params)


class NoisyAverage(Attribution):
    """A base method's attributions over ``samples`` noisy copies of each image, summarised
    by ``statistic``. Noise is Gaussian with standard deviation ``noise`` times the image's
    range (max - min). The noise is one ``torch.randn([samples, C, H, W])`` draw from a CPU
    generator seeded with ``seed``: sample ``s`` adds the same pattern to every image (scaled
    per image), so a batch gives the same maps as one image at a time, on any device."""

    family = "gradient"
    passes = "samples × base"
    stochastic = True

    statistic: Statistic = "mean"  # the summary over samples; each subclass sets its own

    def __init__(
        self,
        *,
        base: str = "gradient",
        samples: int = 25,
        noise: float = 0.15,
        seed: int = 0,
        base_params: dict[str, Any] | None = None,
        batch_size: int | None = None,
    ) -> None:
        super().__init__(batch_size=batch_size)
        allowed = noise_bases()
        if base not in allowed:
            raise SalienceError(
                f"{self.name} base must be one of: {', '.join(allowed)}; got {base!r}"
            )
        params = dict(base_params or {})
        unknown = sorted(set(params) - set(method_info(base).params))
        if unknown:
            raise SalienceError(
                f"{base} has no parameter {', '.join(unknown)}; "
                f"accepted: {', '.join(method_info(base).params)}"
            )
        if not isinstance(samples, int) or samples < 1:
            raise SalienceError(f"samples must be an integer >= 1, got {samples!r}")
        if noise < 0:
            raise SalienceError(f"noise must be >= 0 (a fraction of the input range), got {noise}")
        self.base, self.samples, self.noise, self.seed = base, samples, noise, seed
        self.base_params = params
        self._base = get_method(base)(**params)

    def attribute(self, job: ExplainJob) -> torch.Tensor:
        x, s = job.x, self.samples
        target = job.resolve_target()
        gen = torch.Generator().manual_seed(self.seed)
        eps = torch.randn((s, *x.shape[1:]), generator=gen).to(device=x.device, dtype=x.dtype)
        scale = self.noise * (x.amax(dim=(1, 2, 3)) - x.amin(dim=(1, 2, 3)))
        first = torch.zeros(x.shape, dtype=torch.float64, device=x.device)
        second = torch.zeros_like(first) if self.statistic != "mean" else first
        for a, b in spans(job.n * s, job.chunk("backward")):
            row = torch.arange(a, b, device=x.device)
            image, sample = row // s, row % s
            inputs = x[image] + scale[image].view(-1, 1, 1, 1) * eps[sample]
            rows = ExplainJob(
                job.model, inputs, _RowTarget(target, image), job.output, job.batch_size
            )
            attr = self._base.attribute(rows).double()
            if self.statistic != "square":
                first.index_add_(0, image, attr)
            if self.statistic != "mean":
                second.index_add_(0, image, attr * attr)
        if self.statistic == "mean":
            out = first / s
        elif self.statistic == "square":
            out = second / s
        else:
            out = (second / s - (first / s) ** 2).clamp_min(0)
        return out.to(x.dtype)


@register_method
class SmoothGrad(NoisyAverage):
    """Mean of a gradient method's attributions over noisy copies of the input.

    ``squared=True`` averages the squared attributions instead (SmoothGrad-Squared).
    """

    name = "smoothgrad"
    signed = True

    def __init__(self, *, squared: bool = False, **params: Any) -> None:
        super().__init__(**params)
        self.squared = squared
        self.statistic = "square" if squared else "mean"


# One definition of the shared parameters: SmoothGrad's are NoisyAverage's with ``squared``
# after ``noise`` (the registry, the recorded params and the README read this signature).
SmoothGrad.__init__.__signature__ = with_parameter(  # type: ignore[attr-defined]
    NoisyAverage.__init__, "squared", False, after="noise"
)
