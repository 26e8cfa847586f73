"""A monitor folder opened read-only (the explorer, scripts): no writer lock is taken, so it
can be read while ``salience monitor`` is still adding windows.

Everything is read from the folder's own files: ``monitor.json`` for the windows, the
window's row set for its per-image features, and ``audits/<key>/`` for its audit run, where
the key must be a plain folder name that resolves inside ``audits/`` (a tampered summary
naming another place is refused).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from salience.errors import SalienceError
from salience.monitor.features import Features
from salience.monitor.layout import AUDITS, CONFIG, SUMMARY, WINDOWS, audit_dir, window_file
from salience.monitor.monitor import summarize
from salience.store import Run
from salience.store.layout import read_json

_KEY = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def is_monitor(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a folder written by ``salience monitor`` (``config.json`` naming a
    baseline, and ``monitor.json`` or ``windows/``)."""
    p = Path(path).expanduser()
    if not (p / CONFIG).is_file() or not ((p / SUMMARY).is_file() or (p / WINDOWS).is_dir()):
        return False
    try:
        config = json.loads((p / CONFIG).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(config, dict) and "baseline" in config and "methods" in config


class MonitorFolder:
    """Read-only view of a monitor folder; :meth:`summary` is re-read when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._summary: tuple[int, dict[str, Any]] | None = None

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> MonitorFolder:
        p = Path(path).expanduser()
        if not is_monitor(p):
            raise SalienceError(f"{p} is not a monitor folder (written by `salience monitor`)")
        return cls(p.resolve())

    @property
    def name(self) -> str:
        return self.path.name

    def config(self) -> dict[str, Any]:
        return read_json(self.path / CONFIG)

    def summary(self) -> dict[str, Any]:
        """``monitor.json`` as it is now (an empty summary before the first window)."""
        path = self.path / SUMMARY
        try:
            mtime = path.stat().st_mtime_ns
        except FileNotFoundError:
            return summarize(self.config(), [], None)
        if self._summary is None or self._summary[0] != mtime:
            self._summary = (mtime, read_json(path))
        return self._summary[1]

    def window(self, index: int) -> dict[str, Any]:
        """One window's record from ``monitor.json``; :class:`KeyError` when there is none."""
        for w in self.summary().get("windows", []):
            if w.get("index") == index:
                return dict(w)
        raise KeyError(index)

    def audit_path(self, index: int) -> Path | None:
        """The window's audit run folder, or None (an observed window, or none on disk).
        :class:`SalienceError` when the recorded key is not a plain name inside ``audits/``."""
        key = str(self.window(index).get("key", ""))
        if not _KEY.fullmatch(key) or ".." in key:
            raise SalienceError(f"window {index} names an audit outside the monitor folder")
        root = (self.path / AUDITS).resolve()
        path = audit_dir(self.path, key).resolve()
        if not path.is_relative_to(root) or path == root:
            raise SalienceError(f"window {index} names an audit outside the monitor folder")
        return path if path.is_dir() else None

    def audit(self, index: int) -> Run | None:
        """The window's audit run (an ordinary run), or None when it has none."""
        path = self.audit_path(index)
        return None if path is None else Run.open(path)

    def window_features(self, index: int) -> Features:
        """The window's per-image features (its row set under ``windows/``)."""
        self.window(index)
        table = pq.read_table(window_file(self.path, index))
        cols = {c: table.column(c).to_numpy() for c in table.column_names}
        return Features.from_columns(cols, list(self.config()["methods"]))  # type: ignore[arg-type]

    def class_maps(self, index: int, class_names: list[str]) -> dict[str, list[float]]:
        """Per predicted class: the window's mean map embedding (8x8, each row summing to 1),
        comparable with each class's ``baseline_mean_map`` in ``monitor.json``."""
        f = self.window_features(index)
        method = next(iter(f.embed), None)
        if method is None:
            return {}
        out = {}
        for c in sorted(int(v) for v in np.unique(f.pred) if v >= 0):
            rows = f.embed[method][f.pred == c]
            rows = rows[np.isfinite(rows).all(1)]
            if len(rows) and c < len(class_names):
                out[class_names[c]] = [round(float(v), 6) for v in rows.mean(0)]
        return out
