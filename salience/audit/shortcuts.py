"""Shortcut discovery over a run: which classes are decided from the wrong evidence.

Two complementary views, both per class (images grouped by their true label):

- With region masks: the distribution of each region's share of positive saliency, per class
  and per confusion cell. A class is flagged when correctly classified images put most of
  their saliency outside the region that should decide (``region``, default ``"uniform"``):
  "right for the wrong reasons" in the sense of Shared Interest's low saliency coverage
  (Boggust et al., CHI 2022).
- Always: SpRAy clusters (Lapuschkin et al., 2019; :mod:`salience.audit.spray`) with their
  size, share, mean map and location, accuracy and purity. Without masks a cluster is flagged
  when it is small, concentrated, consistently located and away from where the rest of its
  class looks (watermarks, borders, tags); with masks when its correctly classified images put
  most of their saliency outside the deciding region.
- Always: class-wide shortcuts (:mod:`salience.audit.class_shortcuts`), where every image of
  a class carries the cue and SpRAy sees one strategy; with a model, confirmed or refuted by
  masking and pasting the place (:mod:`salience.audit.intervention`).

Every class gets a ``kind`` (``"class"``, ``"cluster"``, ``"region"`` or None when not
flagged) and the ``box`` of its finding; ``findings`` lists the flagged ones of both kinds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from salience.audit.class_shortcuts import (
    ClassWideParams,
    class_box,
    class_wide,
    hottest_cells,
    peaks_in,
    share_in_box,
)
from salience.audit.spray import downsample, mass_centre, peak, spray, top_mass
from salience.errors import SalienceError
from salience.jsonsafe import json_safe
from salience.store import Run

if TYPE_CHECKING:
    from salience.models import LoadedModel

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


@dataclass(frozen=True)
class ShortcutParams:
    """Every knob of :func:`find_shortcuts`; recorded in ``shortcuts.json``."""

    region: str = "uniform"  # the region that should decide (masks only)
    min_inside: float = 0.5  # flag when the mean share inside the region is below this
    grid: int = 16  # SpRAy map size
    neighbors: int = 10  # kNN graph degree
    max_clusters: int = 8
    max_cluster_share: float = 0.5  # "small": at most this share of the class
    min_cluster_size: int = 3
    min_concentration: float = 0.25  # mass in the hottest 10% of the cluster's mean map
    min_consistency: float = 0.5  # members whose own peak is near the cluster's peak
    near: float = 0.15  # "near", as a fraction of the image side
    min_distance: float = 0.25  # cluster peak to the median of the class's image peaks
    examples: int = 6
    seed: int = 0
    max_spray: int = 1000  # SpRAy clusters a sample of this many maps per class, then assigns
    class_wide: ClassWideParams = field(default_factory=ClassWideParams)


NO_MODEL = "pass --model to test it"
CHUNK = 8192  # maps read and downsampled at a time


def find_shortcuts(
    run: Run,
    method: str | None = None,
    params: ShortcutParams = ShortcutParams(),
    model: LoadedModel | None = None,
    no_model: str = NO_MODEL,
) -> dict[str, Any]:
    """The ``shortcuts.json`` payload for ``run`` (see DESIGN.md and the module docstring).

    With ``model`` every class-wide finding is tested by intervention; without, it is reported
    from the maps as "not confirmed" followed by ``no_model`` (why there is no model)."""
    method = run.method(method)
    order = [c for c in ("shard", "row") if c in run.sample_columns()]
    samples = run.samples(["sample_id", "label", "pred", "correct", "error", *order])
    samples = samples[samples["error"].isna() & samples["label"].notna()]
    stats = run.stats(method)
    stats = stats[stats["error"].isna()]
    # region statistics only mean something with at least one annotated region
    regions = run.regions if any(r != "background" for r in run.regions) else []
    share_cols = {r: f"share_{run.region_columns.get(r, r)}" for r in regions}
    density_cols = {r: f"density_{run.region_columns.get(r, r)}" for r in regions}
    if regions and params.region not in regions:
        raise SalienceError(
            f"the run has no region {params.region!r}; choose --region from: "
            f"{', '.join(r for r in regions if r != 'background')}"
        )
    df = samples.merge(stats, on="sample_id", how="inner")
    if df.empty:
        raise SalienceError(f"the run has no {method} maps to analyse")
    df = df.sort_values(order).reset_index(drop=True) if order else df  # read maps in order
    grids = load_grids(run, df["sample_id"].tolist(), method, params.grid)
    classes, groups = [], {}
    for name in [c for c in run.class_names if c in set(df["label"])]:
        sel = (df["label"] == name).to_numpy()
        groups[name] = grids[sel]
        classes.append(_class_report(name, df[sel], groups[name], share_cols, density_cols, params))
    wide = class_wide(groups, params.class_wide)
    hottest = hottest_cells(groups)
    for report in classes:
        name = report["class"]
        if not share_cols:
            _distinct_clusters(report, hottest, (params.grid, params.grid), params)
        ids = df.loc[df["label"] == name, "sample_id"].astype(str).to_numpy()
        wide[name]["examples"] = ids[peaks_in(groups[name], tuple(wide[name]["box"]))][
            : params.examples
        ].tolist()
        _on_the_object(report, wide[name], params)
        if wide[name]["flagged"]:
            _confirm(run, df, name, wide[name], params, model, no_model)
        _combine(report, wide[name])
    payload = {
        "run": str(run.path),
        "method": method,
        "regions": regions,
        "deciding_region": params.region if regions else None,
        "params": asdict(params),
        "quantiles": list(QUANTILES),
        "flagged": [c["class"] for c in classes if c["flagged"]],
        "findings": [_finding(c) for c in classes if c["flagged"]],
        "classes": classes,
        "cells": _cells(df, share_cols) if regions else [],
    }
    return json_safe(payload)


def load_grids(run: Run, sample_ids: Sequence[str], method: str, grid: int) -> np.ndarray:
    """The maps of ``sample_ids`` as normalised ``[n, grid, grid]`` float32
    (:func:`salience.audit.spray.downsample`), read and reduced :data:`CHUNK` at a time."""
    out = np.empty((len(sample_ids), grid, grid), dtype=np.float32)
    for start in range(0, len(sample_ids), CHUNK):
        part = sample_ids[start : start + CHUNK]
        out[start : start + len(part)] = downsample(run.saliencies(part, method), grid)
    return out


def _mean_shares(frame: pd.DataFrame, cols: dict[str, str]) -> dict[str, float]:
    return {r: _num(frame[c].mean()) for r, c in cols.items() if c in frame}


def _quantiles(frame: pd.DataFrame, cols: dict[str, str]) -> dict[str, list[float]]:
    out = {}
    for r, c in cols.items():
        values = frame[c].dropna().to_numpy(float)
        if len(values):
            out[r] = [round(float(v), 4) for v in np.quantile(values, QUANTILES)]
    return out


def _num(value: Any) -> float:
    v = float(value)
    return round(v, 4) if np.isfinite(v) else float("nan")


def _class_report(
    name: str,
    group: pd.DataFrame,
    grids: np.ndarray,
    share_cols: dict[str, str],
    density_cols: dict[str, str],
    params: ShortcutParams,
) -> dict[str, Any]:
    """Region shares and SpRAy clusters of one class (``grids``: its normalised maps)."""
    correct = group["correct"].astype(bool).to_numpy()
    right = group[correct]
    report: dict[str, Any] = {
        "class": name,
        "count": len(group),
        "correct": int(correct.sum()),
        "accuracy": _num(correct.mean()),
        "region_share": _mean_shares(right, share_cols) if share_cols else {},
        "region_density": _mean_shares(right, density_cols) if share_cols else {},
        "region_share_quantiles": _quantiles(right, share_cols) if share_cols else {},
    }
    grids = grids.astype(np.float64)
    result = spray(
        grids.reshape(len(grids), -1),
        neighbors=params.neighbors,
        max_clusters=params.max_clusters,
        seed=params.seed,
        max_points=params.max_spray,
    )
    report["eigenvalues"] = [round(float(v), 4) for v in result.eigenvalues[:12]]
    # where the class typically looks: the median of the images' own peaks, which a minority
    # strategy (any cluster small enough to flag) cannot move far
    peaks = np.array([peak(g) for g in grids])
    typical = (float(np.median(peaks[:, 0])), float(np.median(peaks[:, 1])))
    clusters = [
        _cluster(result.labels == j, peaks, typical, grids, group, share_cols, density_cols, params)
        for j in range(result.k)
    ]
    report["clusters"] = clusters
    report["too_few"] = len(group) < min_images(params)
    if share_cols:
        kind, reason = _region_verdict(name, report, clusters, params)
    elif report["too_few"]:
        kind, reason = (
            None,
            (
                f"only {len(group)} image(s): too few to find strategies (SpRAy needs at least "
                f"{min_images(params)} per class)"
            ),
        )
    else:
        kind, reason = _spray_verdict(name, clusters, result.k)
    report["flagged"], report["kind"], report["reason"] = kind is not None, kind, reason
    return report


def min_images(params: ShortcutParams) -> int:
    """Images a class needs for SpRAy to tell a minority strategy from the rest: two clusters
    of the smallest size that can be flagged."""
    return 2 * params.min_cluster_size


def _cluster(
    members: np.ndarray,
    peaks: np.ndarray,
    typical: tuple[float, float],
    grids: np.ndarray,
    group: pd.DataFrame,
    share_cols: dict[str, str],
    density_cols: dict[str, str],
    params: ShortcutParams,
) -> dict[str, Any]:
    mean = grids[members].mean(0)
    py, px = peak(mean)
    own = peaks[members]
    consistency = float((np.hypot(own[:, 0] - py, own[:, 1] - px) <= params.near).mean())
    distance = float(np.hypot(typical[0] - py, typical[1] - px))
    part = group[members]
    correct = part["correct"].astype(bool).to_numpy()
    preds = part["pred"].value_counts()
    nearest = np.argsort(((grids[members] - mean) ** 2).sum(axis=(1, 2)))[: params.examples]
    size = int(members.sum())
    out: dict[str, Any] = {
        "size": size,
        "share": _num(size / len(members)),
        "flagged": False,
        "centroid": [round(v, 4) for v in mass_centre(mean)],
        "peak": [round(py, 4), round(px, 4)],
        "box": [round(float(v), 4) for v in class_box(mean, params.class_wide.level)],
        "concentration": _num(top_mass(mean)),
        "consistency": _num(consistency),
        "distance": _num(distance),
        "accuracy": _num(correct.mean()),
        "purity": _num(preds.iloc[0] / size) if size else float("nan"),
        "majority_pred": str(preds.index[0]) if size else None,
        "examples": part["sample_id"].iloc[nearest].astype(str).tolist(),
        "mean_map": np.round(mean / max(float(mean.max()), 1e-30), 3).tolist(),
    }
    if share_cols:
        right = part[correct] if correct.any() else part
        out["region_share"] = _mean_shares(right, share_cols)
        out["region_density"] = _mean_shares(right, density_cols)
        inside = out["region_share"].get(params.region, float("nan"))
        out["flagged"] = bool(size >= params.min_cluster_size and inside < params.min_inside)
    else:
        out["flagged"] = bool(
            params.min_cluster_size <= size
            and out["share"] <= params.max_cluster_share
            and out["concentration"] >= params.min_concentration
            and consistency >= params.min_consistency
            and distance >= params.min_distance
        )
    return out


def _region_verdict(
    name: str, report: dict[str, Any], clusters: list[dict[str, Any]], params: ShortcutParams
) -> tuple[str | None, str]:
    """The kind of finding (``"region"``, ``"cluster"`` or None) and its sentence."""
    shares, density = report["region_share"], report["region_density"]
    inside = shares.get(params.region, float("nan"))
    if report["correct"] == 0 or not np.isfinite(inside):
        return None, f"no correctly classified {name} images with {params.region} saliency"
    others = {r: d for r, d in density.items() if r not in (params.region, "background")}
    rival = max(others, key=lambda r: others[r]) if others else "background"
    where = (
        f"{rival!r} has density {density.get(rival, float('nan')):.1f} "
        f"vs {params.region!r} {density.get(params.region, float('nan')):.1f}"
    )
    if inside < params.min_inside:
        return "region", (
            f"correctly classified {name} images put {1 - inside:.0%} of their saliency outside "
            f"{params.region!r}; {where}"
        )
    odd = [c for c in clusters if c["flagged"]]
    if odd:
        c = max(odd, key=lambda c: c["size"])
        d = c["region_density"]
        worst = max((r for r in d if r != params.region), key=lambda r: d[r])
        return "cluster", (
            f"a cluster of {c['size']} {name} images ({c['share']:.0%}, accuracy "
            f"{c['accuracy']:.0%}) puts {1 - c['region_share'][params.region]:.0%} of its "
            f"saliency outside {params.region!r}; {worst!r} has density {d[worst]:.1f}"
        )
    return None, (
        f"{inside:.0%} of the saliency of correct {name} images is in {params.region!r}; {where}"
    )


def _distinct_clusters(
    report: dict[str, Any],
    hottest: dict[str, np.ndarray],
    shape: tuple[int, int],
    params: ShortcutParams,
) -> None:
    """Keep a SpRAy flag only where the other classes rarely look: the class's share of images
    peaking in the cluster's box must be ``min_contrast`` times the other classes' (median).
    Objects that move produce clusters by position in every class; a watermark does not."""
    dropped = 0
    for c in report["clusters"]:
        own, others = share_in_box(hottest, report["class"], tuple(c["box"]), shape)
        c["class_share"] = round(own, 4)
        c["other_share"] = None if others is None else round(others, 4)
        if c["flagged"] and others is not None and own < params.class_wide.min_contrast * others:
            c["flagged"], dropped = False, dropped + 1
    if dropped:
        kind, reason = _spray_verdict(report["class"], report["clusters"], len(report["clusters"]))
        if kind is None:
            reason += f" ({dropped} off to one side where other classes look as often)"
        report["flagged"], report["kind"], report["reason"] = kind is not None, kind, reason


def _spray_verdict(name: str, clusters: list[dict[str, Any]], k: int) -> tuple[str | None, str]:
    odd = [c for c in clusters if c["flagged"]]
    if not odd:
        return None, f"{k} saliency cluster(s); none small, tight and off to one side"
    c = max(odd, key=lambda c: c["concentration"])
    more = f" ({len(odd) - 1} more flagged cluster(s))" if len(odd) > 1 else ""
    return "cluster", (
        f"{c['size']} {name} images ({c['share']:.0%}) concentrate their saliency at the "
        f"{_place(c['peak'])} (y {c['peak'][0]:.2f}, x {c['peak'][1]:.2f}), away from the rest "
        f"of the class: look for a watermark, border or tag there{more}"
    )


def _on_the_object(report: dict[str, Any], entry: dict[str, Any], params: ShortcutParams) -> None:
    """With masks, a fixed place on the region that should decide is the object sitting
    still, not a shortcut: drop the class-wide flag and say why."""
    inside = report["region_share"].get(params.region)
    if not entry["flagged"] or inside is None or not np.isfinite(inside):
        return
    if inside >= params.min_inside:
        entry["flagged"] = False
        entry["evidence"] += (
            f", but {inside:.0%} of the saliency of correct {report['class']} images is "
            f"on {params.region!r}, the region that should decide"
        )


def _confirm(
    run: Run,
    df: pd.DataFrame,
    name: str,
    entry: dict[str, Any],
    params: ShortcutParams,
    model: LoadedModel | None,
    no_model: str,
) -> None:
    """Test a class-wide finding by intervention and say so in ``entry["evidence"]``; without
    a model (or images) the finding stays flagged and "not confirmed"."""
    from salience.audit.intervention import intervene

    entry["map_flagged"] = True
    if model is None:
        entry["evidence"] += f"; not confirmed: {no_model}"
        return
    wide = params.class_wide
    rng = np.random.default_rng(params.seed)
    own = df.loc[(df["label"] == name) & (df["pred"] == name), "sample_id"].astype(str)
    other = df.loc[(df["label"] != name) & (df["pred"] != name), "sample_id"].astype(str)
    pick = [
        sorted(rng.choice(ids.to_numpy(), min(len(ids), wide.intervention_images), False))
        for ids in (own, other)
    ]
    try:
        result = intervene(model, run, name, tuple(entry["box"]), pick[0], pick[1])
    except (SalienceError, OSError) as exc:
        entry["evidence"] += f"; not confirmed: the intervention failed ({exc})"
        return
    entry["intervention"] = result
    removed, pasted = result["removed"], result["pasted"]
    # removal decides: a piece of a real object pasted elsewhere can move a model too
    effect = None if removed is None else removed - (result["removed_control"] or 0.0)
    entry["confirmed"] = effect is not None and effect >= wide.min_effect
    entry["flagged"] = entry["confirmed"]
    told = (
        f"filling the box changes {_pct(removed)} of the model's {name} decisions (a box "
        f"elsewhere: {_pct(result['removed_control'])}) and pasting it into other classes' "
        f"images makes {_pct(pasted)} of them {name} (elsewhere: "
        f"{_pct(result['pasted_control'])})"
    )
    entry["evidence"] += (
        f"; {told}: confirmed, look for a logo, border or mark there"
        if entry["confirmed"]
        else f"; but {told}: the model does not depend on it"
    )


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.0%}"


def _combine(report: dict[str, Any], entry: dict[str, Any]) -> None:
    """Add the class-wide finding to a class's report: a class-wide flag comes first."""
    report["class_wide"] = entry
    report["box"] = None
    if entry["flagged"]:
        also = f"; also: {report['reason']}" if report["flagged"] else ""
        report["reason"] = f"class-wide: {entry['evidence']}{also}"
        report["flagged"], report["kind"], report["box"] = True, "class", entry["box"]
        return
    if entry.get("map_flagged"):  # refuted by the intervention: say so
        report["reason"] += f"; class-wide check: {entry['evidence']}"
    if report["kind"] == "cluster":
        odd = [c for c in report["clusters"] if c["flagged"]]
        report["box"] = max(odd, key=lambda c: c["concentration"])["box"] if odd else None


