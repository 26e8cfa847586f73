"""``salience demo`` end to end at a test size: v1 (biased data) looks at the head and loses
accuracy on the balanced split, v2 looks at the uniform; shortcuts flags v1 and not v2;
compare reports the head-to-uniform shift above its noise floor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from salience.cli import app
from salience.demo.pipeline import MARKER, SIZES, DemoConfig, prepare_out
from salience.errors import SalienceError
from salience.store import Run

# Smaller than --size small; a stronger uniform pattern lets v2 learn it in fewer steps.
TEST_CONFIG = DemoConfig(size=48, train_v1=1000, train_v2=1000, test=240, epochs=6, contrast=0.3)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], str, list[Any]]:
    out = tmp_path_factory.mktemp("demo") / "out"
    served: list[Any] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(SIZES, "small", TEST_CONFIG)
        mp.setattr("salience.cli.serve_cmd.serve", lambda runs, **kw: served.append((runs, kw)))
        res = CliRunner().invoke(app, ["demo", "--size", "small", "--out", str(out)])
    assert res.exit_code == 0, res.output
    return out, json.loads((out / "demo.json").read_text()), res.output, served


def test_demo_json_tells_the_story(demo: tuple[Path, dict[str, Any], str, list[Any]]) -> None:
    _, payload, _, _ = demo
    assert {"v1", "v2", "flagged_v1", "flagged_v2"} <= set(payload)
    v1, v2 = payload["v1"], payload["v2"]
    for v in (v1, v2):
        assert (
            set(v["region_share"]) == set(v["region_density"]) == {"head", "uniform", "background"}
        )
        assert sum(v["region_share"].values()) == pytest.approx(1.0, abs=1e-3)
    assert v1["region_density"]["head"] > v1["region_density"]["uniform"]
    assert v2["region_density"]["uniform"] > v2["region_density"]["head"]
    assert v2["region_density"]["uniform"] > 2.0 and v2["region_density"]["head"] < 1.0
    assert v2["balanced_accuracy"] > v1["balanced_accuracy"] + 0.2
    assert v2["balanced_accuracy"] > 0.85


def test_shortcuts_flag_v1_and_not_v2(demo: tuple[Path, dict[str, Any], str, list[Any]]) -> None:
    out, payload, _, _ = demo
    assert payload["flagged_v1"] and payload["flagged_v2"] == []
    found = json.loads((out / "runs" / "v1" / "shortcuts.json").read_text())
    flagged = [c for c in found["classes"] if c["flagged"]]
    assert [c["class"] for c in flagged] == payload["flagged_v1"]
    assert all("'head'" in c["reason"] for c in flagged)
    clean = json.loads((out / "runs" / "v2" / "shortcuts.json").read_text())
    assert not any(c["flagged"] for c in clean["classes"])


def test_compare_sees_the_shift_above_its_floor(
    demo: tuple[Path, dict[str, Any], str, list[Any]],
) -> None:
    out, _, _, _ = demo
    result = json.loads((out / "compare.json").read_text())
    shift, floor = result["region_shift"], result["noise_floor"]["region_shift"]
    assert shift["head"] < -floor["head"] < 0
    assert shift["uniform"] > floor["uniform"] > 0
    assert result["region_shift_real"]["head"] and result["region_shift_real"]["uniform"]
    assert result["accuracy"]["b"] > result["accuracy"]["a"]
    assert result["fixed"]["count"] > result["broken"]["count"]


def test_demo_writes_runs_reports_and_says_what_to_look_at(
    demo: tuple[Path, dict[str, Any], str, list[Any]],
) -> None:
    out, _, output, served = demo
    for name in ("report-v1.html", "report-v2.html", "compare.json", "data/test.csv"):
        assert (out / name).is_file()
    v1 = Run.open(out / "runs" / "v1")
    assert v1.status == "complete" and v1.count() == TEST_CONFIG.test
    assert v1.regions == ["background", "head", "uniform"]
    hats = v1.samples(["meta_hat_matches"])["meta_hat_matches"]
    assert (hats == "True").mean() == pytest.approx(0.25, abs=0.01)  # the balanced split
    said = " ".join(output.split())  # rich wraps long lines
    assert "v1 scores" in said and "looks at the head" in said and "looks at the uniform" in said
    assert served and [Path(p) for p in served[0][0]] == [out / "runs" / "v1", out / "runs" / "v2"]


def test_demo_refuses_a_folder_it_did_not_write(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    res = CliRunner().invoke(app, ["demo", "--no-serve", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "holds no earlier demo" in res.output
    assert (tmp_path / "notes.txt").read_text() == "mine"
    res = CliRunner().invoke(app, ["demo", "--size", "huge", "--out", str(tmp_path / "x")])
    assert res.exit_code == 2 and "unknown --size" in res.output


def test_a_rerun_replaces_only_the_demo_outputs(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    prepare_out(out)
    (out / "runs" / "v1").mkdir(parents=True)
    (out / "demo.json").write_text("{}")
    (out / "mine.txt").write_text("kept")
    prepare_out(out)  # e.g. a demo interrupted during training, run again
    assert not (out / "runs").exists() and not (out / "demo.json").exists()
    assert (out / "mine.txt").read_text() == "kept" and (out / MARKER).is_file()
    with pytest.raises(SalienceError, match="is a file"):
        prepare_out(out / "mine.txt")
