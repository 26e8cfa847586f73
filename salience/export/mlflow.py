"""Check and audit summaries logged to MLflow: metrics, parameters and the files as artifacts.

MLflow reads the tracking server from ``MLFLOW_TRACKING_URI`` and the experiment from
``MLFLOW_EXPERIMENT_NAME`` itself. Metric names are ``<method>/<metric>`` (check) and
``<metric>``, ``skipped_<reason>`` and ``map_errors/<method>`` (audit), reduced to characters
MLflow accepts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from salience.check.files import PAGE, REPORT
from salience.errors import SalienceError
from salience.jsonsafe import finite
from salience.store.layout import MANIFEST, SUMMARY, read_json
from salience.store.manifest import read_manifest

INSTALL = "logging to MLflow needs mlflow: pip install 'salience[mlflow]'"
PARAM_LIMIT = 500  # characters of a parameter value every MLflow version accepts
AUDIT_METRICS = ("images", "predicted", "labelled", "accuracy", "balanced_accuracy")


def require_mlflow() -> Any:
    """The ``mlflow`` module, or a one-line :class:`SalienceError` saying how to install it."""
    try:
        import mlflow
    except ImportError:
        raise SalienceError(INSTALL) from None
    return mlflow


def metric_key(*parts: str) -> str:
    """``parts`` joined by ``/``, each reduced to ``[A-Za-z0-9_.-]`` (no ``..``)."""
    clean = (re.sub(r"[^A-Za-z0-9_.-]+", "_", p).replace("..", "_").strip("._") for p in parts)
    return "/".join(c or "x" for c in clean)


def check_metrics(report: Mapping[str, Any]) -> dict[str, float]:
    """``report.json`` -> ``{method/metric: value}``: ``trusted`` as 0/1 and every finite
    number, for the methods and the controls."""
    out: dict[str, float] = {}
    for group in ("methods", "controls"):
        for method, entry in (report.get(group) or {}).items():
            for key, value in entry.items():
                if isinstance(value, bool) and (key != "trusted" or group == "controls"):
                    continue  # flags other than a method's verdict are not metrics
                number = finite(value) if isinstance(value, int | float) else None
                if number is not None:
                    out[metric_key(method, key)] = number
    return out


def audit_metrics(summary: Mapping[str, Any]) -> dict[str, float]:
    """``summary.json`` -> accuracy, balanced accuracy, counts and skipped images by reason."""
    out = {k: v for k in AUDIT_METRICS if (v := finite(summary.get(k))) is not None}
    skipped = summary.get("skipped") or {}
    out["skipped"] = float(skipped.get("total", 0))
    for reason, n in (skipped.get("reasons") or {}).items():
        out[metric_key(f"skipped_{reason}")] = float(n)  # not skipped/..: "skipped" is a file
    for method, errors in (summary.get("map_errors") or {}).items():
        out[metric_key("map_errors", method)] = float(sum(errors.values()))
    return out


def _params(values: Mapping[str, Any]) -> dict[str, str]:
    return {metric_key(k): str(v)[:PARAM_LIMIT] for k, v in values.items() if v is not None}


@contextmanager
def _mlflow_errors() -> Iterator[None]:
    """MLflow's own failures (no server, a refused store) as one line."""
    mlflow = require_mlflow()
    try:
        yield
    except mlflow.exceptions.MlflowException as exc:
        text = str(exc).strip()
        if "MLFLOW_ALLOW_FILE_STORE" in text:
            raise SalienceError(
                "MLflow refuses its file store (MLFLOW_TRACKING_URI=file:...) unless "
                "MLFLOW_ALLOW_FILE_STORE=true; set that, or use sqlite:///mlflow.db or a server"
            ) from None
        first = (text.splitlines() or [type(exc).__name__])[0][:300]
        hint = "" if os.environ.get("MLFLOW_TRACKING_URI") else " (MLFLOW_TRACKING_URI is not set)"
        raise SalienceError(f"MLflow: {first}{hint}") from None


def _log(
    run_name: str,
    metrics: dict[str, float],
    params: dict[str, str],
    files: list[Path],
    tags: dict[str, str],
) -> str:
    mlflow = require_mlflow()
    from salience import __version__

    with _mlflow_errors(), mlflow.start_run(run_name=run_name) as active:
        mlflow.set_tags({"salience.version": __version__, **tags})
        mlflow.log_params(params)
        mlflow.log_metrics(metrics)
        for path in files:
            if path.is_file():
                mlflow.log_artifact(str(path))
        return str(active.info.run_id)


def log_check(report: Mapping[str, Any], out: str | os.PathLike[str]) -> str:
    """Log a ``salience check`` report to MLflow, with ``out/report.json`` and
    ``out/report.html`` as artifacts; returns the MLflow run id."""
    folder = Path(out)
    params = _params(
        {
            "model": report.get("model"),
            "samples": report.get("samples"),
            "methods": ",".join(report.get("methods") or {}),
            "device": report.get("device"),
            **{f"config.{k}": v for k, v in (report.get("config") or {}).items()},
        }
    )
    return _log(
        f"check {report.get('model', '')}".strip(),
        check_metrics(report),
        params,
        [folder / REPORT, folder / PAGE],
        {"salience.command": "check"},
    )


def log_audit(run: str | os.PathLike[str]) -> str:
    """Log a ``salience audit`` run's summary to MLflow, with ``RUN/summary.json`` and
    ``RUN/run.json`` as artifacts; returns the MLflow run id."""
    folder = Path(run)
    summary = read_json(folder / SUMMARY)
    manifest = read_manifest(folder)
    model = manifest.recorded_model
    params = _params(
        {
            "model": model.spec,
            "weights_sha256": model.weights_sha256,
            "data": manifest.recorded_data.source,
            "samples": summary.get("images"),
            "methods": ",".join(manifest.methods),
            "map_size": "x".join(str(v) for v in manifest.map_size or []),
        }
    )
    return _log(
        f"audit {folder.resolve().name}",
        audit_metrics(summary),
        params,
        [folder / SUMMARY, folder / MANIFEST],
        {"salience.command": "audit", "salience.run": str(folder.resolve())},
    )
