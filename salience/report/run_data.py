"""What the run report shows, gathered from a run through its public API.

The report embeds images, so big runs are sampled: every non-empty confusion-matrix cell gets
at most ``per_cell`` images chosen at random (seeded), mistakes before correct predictions and
larger cells first, until ``max_images`` images are embedded. The report says so.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from salience.errors import DamagedRunError, SalienceError
from salience.store import Run
from salience.store.manifest import Manifest
from salience.viz import overlay

MANY = 30  # above this many classes the matrix shows the most confused ones


@dataclass
class Card:
    sample_id: str
    path: str
    label: str
    pred: str
    confidence: float
    correct: bool
    images: list[tuple[str, str]]  # (caption, data URI): the image, then one per method
    problem: str | None = None  # why the image could not be embedded


@dataclass
class Cell:
    true: str
    pred: str
    count: int
    cards: list[Card] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        return "cell-" + "".join(f"{ord(c):x}" for c in f"{self.true}\0{self.pred}")


@dataclass
class ReportData:
    title: str
    manifest: Manifest
    methods: list[str]
    count: int
    errors: int
    accuracy: float | None
    balanced_accuracy: float | None
    classes: pd.DataFrame  # class, precision, recall, f1, support
    matrix: pd.DataFrame  # counts over the shown classes
    all_classes: int
    top_confusions: list[Cell]
    cells: list[Cell]
    regions: pd.DataFrame | None  # method x region share, for correct and wrong images
    shortcuts: list[dict[str, Any]]
    embedded: int
    per_cell: int
    size: int
    seed: int


def data_uri(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.convert("RGB").save(buf, "JPEG", quality=82)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()


def card(run: Run, row: Any, methods: list[str], size: int) -> Card:
    """One image with its overlays, decoded and resized by the library (``Run.view_image``,
    within its size caps); an image that cannot be read now (changed since the audit, or too
    large) gets a card that says why, and a damaged run file stops the report."""
    out = Card(
        str(row.sample_id),
        str(row.path),
        str(row.label),
        str(row.pred),
        float(row.confidence),
        bool(row.correct),
        [],
    )
    try:
        picture = run.view_image(out.sample_id).convert("RGB")
    except DamagedRunError:
        raise
    except SalienceError as exc:
        out.problem = " ".join(str(exc).split())
        return out
    picture.thumbnail((size, size), Image.Resampling.LANCZOS)
    out.images.append(("image", data_uri(picture)))
    for m in methods:
        try:
            saliency = run.saliency(out.sample_id, m)  # covers the view, at the run's map size
            blended = overlay(picture, saliency, signed=run.signed(m), stretch=True)
        except DamagedRunError:
            raise
        except SalienceError:
            continue
        out.images.append((m, data_uri(Image.fromarray(blended))))
    return out


def gather(
    run: Run,
    *,
    max_images: int = 200,
    per_cell: int = 8,
    methods: list[str] | None = None,
    size: int = 112,
    seed: int = 0,
) -> ReportData:
    """Everything :func:`salience.report.write_report` renders."""
    if max_images < 0 or per_cell < 1:
        raise SalienceError("max_images must be >= 0 and per_cell >= 1")
    chosen = list(run.methods) if methods is None else list(methods)
    unknown = [m for m in chosen if m not in run.methods]
    if unknown:
        raise SalienceError(
            f"the run has no {', '.join(unknown)} maps; it has: {', '.join(run.methods)}"
        )
    samples = run.samples()
    ok = samples[samples["error"].isna() & samples["pred"].notna()]
    cm = run.confusion_matrix()
    metrics = run.class_metrics()
    off = [
        Cell(str(t), str(p), int(cm.loc[t, p]))
        for t in cm.index
        for p in cm.columns
        if t != p and cm.loc[t, p] > 0
    ]
    off.sort(key=lambda c: (-c.count, c.true, c.pred))
    diag = [
        Cell(str(t), str(t), int(cm.loc[t, t]))
        for t in cm.index
        if t in cm.columns and cm.loc[t, t] > 0
    ]
    diag.sort(key=lambda c: (-c.count, c.true))
    shown = list(cm.index)
    if len(shown) > MANY:
        keep: list[str] = []
        for c in off:
            keep += [n for n in (c.true, c.pred) if n not in keep]
            if len(keep) >= MANY:
                break
        shown = [n for n in cm.index if n in keep]
    matrix = cm.loc[shown, [c for c in cm.columns if c in shown]]
    rng = np.random.default_rng(seed)
    groups = {key: g for key, g in ok.groupby(["label", "pred"], sort=False)}
    budget = max_images
    for cell in off + diag:
        take = min(per_cell, cell.count, budget)
        if take <= 0:
            break
        group = groups[(cell.true, cell.pred)]
        pick = group.iloc[np.sort(rng.choice(len(group), size=take, replace=False))]
        pick = pick.sort_values("confidence", ascending=False)
        cell.cards = [card(run, row, chosen, size) for row in pick.itertuples()]
        budget -= take
    with_support = metrics[metrics["support"] > 0]
    return ReportData(
        title=run.path.name,
        manifest=run.info,
        methods=chosen,
        count=len(samples),
        errors=len(samples) - len(ok),
        accuracy=float(ok["correct"].mean()) if len(ok) else None,
        balanced_accuracy=float(with_support["recall"].mean()) if len(with_support) else None,
        classes=metrics,
        matrix=matrix,
        all_classes=len(cm.index),
        top_confusions=off[:15],
        cells=off + diag,
        regions=_regions(run, samples, chosen),
        shortcuts=_shortcuts(run),
        embedded=max_images - budget,
        per_cell=per_cell,
        size=size,
        seed=seed,
    )


def _regions(run: Run, samples: pd.DataFrame, methods: list[str]) -> pd.DataFrame | None:
    """Mean share of positive saliency per region, per method, for correct and wrong images."""
    columns = run.region_columns
    if not columns or not methods:
        return None
    rows = []
    outcome = samples.set_index("sample_id")["correct"]
    for m in methods:
        stats = run.stats(m).set_index("sample_id")
        right = outcome.reindex(stats.index).astype("boolean")
        for region, col in columns.items():
            share = stats.get(f"share_{col}")
            if share is None:
                continue
            rows.append(
                {
                    "method": m,
                    "region": region,
                    "correct": share[right.fillna(False).to_numpy(bool)].mean(),
                    "wrong": share[(~right).fillna(False).to_numpy(bool)].mean(),
                }
            )
    return pd.DataFrame(rows) if rows else None


def _shortcuts(run: Run) -> list[dict[str, Any]]:
    """The findings of ``salience shortcuts`` (:meth:`Run.shortcuts`), with the class-wide
    maps drawn; a damaged findings file stops the report (:class:`DamagedRunError`)."""
    out = run.shortcuts() or []
    for c in out:
        wide = c["class_wide"] if isinstance(c.get("class_wide"), dict) else {}
        if wide.get("flagged") or wide.get("map_flagged"):
            c["class_wide_maps"] = [
                (title, map_uri(grid, wide.get("box")))
                for title, grid in (
                    ("this class", wide.get("mean_map")),
                    ("other classes", wide.get("others_map")),
                )
                if grid
            ]
    return out


def map_uri(grid: list[list[float]], box: list[float] | None, px: int = 6) -> str:
    """A class's mean map (values in 0..1) as an inferno picture with ``box`` outlined."""
    from PIL import ImageDraw

    from salience.viz.colormaps import colorize

    rgb = colorize(np.clip(np.asarray(grid, dtype=np.float32), 0, 1), signed=False, cmap="inferno")
    size = (rgb.shape[1] * px, rgb.shape[0] * px)
    img = Image.fromarray(rgb).resize(size, Image.Resampling.NEAREST)
    if box and len(box) == 4:
        y0, x0, y1, x1 = (float(v) for v in box)
        w, h = img.size
        ImageDraw.Draw(img).rectangle(
            (x0 * w, y0 * h, x1 * w - 1, y1 * h - 1), outline=(56, 189, 248), width=2
        )
    return data_uri(img)
