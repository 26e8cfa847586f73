"""Check and audit summaries logged to MLflow, read back from a local file-based tracking store."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.audit_helpers import make_folder
from helpers.synthetic_runs import blob, write_run
from test_audit_cli import cli_args
from test_check import Spot, write_images
from typer.testing import CliRunner

from salience.audit.summary import summarize
from salience.cli import app
from salience.errors import SalienceError
from salience.export.mlflow import check_metrics, log_audit, log_check, metric_key
from salience.store.layout import write_json

REPORT: dict[str, Any] = {
    "model": "torchvision:resnet18",
    "samples": 8,
    "methods": {
        "gradcam": {"deletion_auc": 0.2, "insertion_auc": 0.7, "trusted": True, "control": False,
                    "ms_per_image": 3.5, "verdict": "usable", "road_morf": None},
        "a/../b:c=1": {"deletion_auc": 0.4, "trusted": False, "sparseness": float("nan")},
    },
    "controls": {"random": {"deletion_auc": 0.5, "trusted": False, "control": True}},
    "config": {"steps": 20, "seed": 0},
}  # fmt: skip


@pytest.fixture
def mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """mlflow with a file store under ``tmp_path`` (skipped when mlflow is not installed)."""
    module = pytest.importorskip("mlflow", reason="mlflow is not installed")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 refuses it otherwise
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.delenv("MLFLOW_RUN_ID", raising=False)
    module.set_tracking_uri((tmp_path / "mlruns").as_uri())
    return module


def read_back(mlflow: Any, run_id: str) -> tuple[Any, list[str]]:
    client = mlflow.MlflowClient()
    return client.get_run(run_id).data, [a.path for a in client.list_artifacts(run_id)]


def test_metric_names_are_safe_and_flags_are_not_metrics() -> None:
    assert metric_key("a/../b:c=1", "x") == "a___b_c_1/x"
    assert metric_key("..", "..") == "x/x"
    assert check_metrics(REPORT) == {
        "gradcam/deletion_auc": 0.2,
        "gradcam/insertion_auc": 0.7,
        "gradcam/trusted": 1.0,
        "gradcam/ms_per_image": 3.5,
        "a___b_c_1/deletion_auc": 0.4,
        "a___b_c_1/trusted": 0.0,
        "random/deletion_auc": 0.5,
    }


def test_check_report_is_logged_with_its_files(tmp_path: Path, mlflow: Any) -> None:
    out = tmp_path / "check"
    write_json(out / "report.json", REPORT)
    (out / "report.html").write_text("<!DOCTYPE html><title>r</title>")
    run_id = log_check(REPORT, out)
    data, files = read_back(mlflow, run_id)
    assert data.metrics == check_metrics(REPORT)
    assert data.params["model"] == "torchvision:resnet18" and data.params["samples"] == "8"
    assert data.params["methods"] == "gradcam,a/../b:c=1"
    assert data.params["config.steps"] == "20"
    assert data.tags["salience.command"] == "check"
    assert sorted(files) == ["report.html", "report.json"]
    runs = mlflow.search_runs(experiment_ids=["0"])
    assert list(runs["run_id"]) == [run_id] and runs["status"].iloc[0] == "FINISHED"


def test_audit_summary_is_logged(tmp_path: Path, mlflow: Any) -> None:
    maps = np.stack([blob(0.5, 0.5, 0.2)] * 4).astype(np.float32)
    run = write_run(
        tmp_path / "run", ["cat", "dog", "cat", "dog"], ["cat"] * 4, maps, ["cat", "dog"]
    )
    summary = summarize(run)
    summary["skipped"] = {"total": 3, "reasons": {"unreadable": 2, "too large": 1}}
    write_json(run.path / "summary.json", summary)
    data, files = read_back(mlflow, log_audit(run.path))
    assert data.metrics["accuracy"] == 0.5 and data.metrics["balanced_accuracy"] == 0.5
    assert data.metrics["images"] == 4 and data.metrics["skipped"] == 3
    assert data.metrics["skipped_unreadable"] == 2 and data.metrics["skipped_too_large"] == 1
    assert data.params["methods"] == "gradcam" and data.params["samples"] == "4"
    assert sorted(files) == ["run.json", "summary.json"]


def test_missing_mlflow_and_refused_stores_are_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # import mlflow -> ImportError
    with pytest.raises(SalienceError, match=r"pip install 'salience\[mlflow\]'"):
        log_check(REPORT, tmp_path)
    data = tmp_path / "data"
    write_images(data, 2)
    args = ["check", "-m", "x.pt", "-d", str(data), "--log-to", "mlflow"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "pip install 'salience[mlflow]'" in result.output
    assert "Traceback" not in result.output


def test_a_refused_file_store_says_what_to_set(
    tmp_path: Path, mlflow: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE")
    try:
        log_check(REPORT, tmp_path)
    except SalienceError as exc:
        assert "MLFLOW_ALLOW_FILE_STORE=true" in str(exc) and "\n" not in str(exc)
    else:
        pytest.skip(f"MLflow {mlflow.__version__} accepts file stores")


def test_cli_check_and_audit_log_to_mlflow(tmp_path: Path, mlflow: Any) -> None:
    import torch

    model = tmp_path / "spot.pt"
    torch.jit.script(Spot().eval()).save(str(model))
    write_images(tmp_path / "images", 3)
    check = [
        *("check", "--model", str(model), "--data", str(tmp_path / "images")),
        *("--samples", "2", "--method", "gradient", "--out", str(tmp_path / "check")),
        *("--device", "cpu", "--preprocess", "unit:size=16,resize=16", "--steps", "2"),
        *("--layers", "1", "--json", "--log-to", "mlflow"),
    ]
    result = CliRunner().invoke(app, check)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout[result.stdout.index("{") :])
    make_folder(tmp_path / "data", per_class=1)
    result = CliRunner().invoke(app, [*cli_args(tmp_path), "--json", "--log-to", "mlflow"])
    assert result.exit_code == 0, result.output
    runs = mlflow.search_runs(experiment_ids=["0"], order_by=["attributes.start_time"])
    assert list(runs["tags.salience.command"]) == ["check", "audit"]
    checked = runs.iloc[0]
    assert checked["metrics.gradient/trusted"] == float(report["methods"]["gradient"]["trusted"])
    assert checked["params.model"] == str(model)
    audited = runs.iloc[1]
    assert audited["metrics.images"] == 3 and audited["params.methods"] == "gradcam"
