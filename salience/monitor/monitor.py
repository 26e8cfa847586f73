"""The monitor folder and its one writer: windows tested against a baseline run.

``Monitor.open(folder, baseline=run)`` takes the folder's writer lock (a second writer is
refused), loads or computes the baseline's features, and records windows, from a data set
audited window by window (:func:`salience.monitor.runner.monitor_data`) or from images
observed in memory (:meth:`Monitor.observe`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from salience.audit.plan import ModelLike, now
from salience.audit.runner import build_methods
from salience.errors import SalienceError
from salience.monitor import features as feat
from salience.monitor.calibrate import SPLITS, calibrate
from salience.monitor.layout import (
    BASELINE,
    BASELINE_KEY,
    CONFIG,
    META_KEY,
    SUMMARY,
    window_file,
    window_files,
)
from salience.monitor.window import Baseline, window_tests
from salience.store import Run, RunLock
from salience.store.layout import read_json, write_json, write_parquet

FORMAT = 1
Images = torch.Tensor | Sequence[Any]


def _baseline_key(run: Run) -> str:
    m = run.info
    parts = [m.recorded_model.state_sha256, m.recorded_data.manifest_sha256, run.count()]
    return json.dumps(parts)


def _table(f: feat.Features, meta: dict[str, Any], key: bytes) -> pa.Table:
    table = pa.table(f.columns())
    return table.replace_schema_metadata({key: json.dumps(meta, default=str).encode()})


class Monitor:
    """A monitor folder opened for writing; use as a context manager or call :meth:`close`."""

    def __init__(self, folder: Path, run: Run, config: dict[str, Any], lock: RunLock) -> None:
        self.folder, self.run, self.config, self._lock = folder, run, config, lock
        self.methods: list[str] = list(config["methods"])
        self.alpha = float(config["alpha"])
        self.baseline = Baseline(self._baseline_features(), run.class_names)
        self._model: ModelLike | None = None
        self._pending: list[torch.Tensor] = []

    # -- opening -----------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        baseline: str | os.PathLike[str] | None = None,
        *,
        window: int | str | None = None,
        alpha: float = 0.05,
        methods: Sequence[str] | None = None,
        time_column: str | None = None,
        calibration_splits: int = SPLITS,
        seed: int = 0,
    ) -> Monitor:
        """Open (or create, with ``baseline``) the monitor folder ``path`` for writing.

        ``window``: images per window (default 200) or, with ``time_column``, a duration such
        as ``"1h"``; an existing folder keeps its own (giving another is refused)."""
        folder = Path(path).expanduser().resolve()
        folder.mkdir(parents=True, exist_ok=True)
        lock = RunLock(folder)
        try:
            lock.acquire()
        except SalienceError:
            raise SalienceError(
                f"{folder} is being written by another monitor; wait for it to finish or "
                "choose another --out"
            ) from None
        try:
            config = cls._config(folder, baseline, window, alpha, methods, time_column)
            config.setdefault("calibration_splits", calibration_splits)
            config.setdefault("seed", seed)
            run = Run.open(config["baseline"])
            if run.status != "complete":
                raise SalienceError(f"baseline {run.path} is {run.status}; finish its audit first")
            return cls(folder, run, config, lock)
        except BaseException:
            lock.release()
            raise

    @staticmethod
    def _config(
        folder: Path,
        baseline: str | os.PathLike[str] | None,
        window: int | str | None,
        alpha: float,
        methods: Sequence[str] | None,
        time_column: str | None,
    ) -> dict[str, Any]:
        if not 0.0 < alpha < 1.0:
            raise SalienceError(f"alpha {alpha} must be between 0 and 1, e.g. 0.05")
        path = folder / CONFIG
        if path.exists():
            config = read_json(path)
            if baseline is not None and Path(baseline).resolve() != Path(config["baseline"]):
                raise SalienceError(
                    f"{folder} monitors baseline {config['baseline']}, not {baseline}; "
                    "choose another --out for a new baseline"
                )
            given = {"window": window, "time_column": time_column}
            for key, value in given.items():
                if value is not None and str(value) != str(config.get(key)):
                    raise SalienceError(
                        f"{folder} monitors with {key} {config.get(key)}, not {value}; "
                        "choose another --out to change it"
                    )
            return config
        if baseline is None:
            raise SalienceError(f"{folder} is not a monitor folder; pass the baseline run")
        others = [p.name for p in folder.iterdir() if p.name != ".lock"]
        if others:
            raise SalienceError(
                f"{folder} is not empty and holds no monitor ({', '.join(sorted(others)[:3])}); "
                "choose a new or empty --out folder"
            )
        run = Run.open(baseline)
        chosen = list(methods) if methods else list(run.methods)
        unknown = [m for m in chosen if m not in run.methods]
        if unknown:
            raise SalienceError(
                f"method(s) {', '.join(unknown)} not in the baseline run ({', '.join(run.methods)})"
            )
        text = "200" if window is None else str(window).strip()
        config = {
            "format": FORMAT,
            "baseline": str(Path(baseline).resolve()),
            "window": int(text) if text.isdigit() else text,
            "time_column": time_column,
            "alpha": alpha,
            "methods": chosen,
            "model": run.info.model,
            "created": now(),
        }
        write_json(path, config)
        return config

    def _baseline_features(self) -> feat.Features:
        """The baseline's features, from the cache when it matches the baseline run."""
        path, key = self.folder / BASELINE, _baseline_key(self.run)
        if path.exists():
            table = pq.read_table(path)
            meta = json.loads((table.schema.metadata or {}).get(BASELINE_KEY, b"{}"))
            if meta.get("key") == key and meta.get("methods") == self.methods:
                cols = {c: table.column(c).to_numpy() for c in table.column_names}
                return feat.Features.from_columns(cols, self.methods)  # type: ignore[arg-type]
        found = feat.from_run(self.run, self.methods)
        if len(found) < 4:
            raise SalienceError(f"baseline {self.run.path} has {len(found)} predicted images")
        meta = {"key": key, "methods": self.methods}
        write_parquet(path, _table(found, meta, BASELINE_KEY))
        return found

    # -- windows -----------------------------------------------------------------------------
    def windows(self) -> list[dict[str, Any]]:
        """Every recorded window's results, in index order."""
        out = []
        for path in window_files(self.folder):
            meta = pq.read_schema(path).metadata or {}
            out.append(json.loads(meta[META_KEY]))
        return out

    def window_features(self, index: int) -> feat.Features:
        table = pq.read_table(window_file(self.folder, index))
        cols = {c: table.column(c).to_numpy() for c in table.column_names}
        return feat.Features.from_columns(cols, self.methods)  # type: ignore[arg-type]

    def done_keys(self) -> dict[str, int]:
        return {w["key"]: w["index"] for w in self.windows()}

    def calibration(self, window: int) -> dict[str, Any]:
        """The false-alarm rate measured on baseline self-splits (cached per window size)."""
        cached = self.config.get("calibration")
        if cached and cached.get("window_requested") == window:
            return dict(cached)
        found = calibrate(
            self.baseline.features,
            self.run.class_names,
            window,
            self.alpha,
            int(self.config["calibration_splits"]),
            int(self.config["seed"]),
        )
        found["window_requested"] = window
        self.config["calibration"] = found
        write_json(self.folder / CONFIG, self.config)
        return found

    def record(
        self, f: feat.Features, key: str, start: Any, end: Any, extra: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Test one window's features, write its row set atomically, update ``monitor.json``."""
        done = self.windows()
        index = 1 + max((w["index"] for w in done), default=-1)
        rng = np.random.default_rng([int(self.config["seed"]), index])
        result = {"index": index, "start": start, "end": end, "key": key}
        result.update(window_tests(self.baseline, f, self.alpha, rng))
        result.update(extra or {})
        write_parquet(window_file(self.folder, index), _table(f, result, META_KEY))
        self.write_summary([*done, result])
        return result

    def write_summary(self, windows: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        windows = self.windows() if windows is None else windows
        size = self.config["window"]
        if not isinstance(size, int):  # time windows: calibrate at the median size seen
            size = int(np.median([w["n"] for w in windows])) if windows else 0
        summary = summarize(self.config, windows, self.calibration(size) if size else None)
        write_json(self.folder / SUMMARY, summary)
        return summary

    # -- in-memory observation ---------------------------------------------------------------
    def use_model(self, model: ModelLike) -> None:
        """The model whose images :meth:`observe` explains (default: the baseline's)."""
        self._model = model

    def observe(self, images: Images, batch_size: int = 32) -> list[dict[str, Any]]:
        """Add preprocessed tensors (``[N, C, H, W]`` or a list of ``[C, H, W]``) or PIL
        images; each time a window fills up it is tested and recorded. Returns the windows
        recorded by this call. Images of an unfinished window are held in memory."""
        model = self._model_or_baseline()
        if isinstance(images, torch.Tensor):
            batch = [images] if images.dim() == 4 else [images[None]]
        else:
            batch = [
                (x if isinstance(x, torch.Tensor) else model.preprocess(x))[None] for x in images
            ]
        self._pending.extend(t for b in batch for t in b.split(1))
        size = self.config["window"]
        if not isinstance(size, int):
            raise SalienceError("observe() needs a window of a number of images, e.g. 200")
        recorded = []
        while len(self._pending) >= size:
            chunk, self._pending = self._pending[:size], self._pending[size:]
            recorded.append(self._record_tensors(model, chunk, batch_size))
        return recorded

    def _record_tensors(
        self, model: ModelLike, chunk: list[torch.Tensor], batch_size: int
    ) -> dict[str, Any]:
        built, _ = build_methods(self.method_specs(), model.cam_layer)
        h, w = self.run.map_size
        index = 1 + max((w_["index"] for w_ in self.windows()), default=-1)
        device = next(iter(model.module.parameters()), torch.zeros(0)).device
        parts = []
        for a in range(0, len(chunk), batch_size):
            x = torch.cat(chunk[a : a + batch_size]).to(device)
            ids = [f"w{index:05d}-{a + i:05d}" for i in range(len(x))]
            parts.append(feat.from_batch(model.module, x, built, (h, w), ids))
        stamp = now()
        return self.record(feat.concat(parts), f"observed-{index}-{stamp}", stamp, stamp)

    def method_specs(self) -> list[str]:
        specs = []
        for m in self.methods:
            given = {k: v for k, v in self.run.info.params(m).items() if k != "layer"}
            specs.append(
                m + (":" + ",".join(f"{k}={v}" for k, v in given.items()) if given else "")
            )
        return specs

    def _model_or_baseline(self) -> ModelLike:
        if self._model is None:
            from salience.monitor.model import baseline_model

            self._model = baseline_model(self.run)
        return self._model

    @property
    def pending(self) -> int:
        return len(self._pending)

    def status(self) -> dict[str, Any]:
        """``monitor.json`` as it is now, plus the images waiting for their window."""
        path = self.folder / SUMMARY
        summary = read_json(path) if path.exists() else summarize(self.config, [], None)
        return {**summary, "pending": self.pending}

    # -- closing -----------------------------------------------------------------------------
    def close(self) -> None:
        self._lock.release()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def summarize(
    config: dict[str, Any], windows: list[dict[str, Any]], calibration: dict[str, Any] | None
) -> dict[str, Any]:
    """The ``monitor.json`` payload (DESIGN.md): windows, the alerts and the alarm rate."""
    alerts = []
    for w in windows:
        if w["alert"]:
            fired = sorted(k for k, t in w["tests"].items() if t["alert"])
            alerts.append(
                {
                    "window": w["index"],
                    "detector": "saliency",
                    "p_value": w["p_value"],
                    "tests": fired,
                }
            )
        if w["bbsd"]["alert"]:
            alerts.append(
                {"window": w["index"], "detector": "bbsd", "p_value": w["bbsd"]["p_value"]}
            )
        for c in w.get("classes", []):
            if c["moved"] and w["alert"]:
                alerts.append(
                    {
                        "window": w["index"],
                        "detector": "class",
                        "class": c["class"],
                        "p_value": c["p_value"],
                    }
                )
        cand = w.get("candidate")
        if cand and cand.get("hold"):
            alerts.append({"window": w["index"], "detector": "candidate", "reason": cand["reason"]})
    return {
        "baseline": config["baseline"],
        "window": config["window"],
        "time_column": config.get("time_column"),
        "alpha": config["alpha"],
        "methods": config["methods"],
        "windows": windows,
        "alerts": alerts,
        "false_alarm_rate": calibration,
        "updated": now(),
    }
