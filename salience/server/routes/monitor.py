"""Monitors: the drift timeline of each monitor folder, one window's classes and images (its
audit run's thumbnails and overlays), and the Prometheus scrape at ``/metrics``."""

from __future__ import annotations

from typing import Annotated, Any

import pandas as pd
from fastapi import APIRouter, Depends, HTTPException
from fastapi.responses import Response

from salience.errors import SalienceError
from salience.jsonsafe import finite
from salience.monitor.prometheus import INSTALL, metrics_text
from salience.server import monitor_schemas as ms
from salience.server import render
from salience.server.monitors import MonitorEntry, MonitorRegistry, get_monitors
from salience.server.params import image_size
from salience.server.routes.images import CACHE, image_file, unreadable
from salience.server.routes.samples import pick_method
from salience.server.run_cache import RunRegistry, get_registry

router = APIRouter(prefix="/api/monitors", tags=["monitors"])
metrics_router = APIRouter(tags=["monitors"])

Monitors = Annotated[MonitorRegistry, Depends(get_monitors)]
Registry = Annotated[RunRegistry, Depends(get_registry)]
Size = Annotated[int, Depends(image_size)]
SAMPLES = 60
PROMETHEUS = "text/plain; version=0.0.4; charset=utf-8"


def _text(v: Any) -> str | None:
    return None if v is None or (not isinstance(v, (list, dict)) and pd.isna(v)) else str(v)


def _when(v: Any) -> int | str | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else _text(v)


def _summary(entry: MonitorEntry) -> ms.MonitorSummary:
    s = entry.folder.summary()
    return ms.MonitorSummary(
        id=entry.id,
        name=entry.folder.name,
        baseline=str(s.get("baseline", "")),
        window=s.get("window", ""),
        time_column=s.get("time_column"),
        alpha=float(s.get("alpha", 0.05)),
        methods=[str(m) for m in s.get("methods", [])],
        windows=len(s.get("windows", [])),
        alerts=len(s.get("alerts", [])),
        updated=_text(s.get("updated")),
    )


def _test(t: dict[str, Any]) -> ms.TestResult:
    return ms.TestResult(
        statistic=finite(t.get("statistic")),
        p_value=finite(t.get("p_value")),
        alert=bool(t.get("alert")),
    )


def _point(entry: MonitorEntry, w: dict[str, Any]) -> ms.WindowPoint:
    b = w.get("bbsd", {})
    try:
        audit = entry.folder.audit_path(int(w["index"])) is not None
    except SalienceError:
        audit = False
    return ms.WindowPoint(
        index=int(w["index"]),
        start=_when(w.get("start")),
        end=_when(w.get("end")),
        n=int(w.get("n", 0)),
        alert=bool(w.get("alert")),
        p_value=finite(w.get("p_value")),
        tests={str(k): _test(t) for k, t in w.get("tests", {}).items()},
        bbsd=ms.Bbsd(
            statistic=finite(b.get("statistic")),
            p_value=finite(b.get("p_value")),
            alert=bool(b.get("alert")),
        ),
        accuracy=finite(w.get("accuracy")),
        confidence=finite(w.get("confidence")),
        moved=[str(c["class"]) for c in w.get("classes", []) if c.get("moved")],
        audit=audit,
    )


@router.get("", response_model=ms.MonitorList)
def list_monitors(monitors: Monitors) -> ms.MonitorList:
    return ms.MonitorList(monitors=[_summary(e) for e in monitors.entries.values()])


@router.get("/{monitor_id}", response_model=ms.Timeline)
def timeline(monitors: Monitors, monitor_id: str) -> ms.Timeline:
    """Every window's tests, the alerts and the measured false-alarm rate (``monitor.json``)."""
    entry = monitors.entry(monitor_id)
    s = entry.folder.summary()
    far = s.get("false_alarm_rate")
    alerts = [
        ms.Alert.model_validate({**a, "p_value": finite(a.get("p_value"))})
        for a in s.get("alerts", [])
    ]
    return ms.Timeline(
        monitor=_summary(entry),
        windows=[_point(entry, w) for w in s.get("windows", [])],
        alerts=alerts,
        false_alarm_rate=ms.FalseAlarm.model_validate(far) if isinstance(far, dict) else None,
    )


