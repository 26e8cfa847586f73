"""The one registry of saliency metrics: the check pipeline, API, docs and tests all read it.

``@register_metric`` wraps a function returning an :class:`MetricScores` into the public metric:
it records every non-data argument (defaults included) in the result's ``params``, and runs
metrics that take a ``seed`` inside a forked, seeded RNG, so stochastic explainers (RISE,
SmoothGrad, the random control) and the metric's own sampling are reproducible without
touching the caller's global RNG state.
"""

from __future__ import annotations

import functools
import inspect
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ParamSpec

import torch
from torch import nn

from salience.errors import UnknownNameError
from salience.methods.baselines import ALIASES
from salience.metrics._result import Direction, MetricResult, MetricScores, finite_mean

P = ParamSpec("P")

CATEGORIES = ("faithfulness", "randomization", "localization", "robustness", "complexity")
# Arguments that carry data rather than configuration; recorded by shape or kind only.
DATA_ARGS = frozenset({"model", "x", "saliency", "masks", "correct", "random_model"})


@dataclass(frozen=True)
class MetricInfo:
    """A registry entry: what the metric measures, which way is better, where it comes from."""

    name: str
    category: str
    direction: Direction
    paper: str
    summary: str
    params: dict[str, Any]
    fn: Callable[..., MetricResult]
    inputs: tuple[str, ...] = ()  # the data it takes: model, x, saliency, method, target, ...


_METRICS: dict[str, MetricInfo] = {}


def register_metric(
    name: str, *, category: str, direction: Direction, paper: str
) -> Callable[[Callable[P, MetricScores]], Callable[P, MetricResult]]:
    """Register a metric function under ``name`` (see the module docstring)."""
    if category not in CATEGORIES:
        raise ValueError(f"unknown metric category {category!r}")

    def decorate(fn: Callable[P, MetricScores]) -> Callable[P, MetricResult]:
        sig = inspect.signature(fn)

        @functools.wraps(fn)
        def metric(*args: P.args, **kwargs: P.kwargs) -> MetricResult:
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            params = {k: describe(k, v) for k, v in bound.arguments.items() if k not in DATA_ARGS}
            device = _device_of(bound.arguments)
            with seeded(bound.arguments.get("seed"), device):
                out = fn(*args, **kwargs)
            scores = out.scores.detach().double().cpu()
            return MetricResult(
                name=name,
                value=finite_mean(scores),
                scores=scores,
                direction=direction,
                paper=paper,
                params=params,
                curves={k: v.detach().cpu() for k, v in out.curves.items()},
                details=out.details,
            )

        if name in _METRICS:
            warnings.warn(f"metric {name!r} registered twice; the later one wins", stacklevel=2)
        doc = inspect.cleandoc(fn.__doc__ or "").split("\n\n")[0].split()
        defaults = {
            p.name: p.default
            for p in sig.parameters.values()
            if p.name not in DATA_ARGS and p.default is not inspect.Parameter.empty
        }
        inputs = tuple(p for p in sig.parameters if p in DATA_ARGS or p in ("method", "target"))
        _METRICS[name] = MetricInfo(
            name, category, direction, paper, " ".join(doc), defaults, metric, inputs
        )
        return metric

    return decorate


def variant(
    base: Callable[..., MetricScores],
    name: str,
    doc: str,
    *,
    fixed: dict[str, Any] | None = None,
    defaults: dict[str, Any] | None = None,
) -> Callable[..., MetricScores]:
    """A metric made from ``base`` (register it with :func:`register_metric`): the arguments in
    ``fixed`` are set and leave the signature, those in ``defaults`` get new defaults. Paired
    metrics (deletion/insertion, ROAD MoRF/LeRF, max/average sensitivity) are variants of one
    function instead of restating its signature."""
    fixed, defaults = dict(fixed or {}), dict(defaults or {})
    sig = inspect.signature(base)
    unknown = (set(fixed) | set(defaults)) - set(sig.parameters)
    if unknown:
        raise ValueError(f"{base.__name__} has no parameters {sorted(unknown)}")
    params = [
        p.replace(default=defaults[p.name]) if p.name in defaults else p
        for p in sig.parameters.values()
        if p.name not in fixed
    ]
    signature = sig.replace(parameters=params)

    def metric(*args: Any, **kwargs: Any) -> MetricScores:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return base(**bound.arguments, **fixed)

    metric.__signature__ = signature  # type: ignore[attr-defined]
    metric.__doc__ = doc
    metric.__name__ = metric.__qualname__ = name
    return metric


def list_metrics(category: str | None = None) -> list[str]:
    """Registered metric names by category (in :data:`CATEGORIES` order), optionally of one."""
    names = [n for n, m in _METRICS.items() if category is None or m.category == category]
    return sorted(names, key=lambda n: CATEGORIES.index(_METRICS[n].category))


def get_metric(name: str) -> Callable[..., MetricResult]:
    """The metric function registered under ``name``."""
    return metric_info(name).fn


def metric_info(name: str) -> MetricInfo:
    try:
        return _METRICS[name]
    except KeyError:
        raise UnknownNameError("metric", name, list(_METRICS)) from None


@contextmanager
def seeded(seed: int | None, device: torch.device | None = None) -> Iterator[None]:
    """Run the body with the global RNGs seeded, restoring the caller's RNG state afterwards."""
    if seed is None:
        yield
        return
    devices = [device] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        yield


def describe(name: str, value: Any) -> Any:
    """A JSON-friendly record of one argument."""
    if name == "target":
        if value is None:
            return "predicted"
        if isinstance(value, int):
            return value
        return "given"
    if name == "method":
        from salience.methods import Attribution

        if isinstance(value, Attribution):
            return {"name": value.name, **value.params()}
        if isinstance(value, str):
            return value
        return getattr(value, "__qualname__", type(value).__name__)
    if name == "baseline" and isinstance(value, str):
        return ALIASES.get(value, value)  # the canonical name ("zeros" is recorded as "zero")
    if isinstance(value, torch.Tensor):
        return value.item() if value.numel() == 1 else f"tensor{tuple(value.shape)}"
    if isinstance(value, nn.Module):
        return type(value).__name__
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [describe("", v) for v in value]
    if isinstance(value, dict):
        return {str(k): describe(str(k), v) for k, v in value.items()}
    if callable(value):
        return getattr(value, "__qualname__", type(value).__name__)
    return repr(value)


def _device_of(arguments: dict[str, Any]) -> torch.device | None:
    for key in ("x", "saliency"):
        value = arguments.get(key)
        if isinstance(value, torch.Tensor):
            return value.device
    return None
