"""Monitor a data set: cut it into windows, audit each window with the audit pipeline into the
monitor folder, test it against the baseline, record it.

Windows follow the data's row order (``window`` images each; the last may be smaller), or
with ``time_column`` the calendar windows of that column (``window`` such as ``"1h"``).
A window already recorded (same images) is skipped, and a window's audit resumes after a
crash, so rerunning the same command after ``kill -9`` loses nothing.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd

from salience.audit.plan import ModelLike
from salience.audit.runner import Progress, audit
from salience.data import Dataset, Item, read_dataset
from salience.data.manifest import meta_name
from salience.errors import SalienceError
from salience.monitor import features as feat
from salience.monitor.layout import audit_dir
from salience.monitor.model import baseline_model, check_same_model
from salience.monitor.monitor import Monitor
from salience.monitor.versions import register, shadow
from salience.store import Run

WindowProgress = Callable[[int, int, Progress], None]  # (window number, windows, progress)


@dataclass(frozen=True)
class WindowPlan:
    """One window of the data: its items and where it starts and ends (rows or times)."""

    items: list[Item]
    start: Any
    end: Any

    def key(self, dataset: Dataset) -> str:
        sub = replace(dataset, items=self.items)
        return hashlib.sha256(f"{sub.root}\n{sub.sha256()}".encode()).hexdigest()[:16]


def parse_window(window: int | str, time_column: str | None) -> int | pd.Timedelta:
    """``200`` or ``"200"`` -> 200 images; ``"1h"``, ``"15min"``, ``"1d"`` -> a duration."""
    text = str(window).strip()
    if text.isdigit():
        if int(text) < 2:
            raise SalienceError("a window needs at least 2 images")
        return int(text)
    if time_column is None:
        raise SalienceError(f"window {text!r} is a duration; give --time-column, or a number")
    try:
        delta = pd.Timedelta(text)
    except ValueError:
        raise SalienceError(f"bad window {text!r}; write a number of images or e.g. 1h") from None
    if delta <= pd.Timedelta(0):
        raise SalienceError(f"window {text!r} must be longer than zero")
    return delta


def plan_windows(
    dataset: Dataset, window: int | pd.Timedelta, time_column: str | None = None
) -> list[WindowPlan]:
    """The data's windows, in row order or in time order."""
    items = dataset.items
    if time_column is None:
        if not isinstance(window, int):
            raise SalienceError("a duration window needs --time-column")
        return [
            WindowPlan(items[a : a + window], a, min(a + window, len(items)))
            for a in range(0, len(items), window)
        ]
    key = meta_name(time_column)
    raw = [dict(i.meta).get(key) for i in items]
    if all(v is None for v in raw):
        raise SalienceError(f"the data has no column {time_column!r} (or it is empty)")
    times = pd.to_datetime(pd.Series(raw), errors="coerce", utc=True, format="mixed")
    bad = int(times.isna().sum())
    if bad:
        raise SalienceError(f"{bad} row(s) have no readable time in {time_column!r}; fix them")
    order = times.sort_values(kind="stable")
    if isinstance(window, int):
        idx = order.index.tolist()
        return [
            WindowPlan(
                [items[i] for i in idx[a : a + window]],
                order.iloc[a].isoformat(),
                order.iloc[min(a + window, len(idx)) - 1].isoformat(),
            )
            for a in range(0, len(idx), window)
        ]
    start = order.iloc[0].floor(window)
    bins = ((order - start) // window).astype(int)
    out = []
    for b, group in order.groupby(bins, sort=True):
        lo = start + int(b) * window
        out.append(
            WindowPlan([items[i] for i in group.index], lo.isoformat(), (lo + window).isoformat())
        )
    return out


def monitor_data(
    baseline: str | os.PathLike[str] | None,
    data: str | os.PathLike[str] | Dataset,
    out: str | os.PathLike[str],
    *,
    window: int | str | None = None,
    time_column: str | None = None,
    model: ModelLike | None = None,
    candidate: ModelLike | None = None,
    alpha: float = 0.05,
    methods: list[str] | None = None,
    root: str | os.PathLike[str] | None = None,
    batch_size: int = 32,
    device: str = "auto",
    workers: int | None = None,
    calibration_splits: int = 100,
    progress: WindowProgress | None = None,
    on_window: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Monitor ``data`` against the baseline run into the folder ``out``; returns the summary
    (``monitor.json``). Rerun to resume; windows recorded before are kept. ``window``
    defaults to the monitor folder's, else 200 images."""
    dataset = (
        data
        if isinstance(data, Dataset)
        else read_dataset(Path(data), None if root is None else Path(root))
    )
    with Monitor.open(
        out,
        baseline,
        window=window,
        alpha=alpha,
        methods=methods,
        time_column=time_column,
        calibration_splits=calibration_splits,
    ) as mon:
        if model is None:
            model = baseline_model(mon.run, device=device)
        else:
            check_same_model(mon.run, model)
        register(mon.folder, mon.run.info.recorded_model, promoted=True)
        time_column = mon.config.get("time_column")
        size = parse_window(mon.config["window"], time_column)
        plans = plan_windows(dataset, size, time_column)
        done = mon.done_keys()
        specs = mon.method_specs()
        for number, plan in enumerate(plans):
            key = plan.key(dataset)
            if key in done:
                continue
            sub = replace(dataset, items=plan.items)

            def report(p: Progress, number: int = number) -> None:
                if progress is not None:
                    progress(number, len(plans), p)

            run = _audit(
                model,
                sub,
                audit_dir(mon.folder, key),
                specs,
                mon.run,
                batch_size,
                device,
                workers,
                report,
            )
            extra: dict[str, Any] = {"audit": str(run.path.relative_to(mon.folder))}
            if candidate is not None:
                cand = _audit(
                    candidate,
                    sub,
                    audit_dir(mon.folder, key, candidate=True),
                    specs,
                    mon.run,
                    batch_size,
                    device,
                    workers,
                    report,
                )
                extra["candidate"] = shadow(run, cand, mon.methods[0], alpha)
                extra["candidate"]["version"] = register(
                    mon.folder, cand.info.recorded_model, promoted=False
                )["version"]
            f = feat.from_run(run, mon.methods)
            if len(f) < 2:
                raise SalienceError(f"window {plan.start}..{plan.end} has {len(f)} usable images")
            result = mon.record(f, key, plan.start, plan.end, extra)
            if on_window is not None:
                on_window(result)
        summary = mon.write_summary()
        done = mon.done_keys()
        summary["data_windows"] = [done[p.key(dataset)] for p in plans if p.key(dataset) in done]
        return summary


def _audit(
    model: ModelLike,
    data: Dataset,
    out: Path,
    specs: list[str],
    baseline: Run,
    batch_size: int,
    device: str,
    workers: int | None,
    progress: Callable[[Progress], None],
) -> Run:
    """The window's audit, with the baseline's methods and map size (resumes if killed)."""
    h, w = baseline.map_size
    audit(
        model,
        data,
        out,
        specs,
        batch_size=batch_size,
        device=device,
        workers=workers,
        map_size=(h, w),
        class_names=baseline.class_names,
        top_k=int(baseline.info.top_k),
        progress=progress,
    )
    return Run.open(out)
