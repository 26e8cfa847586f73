"""What ``salience check`` writes under ``--out``: ``report.json`` (see DESIGN.md) and the
self-contained page ``report.html``. The CLI, the page writer and the MLflow export read the
names from here."""

from __future__ import annotations

REPORT = "report.json"
PAGE = "report.html"
