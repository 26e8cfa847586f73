"""Derived tables the routes share: run summaries, per-method stats, shortcut findings."""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from salience.audit.stats import describe_stat
from salience.errors import DamagedRunError
from salience.jsonsafe import finite
from salience.server import schemas
from salience.server.render import REGION_COLORS
from salience.server.run_cache import RunEntry
from salience.store import Run
from salience.store.layout import SHORTCUTS

log = logging.getLogger("salience.server")

NON_STATS = {"sample_id", "method", "error", "shard", "row"}


def ok_rows(samples: pd.DataFrame) -> pd.DataFrame:
    """The images that were predicted (no error)."""
    if "error" not in samples:
        return samples
    return samples[samples["error"].isna()]


def stats(entry: RunEntry, method: str) -> pd.DataFrame:
    """The per-image statistics of ``method`` indexed by sample id (cached)."""

    def make(run: Run) -> pd.DataFrame:
        df = run.stats(method)
        return df.drop_duplicates("sample_id").set_index("sample_id")

    return entry.cached(f"stats:{method}", make)


def stat_names(entry: RunEntry) -> list[str]:
    """Numeric statistic columns (the same for every method)."""
    if not entry.run.methods:
        return []
    df = stats(entry, entry.run.methods[0])
    return [
        str(c)
        for c in df.columns
        if c not in NON_STATS and pd.api.types.is_numeric_dtype(df[c]) and df[c].dtype != bool
    ]


def shortcuts(entry: RunEntry) -> list[schemas.ShortcutClass]:
    """The findings of ``salience shortcuts`` (:meth:`Run.shortcuts`). A damaged findings file
    leaves the run viewable: the overview shows no findings and the log says why."""

    def make(run: Run) -> list[schemas.ShortcutClass]:
        try:
            return [_shortcut(c) for c in run.shortcuts() or []]
        except DamagedRunError as exc:
            log.warning("%s", exc)
        except (ValueError, TypeError, AttributeError, KeyError):
            log.warning("run %s: %s holds findings of an unknown shape", run.path, SHORTCUTS)
        return []

    return entry.cached("shortcuts", make)


def _shortcut(c: dict[str, Any]) -> schemas.ShortcutClass:
    return schemas.ShortcutClass.model_validate(
        {
            "class": str(c["class"]),
            "flagged": bool(c.get("flagged", False)),
            "reason": str(c.get("reason") or ""),
            "region_share": {
                str(k): float(v)
                for k, v in (c.get("region_share") or {}).items()
                if finite(v) is not None
            },
            "clusters": [
                {
                    "size": int(k.get("size", 0)),
                    "share": float(k.get("share", 0.0)),
                    "flagged": bool(k.get("flagged", False)),
                    "centroid": [float(v) for v in k.get("centroid", [])],
                    "box": [float(v) for v in k.get("box") or []],
                }
                for k in c.get("clusters", [])
            ],
            "kind": c.get("kind"),
            "box": c.get("box"),
            "class_wide": _class_wide(c.get("class_wide")),
        }
    )


def _class_wide(w: dict[str, Any] | None) -> dict[str, Any] | None:
    """The class-wide part of a class's finding; its maps only when the maps flagged it."""
    if not w:
        return None
    shown = bool(w.get("flagged") or w.get("map_flagged"))
    keys = ("box", "share", "other_share", "area", "flagged", "confirmed", "examples")
    out = {k: w.get(k) for k in keys}
    out["examples"] = [str(i) for i in w.get("examples") or []]
    if shown:
        out.update(mean_map=w.get("mean_map"), others_map=w.get("others_map"))
        out["intervention"] = w.get("intervention")
    return out


def summary(entry: RunEntry) -> schemas.RunSummary:
    def make(run: Run) -> schemas.RunSummary:
        samples = entry.samples()
        m = run.info
        ok = ok_rows(samples)
        meta = [str(c)[5:] for c in samples.columns if str(c).startswith("meta_")]
        splits = sorted(str(s) for s in samples["split"].dropna().unique())
        return schemas.RunSummary(
            id=entry.id,
            name=run.path.name,
            status=str(run.status),
            model=m.recorded_model.spec or "",
            dataset=m.recorded_data.source or "",
            count=len(samples),
            errors=len(samples) - len(ok),
            accuracy=finite(ok["correct"].astype(float).mean()) if len(ok) else None,
            class_names=list(run.class_names),
            methods=list(run.methods),
            signed=[name for name in run.methods if run.signed(name)],
            regions=list(run.regions),
            stats=stat_names(entry),
            stat_descriptions={
                name: describe_stat(name, run.region_columns) or name for name in stat_names(entry)
            },
            meta=meta,
            splits=splits,
            map_size=[int(v) for v in m.map_size or []],
            created=str(m.created) if m.created else None,
            updated=str(m.updated) if m.updated else None,
            has_shortcuts=(run.path / SHORTCUTS).is_file(),
        )

    return entry.cached("summary", make)


def listed(entry: RunEntry) -> schemas.RunSummary:
    """The run's summary for the run list; a run that cannot be read is listed as damaged with
    its one-line reason, so that the other runs stay usable."""
    if entry.damage is None:
        try:
            return summary(entry)
        except DamagedRunError as exc:
            entry.mark_damaged(exc)
        except Exception as exc:  # any other failure of this run's files: logged, run listed
            log.error("cannot summarise run %s", entry.id, exc_info=exc)
            return damaged(entry, "this run cannot be read; the server log has the details")
    return damaged(entry, entry.damage or "damaged")


def damaged(entry: RunEntry, reason: str) -> schemas.RunSummary:
    """A run-list row for a run that cannot be read."""
    return schemas.RunSummary(
        id=entry.id, name=entry.path.name, status="damaged", model="", dataset="", count=0,
        errors=0, accuracy=None, class_names=[], methods=[], signed=[], regions=[], stats=[],
        meta=[], splits=[], map_size=[], created=None, updated=None, has_shortcuts=False,
        problem=reason,
    )  # fmt: skip


def region_colors(entry: RunEntry) -> dict[int, tuple[str, str]]:
    """Mask index -> (region name, outline colour); index 0 and "background" get no outline."""

    def make(run: Run) -> dict[int, tuple[str, str]]:
        legend = {int(k): str(v) for k, v in run.region_legend.items()}
        named = [i for i in sorted(legend) if i != 0 and legend[i].lower() != "background"]
        return {i: (legend[i], REGION_COLORS[k % len(REGION_COLORS)]) for k, i in enumerate(named)}

    return entry.cached("region_colors", make)
