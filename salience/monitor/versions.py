"""Model versions: shadow-run a candidate on the monitored windows, and a small registry.

Shadow run: per window the candidate's audit is compared with the deployed model's on the
same images: prediction agreement, and the Spearman similarity of the maps against the noise
floor of :mod:`salience.audit.compare` (the median similarity of two different images of the
same class under the deployed model). An image whose prediction agrees but whose map is no
closer to the deployed map than another image's is a silent change (Heo et al., NeurIPS 2019:
fine-tuning can move the maps and keep the accuracy). A class where most agreeing images
changed silently, with unchanged (or unknown) accuracy, holds the rollout.

Registry: ``versions.json`` lists every version (spec, weights file, hashes, when it was
registered and promoted), so that "roll back to the version before" names an exact file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from salience.audit.plan import now
from salience.errors import SalienceError
from salience.monitor.layout import VERSIONS
from salience.store import Run
from salience.store.layout import read_json, write_json
from salience.store.manifest import RecordedModel

SILENT_SHARE = 0.5  # a class holds the rollout when this share of its agreeing images moved
ACCURACY_SAME = 0.02  # accuracy changes within this count as "did not change"
MIN_IMAGES = 5


def shadow(deployed: Run, candidate: Run, method: str, alpha: float) -> dict[str, Any]:
    """Agreement and silent changes of ``candidate`` against ``deployed`` on one window."""
    from salience.audit.compare import CompareParams, _other_images, map_similarity

    a = deployed.samples(["sample_id", "pred", "label", "correct", "error"])
    b = candidate.samples(["sample_id", "pred", "correct"]).set_index("sample_id")
    a = a[a["error"].isna() & a["pred"].notna()].set_index("sample_id")
    ids = [i for i in a.index if i in b.index and b.at[i, "pred"] is not None]
    if not ids:
        raise SalienceError("the candidate predicted none of the window's images")
    a, b = a.loc[ids], b.loc[ids]
    ma = np.nan_to_num(deployed.saliencies(ids, method).astype(np.float64))
    mb = np.nan_to_num(candidate.saliencies(ids, method).astype(np.float64))
    sim = map_similarity(ma, mb)["spearman"]
    preds = a["pred"].astype(str).to_numpy()
    other = _other_images(ma, preds, CompareParams())
    finite = other[np.isfinite(other)]
    floor = float(np.median(finite)) if len(finite) else float("nan")
    agree = (a["pred"] == b["pred"]).to_numpy()
    silent = agree & np.isfinite(sim) & (sim <= floor)
    labelled = a["label"].notna().to_numpy()
    classes = []
    for c in sorted(set(preds)):
        sel = preds == c
        row: dict[str, Any] = {
            "class": c,
            "n": int(sel.sum()),
            "agreement": float(agree[sel].mean()),
            "spearman": float(np.nanmean(sim[sel])) if np.isfinite(sim[sel]).any() else None,
            "silent_share": float(silent[sel & agree].mean()) if (sel & agree).any() else 0.0,
        }
        lab = sel & labelled
        change = None
        if lab.any():
            change = float(b["correct"].to_numpy()[lab].astype(float).mean()) - float(
                a["correct"].to_numpy()[lab].astype(float).mean()
            )
        row["accuracy_change"] = change
        row["silent"] = bool(
            row["n"] >= MIN_IMAGES
            and row["silent_share"] >= SILENT_SHARE
            and (change is None or abs(change) <= ACCURACY_SAME)
        )
        classes.append(row)
    held = [r["class"] for r in classes if r["silent"]]
    reason = (
        f"hold the rollout: maps moved beyond the noise floor on {', '.join(held)} with the "
        "same predictions and unchanged accuracy"
        if held
        else None
    )
    return {
        "agreement": float(agree.mean()),
        "spearman": float(np.nanmean(sim)) if np.isfinite(sim).any() else None,
        "noise_floor": floor,
        "silent_share": float(silent.mean()),
        "silent_examples": [
            ids[i] for i in np.argsort(np.where(silent, sim, np.inf))[:5] if silent[i]
        ],
        "classes": classes,
        "hold": bool(held),
        "reason": reason,
        "run": str(candidate.path),
    }


def _entries(folder: Path) -> list[dict[str, Any]]:
    path = folder / VERSIONS
    return list(read_json(path).get("versions", [])) if path.exists() else []


def register(folder: Path, model: RecordedModel | dict[str, Any], promoted: bool) -> dict[str, Any]:
    """Add a version (a run's recorded model, or the ``model`` block of its manifest) unless
    its parameters are known; with ``promoted`` mark it the deployed one. Returns its entry."""
    if not isinstance(model, RecordedModel):
        model = RecordedModel.from_json(model)
    entries = _entries(folder)
    state = model.state_sha256
    entry = next((e for e in entries if e["state_sha256"] == state), None)
    if entry is None:
        entry = {
            "version": 1 + max((e["version"] for e in entries), default=0),
            "spec": model.spec,
            "weights": model.weights,
            "weights_sha256": model.weights_sha256,
            "state_sha256": state,
            "registered": now(),
            "promoted": None,
        }
        entries.append(entry)
    if promoted and entry["promoted"] is None:
        entry["promoted"] = now()
    write_json(folder / VERSIONS, {"versions": entries})
    return entry


def versions(folder: Path) -> list[dict[str, Any]]:
    return _entries(Path(folder))


def rollback_target(folder: Path) -> dict[str, Any]:
    """The version promoted before the current one: the exact weights file to go back to."""
    promoted = sorted(
        (e for e in _entries(Path(folder)) if e["promoted"]),
        key=lambda e: (e["promoted"], e["version"]),
    )
    if len(promoted) < 2:
        raise SalienceError(
            f"{folder} records {len(promoted)} promoted version(s); nothing to roll back to"
        )
    return promoted[-2]
