"""Two runs over the same images: what changed in accuracy and in where the model looks.

Per image the maps of run A and run B are compared with Spearman's rank correlation, SSIM
(Wang et al., IEEE TIP 2004; maps min-max scaled to 0..1) and the IoU of their top pixels;
with masks, the share of positive saliency per region gives the region shift (B minus A).

Noise floor: a change is only called real above it.

- Region shift: the paired bootstrap over images (Efron & Tibshirani, 1993): the ``level``
  quantile of ``|resampled mean shift - observed shift|``. With a reference run (A's model
  retrained with another seed, or A re-audited with a stochastic method), the floor is at
  least the shift between A and the reference.
- Per image: with a reference run, the 5th percentile of the similarity between A and the
  reference; without one, the median similarity between A's maps of two different images of
  the same class ("other images": B's map of an image agrees with A's no better than A's maps
  of two different images agree). A *silent change* is an image with the same prediction in
  A and B whose Spearman similarity is at or below that floor.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from scipy.stats import rankdata
from skimage.metrics import structural_similarity

from salience.errors import SalienceError
from salience.jsonsafe import finite, json_safe
from salience.store import Run

SIMILARITIES = ("spearman", "ssim", "topk_iou")


@dataclass(frozen=True)
class CompareParams:
    """Every knob of :func:`compare_runs`; recorded in ``compare.json``."""

    top_fraction: float = 0.1  # top-k IoU keeps this share of pixels
    level: float = 0.99  # bootstrap quantile of the region-shift floor
    resamples: int = 1000
    reference_quantile: float = 0.05  # per-image floor from a reference run
    listed: int = 100  # sample ids listed per group (all are counted)
    seed: int = 0


def _outcomes(run: Run) -> pd.DataFrame:
    df = run.samples(["sample_id", "path", "label", "pred", "correct", "error"])
    df = df[df["error"].isna() & df["pred"].notna() & df["label"].notna()]
    return df.drop(columns="error").set_index("sample_id")


def _maps(run: Run, ids: list[str], method: str, size: tuple[int, int]) -> np.ndarray:
    maps = run.saliencies(ids, method)
    if maps.shape[1:] != size:
        maps = F.interpolate(
            torch.from_numpy(maps)[:, None], size=size, mode="bilinear", align_corners=False
        )[:, 0].numpy()
    return maps.astype(np.float64)


def map_similarity(
    a: np.ndarray, b: np.ndarray, top_fraction: float = 0.1
) -> dict[str, np.ndarray]:
    """Per-pair Spearman, SSIM and top-k IoU of maps ``[n, h, w]`` (NaN where undefined)."""
    n = len(a)
    if n == 0:
        return {k: np.empty(0) for k in ("spearman", "ssim", "topk_iou")}
    fa, fb = a.reshape(n, -1), b.reshape(n, -1)
    ra, rb = rankdata(fa, axis=1), rankdata(fb, axis=1)
    ra -= ra.mean(1, keepdims=True)
    rb -= rb.mean(1, keepdims=True)
    denom = np.sqrt((ra**2).sum(1) * (rb**2).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        spearman = np.where(denom > 0, (ra * rb).sum(1) / denom, np.nan)
    k = max(1, round(top_fraction * fa.shape[1]))
    top_a = np.zeros_like(fa, dtype=bool)
    top_b = np.zeros_like(fb, dtype=bool)
    np.put_along_axis(top_a, np.argpartition(-fa, k - 1, axis=1)[:, :k], True, axis=1)
    np.put_along_axis(top_b, np.argpartition(-fb, k - 1, axis=1)[:, :k], True, axis=1)
    iou = (top_a & top_b).sum(1) / (top_a | top_b).sum(1)
    ok = np.isfinite(fa).all(1) & np.isfinite(fb).all(1)
    spearman = np.where(ok, spearman, np.nan)
    iou = np.where(ok, iou, np.nan)
    ssim = np.full(n, np.nan)
    for i in range(n):
        x, y = _unit(a[i]), _unit(b[i])
        if x is not None and y is not None and min(x.shape) >= 7:
            ssim[i] = structural_similarity(x, y, data_range=1.0)
    return {"spearman": spearman, "ssim": ssim, "topk_iou": iou.astype(np.float64)}


def _unit(m: np.ndarray) -> np.ndarray | None:
    lo, hi = float(np.nanmin(m)), float(np.nanmax(m))
    if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
        return None
    return (m - lo) / (hi - lo)


def bootstrap_floor(diff: np.ndarray, params: CompareParams) -> float:
    """The ``level`` quantile of ``|mean of a resample - mean|`` of paired differences."""
    d = diff[np.isfinite(diff)]
    if len(d) < 2:
        return float("nan")
    rng = np.random.default_rng(params.seed)
    idx = rng.integers(0, len(d), size=(params.resamples, len(d)))
    return float(np.quantile(np.abs(d[idx].mean(1) - d.mean()), params.level))


def _region_shares(run: Run, method: str, ids: list[str]) -> pd.DataFrame:
    cols = {f"share_{run.region_columns.get(r, r)}": r for r in run.regions}
    stats = run.stats(method).set_index("sample_id")
    present = [c for c in cols if c in stats]
    return stats.reindex(ids)[present].rename(columns=cols)


def _other_images(a: np.ndarray, labels: np.ndarray, params: CompareParams) -> np.ndarray:
    """Each map against the map of another image with the same label (same run)."""
    rng = np.random.default_rng(params.seed)
    partner = np.arange(len(labels))
    for label in np.unique(labels):
        idx = np.flatnonzero(labels == label)
        if len(idx) > 1:
            partner[idx] = np.roll(rng.permutation(idx), 1)
    keep = partner != np.arange(len(labels))
    return map_similarity(a[keep], a[partner[keep]], params.top_fraction)["spearman"]


def _listed(ids: pd.Index, params: CompareParams) -> dict[str, Any]:
    return {"count": len(ids), "sample_ids": [str(i) for i in ids[: params.listed]]}


def _round(d: dict[str, Any]) -> dict[str, Any]:
    return {k: finite(v, 4) for k, v in d.items()}


def _reference_floor(
    a: Run,
    reference: Run,
    ids: list[str],
    method: str,
    size: tuple[int, int],
    shares_a: pd.DataFrame,
    floor: dict[str, float],
    params: CompareParams,
) -> dict[str, float]:
    """Per-image similarity floor from A against the reference; raises the region floors to
    at least the reference's own shift (in place)."""
    known = set(_outcomes(reference).index)
    ref_ids = [i for i in ids if i in known]
    if len(ref_ids) < len(ids) // 2:
        raise SalienceError(
            "the reference run shares too few images with run A; audit the same data"
        )
    ref_sim = map_similarity(
        _maps(a, ref_ids, method, size),
        _maps(reference, ref_ids, method, size),
        params.top_fraction,
    )
    if floor:
        shares_r = _region_shares(reference, method, ref_ids)
        base = shares_a.loc[ref_ids]
        for r in floor:
            floor[r] = max(floor[r], abs(float(np.nanmean(shares_r[r] - base[r]))))
    return {k: float(np.nanquantile(v, params.reference_quantile)) for k, v in ref_sim.items()}


