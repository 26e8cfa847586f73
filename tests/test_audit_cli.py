"""``salience audit`` on the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers.audit_helpers import (
    CLASSES,
    importable_by_ray_workers,
    make_folder,
    skip_without_ray_cluster,
)
from typer.testing import CliRunner

from salience.cli import app
from salience.data.manifest import read_class_names
from salience.store import Run, RunLock

FACTORY = """
import sys
sys.path.insert(0, {tests!r})
from helpers.audit_helpers import TinyNet

def build():
    return TinyNet()
"""


def cli_args(tmp_path: Path, *extra: str) -> list[str]:
    factory = tmp_path / "tiny.py"
    factory.write_text(FACTORY.format(tests=str(Path(__file__).parent)))
    (tmp_path / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    return [
        "audit",
        "--model",
        f"{factory}:build",
        "--data",
        str(tmp_path / "data"),
        "--out",
        str(tmp_path / "run"),
        "--preprocess",
        "half:size=16,resize=16",
        "--classes",
        str(tmp_path / "classes.txt"),
        "--workers",
        "0",
        *extra,
    ]


def test_cli_writes_a_run_and_prints_json(tmp_path: Path) -> None:
    make_folder(tmp_path / "data", per_class=2)
    args = cli_args(
        tmp_path,
        "--method",
        "gradcam",
        "--method",
        "sobel",
        "--map-size",
        "8",
        "--batch-size",
        "4",
        "--json",
    )
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["images"] == 6 and summary["status"] == "complete"
    assert json.loads((tmp_path / "run" / "summary.json").read_text()) == summary
    run = Run.open(tmp_path / "run")
    assert run.methods == ["gradcam", "sobel"] and run.map_size == (8, 8)
    assert run.manifest["class_source"] == "given" and run.class_names == list(CLASSES)
    assert run.manifest["preprocess"]["size"] == 16
    # a rerun of the finished run resumes (nothing to do) and prints the table
    again = CliRunner().invoke(
        app,
        cli_args(
            tmp_path,
            "--method",
            "gradcam",
            "--method",
            "sobel",
            "--map-size",
            "8",
            "--batch-size",
            "4",
        ),
    )
    assert again.exit_code == 0, again.output
    assert "accuracy" in again.stdout and "saliency outside the masks" in again.stdout


def test_cli_refuses_a_second_writer_in_one_line(tmp_path: Path) -> None:
    make_folder(tmp_path / "data", per_class=1)
    with RunLock(tmp_path / "run"):
        result = CliRunner().invoke(app, cli_args(tmp_path))
    assert result.exit_code == 2
    assert "being written by another audit" in result.output
    assert "Traceback" not in result.output


def test_cli_bad_map_size(tmp_path: Path) -> None:
    make_folder(tmp_path / "data", per_class=1)
    result = CliRunner().invoke(app, cli_args(tmp_path, "--map-size", "big"))
    assert result.exit_code == 2 and "bad map size" in result.output


def test_read_class_names(tmp_path: Path) -> None:
    (tmp_path / "c.json").write_text(json.dumps({"1": "b", "0": "a"}))
    assert read_class_names(tmp_path / "c.json") == ["a", "b"]
    (tmp_path / "c.csv").write_text("class_index,class_name\n1,bee\n0,ant\n")
    assert read_class_names(tmp_path / "c.csv") == ["ant", "bee"]
    (tmp_path / "c.txt").write_text("x\n\ny\n")
    assert read_class_names(tmp_path / "c.txt") == ["x", "y"]


def test_cli_ray_executor_writes_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ray")
    importable_by_ray_workers(monkeypatch)
    make_folder(tmp_path / "data", per_class=2)
    args = cli_args(tmp_path, "--executor", "ray", "--shard-size", "2", "--map-size", "8", "--json")
    result = CliRunner().invoke(app, args)
    skip_without_ray_cluster(result.output)
    assert result.exit_code == 0, result.output
    run = Run.open(tmp_path / "run")
    assert run.status == "complete" and run.manifest["counts"]["shards_done"] == 3
    assert run.count() == 6 and run.samples().sample_id.is_unique


def test_cli_unknown_executor(tmp_path: Path) -> None:
    make_folder(tmp_path / "data", per_class=1)
    result = CliRunner().invoke(app, cli_args(tmp_path, "--executor", "dask"))
    assert result.exit_code == 2
    assert "Invalid value for '--executor'" in result.output and "'dask'" in result.output
