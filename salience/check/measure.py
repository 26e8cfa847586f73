"""Measure one method for ``salience check``: explain once, then run every step of the table.

The method's maps of the batch are computed once (seeded) and handed to every step: the
perturbation metrics score them, and the randomization and sensitivity metrics take them as
the trained model's maps instead of explaining the same batch again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from salience.check.config import CheckConfig
from salience.check.steps import STEPS, stage
from salience.device import synchronize
from salience.methods import Attribution, from_spec
from salience.methods.spec import parse_method_spec
from salience.metrics import MetricResult, metric_info
from salience.metrics._registry import seeded


@dataclass(frozen=True)
class CheckEvent:
    """Progress of a check: ``stage`` of ``method`` starts (``work`` 0) or ends (``work``: its
    estimated share of the check, in the units of :attr:`Estimate.total`)."""

    method: str
    stage: str
    work: float = 0.0


Progress = Callable[[CheckEvent], None]


@dataclass
class MethodCheck:
    """The measurements of one method, before they are summarised."""

    name: str
    spec: str
    control: bool
    ms_per_image: float
    results: dict[str, MetricResult] = field(default_factory=dict)


def label_of(spec: str) -> str:
    """A method's key in the report: its name, or the whole spec when it has parameters."""
    return spec if ":" in spec else parse_method_spec(spec)[0]


def warm_up(model: nn.Module, x: torch.Tensor, method: Attribution, seed: int) -> float:
    """Explain one image (layer probes and chunk sizes are not the method's cost); seconds."""
    start = time.perf_counter()
    with seeded(seed):
        method.explain(model, x[:1], None)
    synchronize(x.device)
    return time.perf_counter() - start


def measure(
    model: nn.Module,
    x: torch.Tensor,
    spec: str,
    classes: torch.Tensor,
    config: CheckConfig,
    *,
    control: bool = False,
    cam_layer: str | None = None,
    progress: Progress | None = None,
    work: Callable[[str], float] = lambda _step: 0.0,
    warmed: bool = False,
) -> MethodCheck:
    """Run every step of :data:`~salience.check.steps.STEPS` for one method spec
    (``name[:key=value,...]``); ``work(step)`` is each step's share for ``progress``."""
    method = from_spec(spec, cam_layer)
    label = label_of(spec)
    tick = progress or (lambda _event: None)
    if not warmed:
        warm_up(model, x, method, config.seed)
    tick(CheckEvent(label, "explain"))
    start = time.perf_counter()
    with seeded(config.seed):
        maps = method.explain(model, x, classes)
    synchronize(x.device)
    out = MethodCheck(method.name, spec, control, 1000 * (time.perf_counter() - start) / len(x))
    tick(CheckEvent(label, "explain", work("explain")))
    for step in STEPS:
        tick(CheckEvent(label, stage(step)))
        info = metric_info(step.metric)
        data = {"model": model, "x": x, "saliency": maps, "method": method, "target": classes}
        inputs = {k: data[k] for k in info.inputs if k in data}
        out.results[step.name] = info.fn(**inputs, **step.settings(config))
        tick(CheckEvent(label, stage(step), work(step.name)))
    return out