def _class_change(
    label: str,
    sel: np.ndarray,
    ca: pd.Series,
    cb: pd.Series,
    sim: dict[str, np.ndarray],
    diff: pd.DataFrame,
) -> dict[str, Any]:
    acc_a, acc_b = round(float(ca[sel].mean()), 4), round(float(cb[sel].mean()), 4)
    row: dict[str, Any] = {
        "class": label,
        "support": int(sel.sum()),
        "accuracy_a": acc_a,
        "accuracy_b": acc_b,
        "change": round(acc_b - acc_a, 4),
        "similarity": _round(
            {k: np.nanmean(v[sel]) if np.isfinite(v[sel]).any() else None for k, v in sim.items()}
        ),
    }
    if len(diff.columns):
        row["region_shift"] = _round(
            {str(r): np.nanmean(diff[r].to_numpy(float)[sel]) for r in diff.columns}
        )
    return row


def compare_runs(
    a: Run,
    b: Run,
    method: str | None = None,
    reference: Run | None = None,
    params: CompareParams = CompareParams(),
) -> dict[str, Any]:
    """The ``compare.json`` payload for runs ``a`` and ``b`` of the same images."""
    method = a.method(method)
    b.method(method)
    if reference is not None:
        reference.method(method)
    oa, ob = _outcomes(a), _outcomes(b)
    ids = [i for i in oa.index if i in ob.index]
    if not ids:
        raise SalienceError("the two runs share no images; compare two audits of the same data")
    oa, ob = oa.loc[ids], ob.loc[ids]
    ca, cb = oa["correct"].astype(bool), ob["correct"].astype(bool)
    size = a.map_size
    ma, mb = _maps(a, ids, method, size), _maps(b, ids, method, size)
    sim = map_similarity(ma, mb, params.top_fraction)
    labels = oa["label"].to_numpy()
    same_pred = (oa["pred"] == ob["pred"]).to_numpy()

    regions = [r for r in a.regions if r in b.regions]
    shares_a = _region_shares(a, method, ids) if regions else pd.DataFrame(index=ids)
    shares_b = _region_shares(b, method, ids) if regions else pd.DataFrame(index=ids)
    shift = {r: float(np.nanmean(shares_b[r] - shares_a[r])) for r in regions}
    floor = {
        r: bootstrap_floor((shares_b[r] - shares_a[r]).to_numpy(float), params) for r in regions
    }

    if reference is not None:
        kind = "reference run"
        sim_floor = _reference_floor(a, reference, ids, method, size, shares_a, floor, params)
    else:
        kind = "bootstrap and other images"
        other = _other_images(ma, labels, params)
        kept = other[np.isfinite(other)]
        sim_floor = {"spearman": float(np.median(kept)) if len(kept) else float("nan")}
        if not len(kept):
            kind = "bootstrap only (no class has two images with maps: silent changes need one)"

    threshold = sim_floor["spearman"]
    silent_mask = same_pred & np.isfinite(sim["spearman"]) & (sim["spearman"] <= threshold)
    order = np.argsort(np.where(silent_mask, sim["spearman"], np.inf))
    silent_ids = pd.Index([ids[i] for i in order[: int(silent_mask.sum())]])

    per_class = [
        _class_change(label, labels == label, ca, cb, sim, shares_b - shares_a)
        for label in a.class_names
        if label in set(labels)
    ]

    return json_safe(
        {
            "a": {"run": str(a.path), "model": a.info.recorded_model.spec},
            "b": {"run": str(b.path), "model": b.info.recorded_model.spec},
            "method": method,
            "matched": len(ids),
            "accuracy": {"a": round(float(ca.mean()), 4), "b": round(float(cb.mean()), 4)},
            "balanced_accuracy": {
                "a": round(float(np.mean([ca[labels == c].mean() for c in np.unique(labels)])), 4),
                "b": round(float(np.mean([cb[labels == c].mean() for c in np.unique(labels)])), 4),
            },
            "per_class": per_class,
            "fixed": _listed(pd.Index(ids)[(~ca & cb).to_numpy()], params),
            "broken": _listed(pd.Index(ids)[(ca & ~cb).to_numpy()], params),
            "similarity": {
                k: _round({"mean": np.nanmean(v), "median": np.nanmedian(v)})
                if np.isfinite(v).any()
                else None
                for k, v in sim.items()
            },
            "region_shift": _round(shift),
            "region_shift_real": {r: bool(abs(shift[r]) > floor[r]) for r in regions},
            "silent_changes": {
                **_listed(silent_ids, params),
                "share": round(float(silent_mask.mean()), 4),
            },
            "noise_floor": {
                "kind": kind,
                "reference": str(reference.path) if reference is not None else None,
                "region_shift": _round(floor),
                "similarity": _round(sim_floor),
            },
            "params": asdict(params),
        }
    )
