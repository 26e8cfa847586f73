"""What ``salience cost`` writes under ``--out``: ``cost.json`` (see DESIGN.md) and the
self-contained page ``cost.html``. The CLI and the page writer read the names from here."""

from __future__ import annotations

REPORT = "cost.json"
PAGE = "cost.html"