def _finding(report: dict[str, Any]) -> dict[str, Any]:
    """One flagged class as a row of ``findings``: what kind, where, how many, why."""
    wide = report["class_wide"]
    odd = [c for c in report["clusters"] if c["flagged"]]
    cluster = max(odd, key=lambda c: c["concentration"]) if odd else None
    if report["kind"] == "class":
        share, examples, confirmed = wide["share"], wide["examples"], wide["confirmed"]
    elif cluster is not None:
        share, examples, confirmed = cluster["share"], cluster["examples"], None
    else:
        share, examples, confirmed = None, [], None
    return {
        "class": report["class"],
        "kind": report["kind"],
        "box": report["box"],
        "share": share,
        "confirmed": confirmed,
        "reason": report["reason"],
        "examples": examples,
    }


def _place(yx: list[float]) -> str:
    y, x = yx
    v = "top" if y < 1 / 3 else "bottom" if y > 2 / 3 else "middle"
    h = "left" if x < 1 / 3 else "right" if x > 2 / 3 else "centre"
    return "centre" if (v, h) == ("middle", "centre") else f"{v} {h}"


def _cells(df: pd.DataFrame, share_cols: dict[str, str]) -> list[dict[str, Any]]:
    cells = []
    for (true, pred), g in df.groupby(["label", "pred"], sort=True):
        cells.append(
            {
                "true": str(true),
                "pred": str(pred),
                "count": len(g),
                "region_share": _mean_shares(g, share_cols),
                "region_share_quantiles": _quantiles(g, share_cols),
            }
        )
    return cells
