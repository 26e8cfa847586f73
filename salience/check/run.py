"""``salience check``: which saliency methods can be trusted for this model?

For each method (and the ``random`` and ``constant`` controls, measured first) on a batch of
images, every step of :data:`salience.check.steps.STEPS`: cascading model randomization
(Adebayo et al., 2018) with the similarity per stage, deletion and insertion (Petsiuk et al.,
2018), ROAD most- and least-relevant-first (Rong et al., 2022), max-sensitivity (Yeh et al.,
2019), sparseness and complexity, and the cost per image; then a verdict per method
(:mod:`salience.check.verdict`) and a ranking.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
from torch import nn

from salience.check.config import CONTROLS, CheckConfig, default_methods
from salience.check.measure import MethodCheck, Progress, label_of, measure, warm_up
from salience.check.steps import STAGES, STEPS
from salience.check.summary import failed, summarise
from salience.check.verdict import judge, rank
from salience.device import synchronize
from salience.errors import SalienceError
from salience.methods import from_spec
from salience.metrics._common import resolve_classes

CAVEAT = (
    "Passing these checks is necessary, not sufficient: uninformative maps can pass "
    "randomization tests (Binder et al., CVPR 2023), and perturbation metrics depend on how "
    "pixels are removed. Compare every method with the random and constant controls."
)
OnMethod = Callable[[dict[str, Any]], None]


@dataclass
class Estimate:
    """Expected seconds of every (method label, step) of a check, from one image per method
    (the warm-up every method needs anyway), scaled by how much faster per image a forward
    pass of the whole batch runs than one of a single image; ``warmed`` lists the specs whose
    warm-up ran."""

    seconds: dict[tuple[str, str], float] = field(default_factory=dict)
    warmed: set[str] = field(default_factory=set)

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    def work(self, label: str) -> Callable[[str], float]:
        return lambda step: self.seconds.get((label, step), 0.0)


def plan(methods: Sequence[str]) -> list[tuple[str, bool]]:
    """``(spec, is_control)`` in the order they run: ``random`` first and the other control
    next, so that every method can be judged against random as soon as it is measured."""
    runs = [(c, True) for c in CONTROLS if c not in methods]
    runs += [(m, False) for m in dict.fromkeys(methods)]
    return sorted(runs, key=lambda run: (run[0] != "random", not run[1]))


def estimate_check(
    model: nn.Module,
    x: torch.Tensor,
    methods: Sequence[str],
    config: CheckConfig,
    cam_layer: str | None = None,
) -> Estimate:
    """Warm every method up on one image and extrapolate the check's time (see
    :class:`Estimate`). A method that fails here is left to :func:`run_check` to report."""
    out = Estimate()
    n = x.shape[0]
    times: dict[str, float] = {}
    for spec, _ in plan(methods):
        try:
            times[spec] = warm_up(model, x, from_spec(spec, cam_layer), config.seed)
        except SalienceError:
            continue
        out.warmed.add(spec)
    forward, batched = _forward_seconds(model, x[:1]), _forward_seconds(model, x)
    share = min(1.0, batched / (n * forward)) if forward > 0 else 1.0
    for spec, seconds in times.items():
        label = label_of(spec)
        out.seconds[(label, "explain")] = share * seconds * n
        for step in STEPS:
            cost = seconds * step.explains(config) + forward * step.forwards(config)
            out.seconds[(label, step.name)] = share * cost * n
    return out


def _forward_seconds(model: nn.Module, x: torch.Tensor) -> float:
    """Seconds of a forward pass of ``x`` (the faster of two: the first may set kernels up);
    a batch runs faster per image than one image alone, and the check's passes are batched,
    so the estimate scales by the ratio."""
    times = []
    with torch.inference_mode():
        for _ in range(2):
            start = time.perf_counter()
            model(x)
            synchronize(x.device)
            times.append(time.perf_counter() - start)
    return min(times)


def run_check(
    model: nn.Module,
    x: torch.Tensor,
    methods: Sequence[str] | None = None,
    *,
    config: CheckConfig | None = None,
    model_name: str | None = None,
    cam_layer: str | None = None,
    progress: Progress | None = None,
    estimate: Estimate | None = None,
    on_method: OnMethod | None = None,
) -> dict[str, Any]:
    """Check ``methods`` (specs ``name[:key=value,...]``; default: :func:`default_methods`)
    on the batch ``x``; returns the ``report.json`` payload (see DESIGN.md) with the controls
    under ``"controls"``. ``on_method`` gets the report so far after each method."""
    config = config or CheckConfig()
    x = x.detach()
    specs = list(default_methods(model, x, cam_layer) if methods is None else methods)
    if not specs:
        raise SalienceError("give at least one method to check")
    for spec in specs:
        from_spec(spec, cam_layer)  # unknown names and parameters fail before any work
    classes = resolve_classes(model, x, None, batch_size=config.batch_size)
    n = int(x.shape[0])
    report: dict[str, Any] = {
        "model": model_name or type(model).__name__,
        "samples": n,
        "methods": {},
        "controls": {},
        "classes": classes.tolist(),
        "device": str(x.device),
        "config": asdict(config),
        "caveat": CAVEAT,
        "status": "running",
    }
    if estimate is not None:
        report["estimate_seconds"] = round(estimate.total, 1)
    start = time.perf_counter()
    random: MethodCheck | None = None
    for spec, control in plan(specs):
        label = label_of(spec)
        section = report["controls" if control else "methods"]
        try:
            measured = measure(
                model,
                x,
                spec,
                classes,
                config,
                control=control,
                cam_layer=cam_layer,
                progress=progress,
                work=estimate.work(label) if estimate else lambda _step: 0.0,
                warmed=estimate is not None and spec in estimate.warmed,
            )
        except SalienceError as exc:  # e.g. a CAM on a model without spatial layers
            section[label] = failed(spec, str(exc))
            _report_progress(report, on_method)
            continue
        if spec == "random":
            random = measured
        section[label] = summarise(measured, config, random)
        if random is not None:
            reference = {**report["methods"], **report["controls"]}["random"]
            judge(section[label], label, reference, config, n)
        _report_progress(report, on_method)
    report["ranking"], report["recommendation"] = rank(report["methods"])
    report["seconds"] = round(time.perf_counter() - start, 1)
    report["status"] = "complete"
    report["methods"] = {label_of(s): report["methods"][label_of(s)] for s in dict.fromkeys(specs)}
    return report


def _report_progress(report: dict[str, Any], on_method: OnMethod | None) -> None:
    if on_method is not None:
        on_method(report)


def units(methods: Sequence[str]) -> int:
    """Progress stages of :func:`run_check` (for a progress bar's total)."""
    return len(plan(methods)) * len(STAGES)
