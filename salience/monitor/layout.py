"""Where things live in a monitor folder. Writes go through :mod:`salience.store.layout`
(temporary name, fsync, rename) and one writer holds :class:`salience.store.RunLock`.

- ``config.json``: the baseline, window, level, methods and the calibration.
- ``baseline.parquet``: the baseline's features, cached (keyed by the baseline's hashes).
- ``windows/part-NNNNN.parquet``: one window's per-image features; its test results are in
  the file's metadata, so a window is on disk whole or not at all.
- ``audits/<key>/`` (and ``audits/<key>-candidate/``): the window's audit run, resumable.
- ``versions.json``: the version registry. ``monitor.json``: the summary, rewritten after
  every window from the window files (which stay the truth).
"""

from __future__ import annotations

import os
from pathlib import Path

from salience.store.layout import part_name

CONFIG = "config.json"
SUMMARY = "monitor.json"
BASELINE = "baseline.parquet"
VERSIONS = "versions.json"
WINDOWS = "windows"
AUDITS = "audits"
META_KEY = b"salience.window"
BASELINE_KEY = b"salience.baseline"


def window_file(folder: Path, index: int) -> Path:
    return folder / WINDOWS / f"{part_name(index)}.parquet"


def window_files(folder: Path) -> list[Path]:
    d = folder / WINDOWS
    if not d.is_dir():
        return []
    names = sorted(e.name for e in os.scandir(d))
    return [d / n for n in names if n.startswith("part-") and n.endswith(".parquet")]


def audit_dir(folder: Path, key: str, candidate: bool = False) -> Path:
    return folder / AUDITS / (f"{key}-candidate" if candidate else key)
