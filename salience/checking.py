"""``salience check``: which saliency methods can be trusted for this model?

For each method (and the ``random`` and ``constant`` controls) on a batch of images:
cascading model randomization (Adebayo et al., 2018) with the similarity per stage,
deletion and insertion (Petsiuk et al., 2018), ROAD most- and least-relevant-first (Rong et al.,
2022), max-sensitivity (Yeh et al., 2019), sparseness and complexity, and the cost per image.
A method is trusted when its maps change as the weights are randomized (Spearman |map| below
``max_similarity`` both on average over the cascade, i.e. the area under Adebayo's curve, and
once fully random) and it ranks pixels better than the ``random`` control: its excess over
random in insertion-minus-deletion and in ROAD LeRF-minus-MoRF is at least ``margin`` on
average, and neither is below random by more than ``margin`` (the two protocols remove pixels
differently: a fixed colour leaks the mask's shape, imputation does not). These are
necessary conditions, not proof (Binder et al., 2023); the report says so.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from salience import metrics
from salience.errors import SalienceError
from salience.methods import from_spec
from salience.methods.spec import parse_method_spec
from salience.metrics import MetricResult
from salience.metrics._common import resolve_classes
from salience.metrics._registry import seeded

DEFAULT_METHODS = ("gradient", "integrated_gradients", "guided_backprop", "gradcam")
CONTROLS = ("random", "constant")
STEPS = ("explain", "randomization", "deletion", "insertion", "road", "sensitivity", "complexity")
CAVEAT = (
    "Passing these checks is necessary, not sufficient: uninformative maps can pass "
    "randomization tests (Binder et al., CVPR 2023), and perturbation metrics depend on how "
    "pixels are removed. Compare every method with the random and constant controls."
)
DESIGN_NUMBERS = (
    "randomization_similarity",
    "deletion_auc",
    "insertion_auc",
    "road_morf",
    "road_lerf",
    "max_sensitivity",
    "sparseness",
    "ms_per_image",
)
Progress = Callable[[str], None]


@dataclass(frozen=True)
class CheckConfig:
    """Every setting of a check; recorded in the report."""

    steps: int = 20  # deletion/insertion steps
    road_percentages: tuple[float, ...] = (0.1, 0.3, 0.5, 0.7, 0.9)
    layers: int | None = 8  # randomization stages (None: every layer)
    sensitivity_samples: int = 8
    radius: float = 0.2
    max_similarity: float = 0.5
    margin: float = 0.05
    seed: int = 0
    batch_size: int | None = None


@dataclass
class MethodCheck:
    """The measurements of one method, before they are summarised."""

    name: str
    spec: str
    control: bool
    ms_per_image: float
    results: dict[str, MetricResult] = field(default_factory=dict)


def _sync(x: torch.Tensor) -> None:
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)


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
) -> MethodCheck:
    """Run every check metric for one method spec (``name[:key=value,...]``)."""
    method = from_spec(spec, cam_layer)
    name = method.name
    tick = progress or (lambda _step: None)
    with seeded(config.seed):  # warm-up: layer probes and chunk sizes are not the method's cost
        method.explain(model, x[:1], classes[:1])
    _sync(x)
    start = time.perf_counter()
    with seeded(config.seed):
        maps = method.explain(model, x, classes)
    _sync(x)
    ms = 1000 * (time.perf_counter() - start) / x.shape[0]
    out = MethodCheck(name, spec, control, ms)
    tick("explain")
    seed, bs = config.seed, config.batch_size
    out.results["randomization"] = metrics.model_randomization(
        model,
        x,
        method,
        classes,
        layers=config.layers,
        extra_similarities=("spearman", "ssim", "hog"),
        seed=seed,
    )
    tick("randomization")
    out.results["deletion"] = metrics.deletion(
        model, x, maps, classes, steps=config.steps, batch_size=bs, seed=seed
    )
    tick("deletion")
    out.results["insertion"] = metrics.insertion(
        model, x, maps, classes, steps=config.steps, batch_size=bs, seed=seed
    )
    tick("insertion")
    for order, fn in (("road_morf", metrics.road_morf), ("road_lerf", metrics.road_lerf)):
        out.results[order] = fn(
            model,
            x,
            maps,
            classes,
            percentages=config.road_percentages,
            batch_size=bs,
            seed=seed,
        )
    tick("road")
    out.results["max_sensitivity"] = metrics.max_sensitivity(
        model,
        x,
        method,
        classes,
        radius=config.radius,
        samples=config.sensitivity_samples,
        seed=seed,
    )
    tick("sensitivity")
    out.results["sparseness"] = metrics.sparseness(maps)
    out.results["complexity"] = metrics.complexity(maps)
    tick("complexity")
    return out


def _num(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) or math.isinf(value) else round(value, 6)


def _mean_curve(r: MetricResult, key: str = "scores") -> list[float | None]:
    return [_num(float(v)) for v in r.curves[key].double().nanmean(0)]


def summarise(m: MethodCheck) -> dict[str, Any]:
    """The report entry of one method: the DESIGN keys plus curves and parameters."""
    r = m.results
    rand = r["randomization"]
    entry: dict[str, Any] = {
        "randomization_similarity": _num(rand.value),
        "randomization_mean": _num(float(rand.curves["similarity"].double().nanmean())),
        "randomization_top": _num(float(rand.curves["similarity"][:, 0].double().nanmean())),
        "deletion_auc": _num(r["deletion"].value),
        "insertion_auc": _num(r["insertion"].value),
        "road_morf": _num(r["road_morf"].value),
        "road_lerf": _num(r["road_lerf"].value),
        "max_sensitivity": _num(r["max_sensitivity"].value),
        "sparseness": _num(r["sparseness"].value),
        "ms_per_image": round(m.ms_per_image, 3),
        "trusted": False,
        "verdict": "",
        "spec": m.spec,
        "control": m.control,
        "complexity": _num(r["complexity"].value),
        "insertion_minus_deletion": _num(r["insertion"].value - r["deletion"].value),
        "road_lerf_minus_morf": _num(r["road_lerf"].value - r["road_morf"].value),
        "randomization": {
            "layers": rand.details["layers"],
            **{
                k.removeprefix("similarity_"): _mean_curve(rand, k)
                for k in rand.curves
                if k.startswith("similarity_")
            },
        },
        "curves": {
            "fraction": [float(v) for v in r["deletion"].curves["fraction"]],
            "deletion": _mean_curve(r["deletion"]),
            "insertion": _mean_curve(r["insertion"]),
            "road_fraction": [float(v) for v in r["road_morf"].curves["fraction"]],
            "road_morf": _mean_curve(r["road_morf"]),
            "road_lerf": _mean_curve(r["road_lerf"]),
            "road_morf_accuracy": _mean_curve(r["road_morf"], "correct"),
            "road_lerf_accuracy": _mean_curve(r["road_lerf"], "correct"),
        },
        "per_image": {k: [_num(float(v)) for v in res.scores] for k, res in r.items()},
        "road_seconds": {
            "imputation": round(
                r["road_morf"].details["imputation_seconds"]
                + r["road_lerf"].details["imputation_seconds"],
                4,
            ),
            "forward": round(
                r["road_morf"].details["forward_seconds"]
                + r["road_lerf"].details["forward_seconds"],
                4,
            ),
        },
    }
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


def judge(entry: dict[str, Any], name: str, random: dict[str, Any], config: CheckConfig) -> None:
    """Set ``trusted`` and a plain-words ``verdict`` from the method's and the random
    control's numbers (rules in the module docstring)."""
    if entry["control"]:
        entry["verdict"] = f"{name}: a control, the reference line every method must beat"
        return
    full, mean, top = (
        entry[k] for k in ("randomization_similarity", "randomization_mean", "randomization_top")
    )
    gap, gap_r = entry["insertion_minus_deletion"], random["insertion_minus_deletion"]
    road, road_r = entry["road_lerf_minus_morf"], random["road_lerf_minus_morf"]
    numbers = [full, mean, top, gap, gap_r, road, road_r]
    if any(v is None for v in numbers):
        entry["verdict"] = f"{name}: some checks gave no number (NaN maps?); do not rely on it"
        return
    sensitive = full < config.max_similarity and mean < config.max_similarity
    excess = (gap - gap_r, road - road_r)  # how much better than random, by each protocol
    faithful = sum(excess) / 2 >= config.margin and min(excess) >= -config.margin
    entry["trusted"] = sensitive and faithful
    evidence = (
        f"insertion minus deletion {gap:.2f} vs {gap_r:.2f} for random, ROAD LeRF "
        f"minus MoRF {road:.2f} vs {road_r:.2f}"
    )
    if not sensitive:
        entry["verdict"] = (
            f"{name}: its maps barely change when the model's weights are randomized "
            f"(similarity {top:.2f} with the top layers random, {mean:.2f} on average over the "
            f"cascade, {full:.2f} once fully random; the random control scores "
            f"{random['randomization_similarity']:.2f}); do not use it to explain this model"
        )
    elif not faithful:
        entry["verdict"] = (
            f"{name}: its maps depend on the learned weights, but the pixels it ranks highest "
            f"matter no more than a random ranking ({evidence}); do not rely on it for this "
            "model"
        )
    else:
        entry["verdict"] = (
            f"{name}: its maps depend on the learned weights (similarity {mean:.2f} on average "
            f"over the randomization cascade) and pick out pixels that drive the prediction "
            f"({evidence}); usable for this model"
        )
    sens = entry["max_sensitivity"]
    if sens is not None and sens > 1:
        entry["verdict"] += (
            f"; beware, its maps change more than their own size under small input noise "
            f"(max-sensitivity {sens:.2f})"
        )


