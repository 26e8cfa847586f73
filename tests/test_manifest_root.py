"""A manifest of absolute paths (the usual hand-written CSV) works in audit, check and explain
without --root; a row outside an explicit --root is refused, and the one-line error says how
many rows and why."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from helpers.audit_helpers import image
from typer.testing import CliRunner, Result

from salience.cli import app
from salience.data import read_dataset
from salience.store import Run

FACTORY = """
import sys
sys.path.insert(0, {tests!r})
from helpers.audit_helpers import TinyNet

def build():
    return TinyNet(classes=2)
"""
PRE = ["--preprocess", "half:size=16,resize=16", "--device", "cpu"]


@pytest.fixture
def absolute(tmp_path: Path) -> Path:
    """``lists/m.csv`` naming ``photos/{a,b}/*.png`` by absolute path (no common folder with
    the manifest)."""
    rows = []
    for k, cls in enumerate(("ant", "bee", "ant", "bee")):
        folder = tmp_path / "photos" / ("a" if k < 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        image(k).save(folder / f"{k}.png")
        rows.append({"path": str(folder / f"{k}.png"), "label": cls})
    (tmp_path / "lists").mkdir()
    pd.DataFrame(rows).to_csv(tmp_path / "lists" / "m.csv", index=False)
    return tmp_path / "lists" / "m.csv"


def _model(tmp_path: Path) -> list[str]:
    factory = tmp_path / "tiny.py"
    factory.write_text(FACTORY.format(tests=str(Path(__file__).parent)))
    return ["--model", f"{factory}:build"]


def _one_line_error(result: Result, *needles: str) -> str:
    assert result.exit_code == 2, result.output
    message = result.stderr.strip()
    assert message.startswith("error:") and "\n" not in message, message
    for needle in needles:
        assert needle in message, message
    return message


def test_default_root_is_the_common_parent(absolute: Path, tmp_path: Path) -> None:
    ds = read_dataset(absolute)
    assert ds.root == (tmp_path / "photos").resolve()
    assert [i.path for i in ds.items] == ["a/0.png", "a/1.png", "b/2.png", "b/3.png"]
    assert all(i.error is None for i in ds.items)
    # relative rows are read from the manifest's folder, and the root covers both
    frame = pd.read_csv(absolute)
    frame.loc[len(frame)] = ["x.png", "ant"]
    image(9).save(absolute.parent / "x.png")
    frame.to_csv(absolute, index=False)
    mixed = read_dataset(absolute)
    assert mixed.root == tmp_path.resolve()
    assert mixed.items[-1].path == "lists/x.png" and mixed.items[-1].error is None
    assert mixed.items[0].path == "photos/a/0.png"


def test_audit_check_explain_read_absolute_paths_without_root(
    absolute: Path, tmp_path: Path
) -> None:
    model = _model(tmp_path)
    runner = CliRunner()
    audit = ["audit", *model, *PRE, "--data", str(absolute), "--out", str(tmp_path / "run")]
    result = runner.invoke(app, [*audit, "--workers", "0", "--json"])
    assert result.exit_code == 0, result.output
    df = Run.open(tmp_path / "run").samples()
    assert df["error"].isna().all() and df["pred"].notna().all() and len(df) == 4
    check = ["check", *model, *PRE, "--data", str(absolute), "--out", str(tmp_path / "chk")]
    check += ["--samples", "2", "--method", "gradient", "--steps", "2", "--layers", "1"]
    result = runner.invoke(app, check)
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "chk" / "report.json").read_text())
    assert report["images"] == [
        str((tmp_path / "photos" / "a" / "0.png").resolve()),
        str((tmp_path / "photos" / "b" / "2.png").resolve()),
    ]
    explain = ["explain", str(absolute), *model, *PRE, "--method", "gradient"]
    result = runner.invoke(app, [*explain, "--out", str(tmp_path / "exp")])
    assert result.exit_code == 0, result.output
    payload = json.loads((tmp_path / "exp" / "explain.json").read_text())
    assert [Path(r["path"]).name for r in payload["images"]] == ["0.png", "1.png", "2.png", "3.png"]


def test_rows_outside_an_explicit_root_are_refused_with_a_count(
    absolute: Path, tmp_path: Path
) -> None:
    model = _model(tmp_path)
    runner = CliRunner()
    only_a = str(tmp_path / "photos" / "a")
    run = tmp_path / "run"
    audit = ["audit", *model, *PRE, "--data", str(absolute), "--out", str(run), "--root", only_a]
    result = runner.invoke(app, [*audit, "--workers", "0", "--json"])
    assert result.exit_code == 0, result.output
    df = Run.open(run).samples()
    assert df["error"].isna().tolist() == [True, True, False, False]
    assert df["error"].iloc[2].startswith("outside root:")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["skipped"]["reasons"] == {"outside root": 2}
    explain = ["explain", str(absolute), *model, *PRE, "--root", only_a, "--out", str(run / "e")]
    _one_line_error(
        runner.invoke(app, explain), "2 of 4 rows refused: 2 outside root", "pass --root"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    check = ["check", *model, *PRE, "--data", str(absolute), "--root", str(empty)]
    _one_line_error(
        runner.invoke(app, [*check, "--out", str(tmp_path / "chk")]),
        "no readable images",
        "4 of 4 rows refused: 4 outside root",
        "is outside the data root",
    )