@router.get("/{monitor_id}/windows/{index}", response_model=ms.WindowDetail)
def window(monitors: Monitors, monitor_id: str, index: int) -> ms.WindowDetail:
    """One window: its tests, each class's move (the window's mean map next to the
    baseline's, the images that moved most) and the first images of its audit run."""
    entry = monitors.entry(monitor_id)
    w = entry.window(index)
    audit = entry.audit(index)
    run = audit.run if audit is not None else None
    maps: dict[str, list[float]] = {}
    if run is not None:
        try:
            maps = entry.folder.class_maps(index, run.class_names)
        except (OSError, KeyError, ValueError):
            maps = {}
    classes = [
        ms.ClassMove.model_validate(
            {
                "class": str(c["class"]),
                "n": int(c.get("n", 0)),
                "method": str(c.get("method", "")),
                "moved": bool(c.get("moved")),
                "p_value": finite(c.get("p_value")),
                "shift": {str(k): finite(v) for k, v in c.get("shift", {}).items()},
                "embedding_distance": finite(c.get("embedding_distance")),
                "examples": [str(x) for x in c.get("examples", [])],
                "baseline_mean_map": [finite(v) for v in c.get("baseline_mean_map", [])],
                "window_mean_map": maps.get(str(c["class"])),
            }
        )
        for c in w.get("classes", [])
    ]
    classes.sort(key=lambda c: (not c.moved, c.p_value if c.p_value is not None else 1.0))
    samples: list[ms.WindowSample] = []
    total = 0
    if audit is not None:
        df = audit.samples()
        total = len(df)
        for r in df.head(SAMPLES).to_dict("records"):
            correct = r.get("correct")
            samples.append(
                ms.WindowSample(
                    sample_id=str(r["sample_id"]),
                    path=str(r["path"]),
                    label=_text(r.get("label")),
                    pred=_text(r.get("pred")),
                    confidence=finite(r.get("confidence")),
                    correct=None if correct is None or pd.isna(correct) else bool(correct),
                )
            )
    return ms.WindowDetail(
        monitor=entry.id,
        window=_point(entry, w),
        classes=classes,
        methods=list(run.methods) if run is not None else [],
        samples=samples,
        total=total,
    )


@router.get("/{monitor_id}/windows/{index}/thumb/{sample_id:path}")
async def window_thumb(
    monitors: Monitors,
    registry: Registry,
    monitor_id: str,
    index: int,
    sample_id: str,
    size: Size,
) -> Response:
    """An image of the window as the model saw it (checked to lie in its data root)."""
    entry = monitors.entry(monitor_id).audit_or_404(index)

    def make() -> bytes:
        image_file(entry, sample_id)
        with unreadable("image cannot be read"):
            return render.encode(render.fit(entry.run.view_image(sample_id), size), "JPEG")

    key = ("monitor", entry.id, str(entry.path), "thumb", sample_id, size)
    data = await registry.images.get_or_make_async(key, make)
    return Response(data, media_type="image/jpeg", headers=CACHE)


@router.get("/{monitor_id}/windows/{index}/overlay/{method}/{sample_id:path}")
async def window_overlay(
    monitors: Monitors,
    registry: Registry,
    monitor_id: str,
    index: int,
    method: str,
    sample_id: str,
    size: Size,
) -> Response:
    entry = monitors.entry(monitor_id).audit_or_404(index)
    pick_method(entry, method)

    def make() -> bytes:
        with unreadable("no map for this sample and method"):
            saliency = entry.run.saliency(sample_id, method)
        return render.encode(render.overlay(saliency, size))

    key = ("monitor", entry.id, str(entry.path), "overlay", method, sample_id, size)
    data = registry.images.get_or_make(key, make)
    return Response(data, media_type="image/png", headers=CACHE)


@metrics_router.get("/metrics", include_in_schema=False)
def metrics(monitors: Monitors) -> Response:
    """The latest window of every monitor folder served, for Prometheus to scrape."""
    if not monitors.entries:
        raise HTTPException(404, "no monitor folders are served; pass one to `salience serve`")
    try:
        text = metrics_text(monitors.paths)
    except (ImportError, SalienceError):
        raise HTTPException(501, INSTALL) from None
    return Response(text, media_type=PROMETHEUS)