def run_check(
    model: nn.Module,
    x: torch.Tensor,
    methods: Sequence[str] = DEFAULT_METHODS,
    *,
    config: CheckConfig | None = None,
    model_name: str | None = None,
    cam_layer: str | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Check ``methods`` (specs ``name[:key=value,...]``) on the batch ``x``; returns the
    ``report.json`` payload (see DESIGN.md) with the controls under ``"controls"``."""
    config = config or CheckConfig()
    if not methods:
        raise SalienceError("give at least one method to check")
    for spec in methods:
        from_spec(spec, cam_layer)  # unknown names and parameters fail before any work
    x = x.detach()
    classes = resolve_classes(model, x, None, batch_size=config.batch_size)
    controls = [c for c in CONTROLS if c not in methods]
    entries: dict[str, dict[str, Any]] = {}
    for spec in dict.fromkeys([*methods, *controls]):
        label = spec if ":" in spec else parse_method_spec(spec)[0]
        try:
            measured = measure(
                model,
                x,
                spec,
                classes,
                config,
                control=spec in controls,
                cam_layer=cam_layer,
                progress=progress,
            )
        except SalienceError as exc:  # e.g. a CAM on a model without spatial layers
            entries[label] = failed(spec, str(exc))
            continue
        entries[label] = summarise(measured)
    random = entries["random"]
    for label, entry in entries.items():
        if "error" not in entry:
            judge(entry, label, random, config)
    return {
        "model": model_name or type(model).__name__,
        "samples": int(x.shape[0]),
        "methods": {k: v for k, v in entries.items() if not v["control"]},
        "controls": {k: v for k, v in entries.items() if v["control"]},
        "classes": classes.tolist(),
        "device": str(x.device),
        "config": asdict(config),
        "caveat": CAVEAT,
    }


def units(methods: Sequence[str]) -> int:
    """Progress ticks of :func:`run_check` (for a progress bar's total)."""
    extra = sum(1 for c in CONTROLS if c not in methods)
    return (len(methods) + extra) * len(STEPS)


def load_batch(
    data: str | Path,
    preprocess: Callable[[Any], torch.Tensor],
    samples: int,
    device: torch.device,
    root: str | Path | None = None,
) -> tuple[torch.Tensor, list[str]]:
    """``samples`` images spread evenly over an image folder (class sub-folders, or just
    images when no labels are needed) or a manifest (paths under ``root``), preprocessed.
    An unreadable image is replaced by the next readable one; with none, the error says how
    many rows were refused and why."""
    from salience.data import read_dataset, refused
    from salience.images import IMAGE_SUFFIXES, load_image

    if samples < 1:
        raise SalienceError("--samples must be >= 1")
    note = None
    try:
        dataset = read_dataset(data, root)
        paths = [str(dataset.root / i.path) for i in dataset.items if i.error is None]
        note = refused(dataset.items)
    except SalienceError:
        folder = Path(data)
        if root is not None or not folder.is_dir():
            raise
        paths = sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise
    count = min(samples, len(paths))
    spread = [(k * len(paths)) // count for k in range(count)]
    order = [*spread, *sorted(set(range(len(paths))) - set(spread))]  # then the others
    picked: list[str] = []
    tensors: list[torch.Tensor] = []
    unreadable: list[str] = []
    for k in order:
        if len(picked) == count:
            break
        try:
            tensors.append(preprocess(load_image(paths[k])))
        except SalienceError as exc:
            unreadable.append(str(exc))
            continue
        picked.append(paths[k])
    if not picked:
        reasons = [note] if note else []
        if unreadable:
            reasons.append(f"{len(unreadable)} unreadable (e.g. {unreadable[0]})")
        raise SalienceError(f"no readable images in {data}: {'; '.join(reasons) or 'none found'}")
    return torch.stack(tensors).to(device), picked
