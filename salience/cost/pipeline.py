"""``salience cost``: what each method costs and what cheaper settings change in its maps.

For every method the reference is the method with the given parameters on the model as given
(fp32). Each cheaper setting (see :mod:`salience.cost.variants`) is timed after a warm-up and
its maps compared with the reference maps (:mod:`salience.cost.fidelity`); the recommendation
is the cheapest setting above the fidelity thresholds (:mod:`salience.cost.recommend`). A
setting that fails (a model FX cannot trace, a missing compiler) is recorded with its error.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from salience._guard import model_guard
from salience.cost.fidelity import CURVE_STEPS, TOP_FRACTION, Faithfulness, faithfulness, fidelity
from salience.cost.measure import measure
from salience.cost.prune import parameter_count, pruned
from salience.cost.quantize import int8_dynamic, int8_static
from salience.cost.recommend import frontier, recommend
from salience.cost.variants import KINDS, PRUNE_RATIOS, Variant, variants
from salience.errors import SalienceError
from salience.methods import build_method, with_model_layer
from salience.models.layers import auto_layer
from salience.models.settings import ModelSettings, apply_settings, device_of

Step = Callable[[str], None]


@dataclass(frozen=True)
class CostConfig:
    """What to measure and the thresholds of the recommendation."""

    kinds: tuple[str, ...] = KINDS
    ratios: tuple[float, ...] = PRUNE_RATIOS
    min_spearman: float = 0.9
    min_topk_iou: float = 0.0
    compile_backend: str = "inductor"


@dataclass
class _Models:
    """The model under each setting, built once on first use; errors kept as text."""

    model: nn.Module
    x: torch.Tensor
    config: CostConfig
    built: dict[tuple[str, str | None], nn.Module | str] = field(default_factory=dict)
    build_s: dict[tuple[str, str | None], float] = field(default_factory=dict)

    def get(self, kind: str, layer: str | None) -> nn.Module | str:
        key = (kind, layer if kind == "int8_static" else None)
        if key not in self.built:
            start = time.perf_counter()
            try:
                self.built[key] = self._build(kind, layer)
            except Exception as exc:  # a setting this model cannot take is a result
                self.built[key] = _one_line(exc)
            self.build_s[key] = time.perf_counter() - start
        return self.built[key]

    def _build(self, kind: str, layer: str | None) -> nn.Module:
        if kind == "reference":
            return self.model
        if kind in ("bf16", "fp16"):
            return apply_settings(self.model, ModelSettings(precision=kind))  # type: ignore[arg-type]
        if kind == "compile":
            backend = self.config.compile_backend
            return apply_settings(self.model, ModelSettings(compile=True, compile_backend=backend))
        if kind == "int8_dynamic":
            return int8_dynamic(self.model)
        if kind == "int8_static":
            return int8_static(self.model, self.x, layer)
        if kind.startswith("pruned_"):
            return pruned(self.model, float(kind.removeprefix("pruned_")), self.x)
        raise SalienceError(f"unknown setting {kind!r}")


def _one_line(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    return first if isinstance(exc, SalienceError) else f"{type(exc).__name__}: {first}"


def measure_cost(
    model: nn.Module,
    x: torch.Tensor,
    methods: Mapping[str, dict[str, Any]],
    *,
    config: CostConfig | None = None,
    cam_layer: str | None = None,
    on_step: Step | None = None,
    on_plan: Callable[[int, float], None] | None = None,
) -> dict[str, Any]:
    """Cost and fidelity of every method (name -> parameters) under every cheaper setting.

    ``on_plan(total, estimate_s)`` is called once the references are timed, with the number of
    measurements left and their estimated seconds; ``on_step(what)`` after each measurement.
    Returns the ``cost.json`` payload.
    """
    cfg = config or CostConfig()
    device = device_of(model)
    x = x.detach().to(device)
    with torch.no_grad(), model_guard(model):
        target = model(x).argmax(1)  # every setting explains the reference's prediction
    models = _Models(model, x, cfg)
    plans: dict[str, list[Variant]] = {}
    refs: dict[str, tuple[torch.Tensor, Faithfulness, dict[str, Any]]] = {}
    for name, raw in methods.items():
        params = _with_layer(name, raw, model, x, cam_layer)
        plans[name] = variants(
            name, params, kinds=cfg.kinds, device_type=device.type, ratios=cfg.ratios
        )
        maps, row = _run(models, name, plans[name][0], x, target)
        if isinstance(maps, str):
            raise SalienceError(f"{name} failed on the model as given: {maps}")
        faith = faithfulness(model, x, maps, target)
        refs[name] = (maps, faith, row)
        if on_step is not None:
            on_step(f"{name} reference")
    if on_plan is not None:
        left = sum(len(v) - 1 for v in plans.values())
        per = {n: refs[n][2]["ms_per_image"] * x.shape[0] / 1000 for n in refs}
        on_plan(left, sum(2 * per[n] * (len(plans[n]) - 1) for n in plans))
    table: dict[str, dict[str, dict[str, Any]]] = {}
    for name, plan in plans.items():
        ref_maps, ref_faith, ref_row = refs[name]
        table[name] = {
            "reference": {**ref_row, **fidelity(ref_maps, ref_maps, ref_faith, ref_faith)}
        }
        for variant in plan[1:]:
            maps, row = _run(models, name, variant, x, target)
            if not isinstance(maps, str):
                faith = faithfulness(model, x, maps, target)
                row.update(fidelity(ref_maps, maps, ref_faith, faith))
            table[name][variant.name] = row
            if on_step is not None:
                on_step(f"{name} {variant.name}")
    return {
        "methods": table,
        "recommended": {
            n: recommend(rows, cfg.min_spearman, cfg.min_topk_iou) for n, rows in table.items()
        },
        "frontier": {n: frontier(rows) for n, rows in table.items()},
        "thresholds": {"min_spearman": cfg.min_spearman, "min_topk_iou": cfg.min_topk_iou},
        "samples": int(x.shape[0]),
        "device": str(device),
        "parameters": _parameter_counts(models),
        "fidelity": {"top_fraction": TOP_FRACTION, "curve_steps": CURVE_STEPS},
    }


def _with_layer(
    name: str, params: dict[str, Any], model: nn.Module, x: torch.Tensor, cam_layer: str | None
) -> dict[str, Any]:
    """CAM methods get one fixed layer, so that every setting explains the same layer."""
    return with_model_layer(
        name, dict(params), cam_layer or (lambda: auto_layer(model, x[:1]).name)
    )


def _run(
    models: _Models, name: str, variant: Variant, x: torch.Tensor, target: torch.Tensor
) -> tuple[torch.Tensor | str, dict[str, Any]]:
    """Maps of ``variant`` (or its error) and its cost row."""
    row: dict[str, Any] = {
        "ms_per_image": None,
        "peak_mb": None,
        "spearman": None,
        "topk_iou": None,
        "deletion_delta": None,
        "kind": variant.kind,
        "params": {k: v for k, v in variant.params.items() if k != "layer"},
    }
    layer = variant.params.get("layer")
    model = models.get(variant.model, layer)
    if isinstance(model, str):
        return model, {**row, "error": model}
    row["build_s"] = models.build_s.get((variant.model, layer), 0.0)
    try:
        method = build_method(name, **variant.params)
        warm = x if variant.model == "compile" else x[:1]  # compile: the measured shapes
        start = time.perf_counter()
        method.explain(model, warm, target[: warm.shape[0]])
        row["warmup_s"] = time.perf_counter() - start
        maps, cost = measure(lambda: method.explain(model, x, target), x.device)
    except Exception as exc:  # e.g. an op without an int8 kernel: recorded, not raised
        return _one_line(exc), {**row, "error": _one_line(exc)}
    row["ms_per_image"] = 1000 * cost.seconds / x.shape[0]
    row["peak_mb"] = cost.peak_mb
    row["agreement"] = _agreement(model, x, target)
    return maps.float(), row


def _agreement(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> float:
    """Share of images the setting's model predicts the reference's class for."""
    with torch.no_grad(), model_guard(model):
        return float((model(x).argmax(1) == target).double().mean())


def _parameter_counts(models: _Models) -> dict[str, int]:
    """Parameters of the reference and of each pruned copy that was built."""
    out = {"reference": parameter_count(models.model)}
    for (kind, _), built in models.built.items():
        if kind.startswith("pruned_") and isinstance(built, nn.Module):
            out[kind] = parameter_count(built)
    return out
