"""Self-contained HTML reports: ``write_report(run, out)`` for a run (``salience report``)."""

from __future__ import annotations

import os
from pathlib import Path

from salience.report.run_data import ReportData, gather
from salience.report.run_html import render
from salience.store import Run

PAGE = "report.html"  # what ``salience report`` writes unless told otherwise


def write_report(
    run: Run | str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    max_images: int = 200,
    per_cell: int = 8,
    methods: list[str] | None = None,
    size: int = 112,
    seed: int = 0,
) -> ReportData:
    """Write one HTML file with the run's overview, confusion matrix with its images embedded
    (sampled for big runs, saying so) and the shortcut findings when ``RUN/shortcuts.json``
    exists. Returns what it embedded."""
    opened = run if isinstance(run, Run) else Run.open(run)
    data = gather(
        opened, max_images=max_images, per_cell=per_cell, methods=methods, size=size, seed=seed
    )
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render(data), encoding="utf-8")
    tmp.replace(path)
    return data


__all__ = ["PAGE", "ReportData", "write_report"]
