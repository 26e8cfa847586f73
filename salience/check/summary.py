"""A method's ``report.json`` entry: the numbers of the check table, each with its bootstrap
interval over images, plus the curves the HTML page plots."""

from __future__ import annotations

from typing import Any

import torch

from salience.check.config import CheckConfig
from salience.check.intervals import interval, resample_indices, rounded
from salience.check.measure import MethodCheck
from salience.check.steps import FAITHFULNESS, NUMBERS, OVER_RANDOM, STEPS, Results, entry_numbers
from salience.jsonsafe import finite
from salience.methods.spec import parse_method_spec
from salience.metrics import MetricResult
from salience.metrics._result import finite_mean

# Every number of a report entry, from the check table (DESIGN.md's report.json keys among them).
DESIGN_NUMBERS = tuple(n.key for n in entry_numbers())


def _mean_curve(r: MetricResult, key: str = "scores") -> list[float | None]:
    return [finite(v, 6) for v in r.curves[key].double().nanmean(0).tolist()]


def _curves(results: Results) -> dict[str, list[float | None]]:
    """The mean curve of every step that has one (``CheckStep.curve``) with its x values (the
    first step's where steps share them), then the accuracy curves of those that record one."""
    out: dict[str, list[float | None]] = {}
    plotted = [s for s in STEPS if s.curve]
    for step in plotted:
        r = results[step.name]
        out.setdefault(step.curve, [float(v) for v in r.curves["fraction"]])
        out[step.name] = _mean_curve(r)
    for step in plotted:
        if "correct" in results[step.name].curves:
            out[f"{step.name}_accuracy"] = _mean_curve(results[step.name], "correct")
    return out


def _seconds(results: Results, part: str) -> float:
    """Seconds spent on ``part`` by the steps that time it (ROAD's imputation and forwards)."""
    key = f"{part}_seconds"
    return round(sum(r.details[key] for r in results.values() if key in r.details), 4)


def per_image_numbers(m: MethodCheck, random: MethodCheck | None) -> dict[str, torch.Tensor]:
    """Every number of the table, one value per image (over-random ones need ``random``)."""
    out = {n.key: n.per_image(m.results).double() for n in NUMBERS}
    if random is not None:
        for n in OVER_RANDOM:
            out[n.key] = n.per_image(m.results).double() - n.per_image(random.results).double()
        margins = torch.stack([out[n.key] for n in OVER_RANDOM])
        out[FAITHFULNESS.key] = margins.mean(0)
    return out


def summarise(
    m: MethodCheck, config: CheckConfig, random: MethodCheck | None = None
) -> dict[str, Any]:
    """The report entry of one method: the DESIGN keys, every table number with its interval,
    curves, per-image scores and parameters."""
    r = m.results
    values = per_image_numbers(m, random)
    n = next(iter(values.values())).numel()
    draws = resample_indices(n, config.resamples, config.seed)
    rand = r["randomization"]
    entry: dict[str, Any] = {key: finite(finite_mean(v), 6) for key, v in values.items()}
    entry.update(
        ms_per_image=round(m.ms_per_image, 3),
        trusted=False,
        verdict="",
        spec=m.spec,
        control=m.control,
        intervals={key: rounded(interval(v, draws, config.level)) for key, v in values.items()},
        randomization={
            "layers": rand.details["layers"],
            **{
                k.removeprefix("similarity_"): _mean_curve(rand, k)
                for k in rand.curves
                if k.startswith("similarity_")
            },
        },
        curves=_curves(r),
        per_image={k: [finite(v, 6) for v in res.scores.tolist()] for k, res in r.items()},
        road_seconds={part: _seconds(r, part) for part in ("imputation", "forward")},
    )
    return entry


def failed(spec: str, reason: str) -> dict[str, Any]:
    """The report entry of a method that could not run on this model."""
    name = parse_method_spec(spec)[0]
    entry: dict[str, Any] = dict.fromkeys(DESIGN_NUMBERS)
    entry.update(
        spec=spec,
        control=False,
        trusted=False,
        error=reason,
        verdict=f"{name}: could not run on this model ({reason})",
    )
    return entry
