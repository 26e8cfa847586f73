"""``salience report``: one self-contained HTML file whose matrix, embedded samples, sampling
note and shortcut findings agree with the run."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from pathlib import Path

import pytest
from helpers.explorer_runs import make_runs
from PIL import Image
from typer.testing import CliRunner

from salience.errors import SalienceError
from salience.report import write_report
from salience.store import Run

SHORTCUTS = {
    "classes": [
        {"class": "chef", "flagged": True, "reason": "70% of chef images are decided from the hat",
         "region_share": {"head": 0.7, "uniform": 0.2},
         "clusters": [{"size": 7, "share": 0.7, "flagged": True, "centroid": [0.2, 0.5]}]},
        {"class": "doctor", "flagged": False, "reason": "decided from the uniform",
         "region_share": {"head": 0.1, "uniform": 0.8}, "clusters": []},
    ]
}  # fmt: skip


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_runs(tmp_path_factory.mktemp("report"))[0]


def sections(html: str) -> dict[tuple[str, str], list[str]]:
    """(true, pred) -> sample ids embedded in that cell's section."""
    out = {}
    for block in re.split(r'(?=<div class="cell" id=")', html)[1:]:
        head = re.search(r"true (.+?) → predicted (.+?) · (\d+) images", block)
        assert head
        out[(head.group(1), head.group(2))] = re.findall(r'data-sample-id="([^"]+)"', block)
    return out


def test_report_is_self_contained_and_matches_the_run(run_dir: Path, tmp_path: Path) -> None:
    run = Run.open(run_dir)
    out = tmp_path / "report.html"
    data = write_report(run, out, max_images=20, per_cell=3)
    html = out.read_text()
    assert not re.search(r'(src|href)="(https?:)?//', html) and "<script src" not in html
    srcs = re.findall(r'<img src="([^"]+)"', html)
    assert srcs and all(s.startswith("data:image/jpeg;base64,") for s in srcs)
    img = Image.open(io.BytesIO(base64.b64decode(srcs[0].split(",", 1)[1])))
    assert max(img.size) <= 112
    cm = run.confusion_matrix()
    cells = re.findall(r'data-true="([^"]+)" data-pred="([^"]+)" data-count="(\d+)"', html)
    assert {(t, p): int(n) for t, p, n in cells} == {
        (t, p): int(cm.loc[t, p]) for t in cm.index for p in cm.columns if cm.loc[t, p]
    }
    samples = run.samples().set_index("sample_id")
    embedded = sections(html)
    total = 0
    for (t, p), ids in embedded.items():
        assert len(ids) <= 3 and len(set(ids)) == len(ids)
        assert all(samples.label[i] == t and samples.pred[i] == p for i in ids)
        total += len(ids)
    assert total == data.embedded == 20
    mistakes = sum(min(3, int(cm.loc[t, p])) for t in cm.index for p in cm.columns if t != p)
    assert sum(len(v) for (t, p), v in embedded.items() if t != p) == min(20, mistakes)
    assert "embeds 20 of 48 images" in html and "Shortcut findings" not in html
    assert len(re.findall(r"<figure>", html)) == 20 * (1 + len(run.methods))


def test_small_runs_embed_everything_deterministically(run_dir: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a.html", tmp_path / "b.html"
    write_report(run_dir, a, max_images=1000, per_cell=100, methods=["gradcam"])
    write_report(run_dir, b, max_images=1000, per_cell=100, methods=["gradcam"])
    html = a.read_text()
    assert html == b.read_text()
    assert "This report embeds" not in html
    assert sum(len(v) for v in sections(html).values()) == 48
    assert len(re.findall(r"<figure>", html)) == 48 * 2
    with pytest.raises(SalienceError, match="no occlusion maps"):
        write_report(run_dir, a, methods=["occlusion"])


def test_shortcut_findings_are_reported_when_present(run_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    (copy / "shortcuts.json").write_text(json.dumps(SHORTCUTS))
    write_report(copy, tmp_path / "r.html", max_images=0)
    html = (tmp_path / "r.html").read_text()
    block = html[html.index('id="shortcuts"') :]
    assert "1 of 2 classes flagged" in block
    assert "decided from the hat" in block and "head 70%" in block
    assert "Not embedded" in html


def test_report_command(run_dir: Path, tmp_path: Path) -> None:
    from salience.cli import app

    out = tmp_path / "cli.html"
    res = CliRunner().invoke(app, ["report", str(run_dir), "-o", str(out), "--json",
                                   "--max-images", "5", "-m", "gradcam"])  # fmt: skip
    assert res.exit_code == 0, res.output
    summary = json.loads(res.output)
    assert summary["embedded"] == 5 and summary["methods"] == ["gradcam"]
    assert summary["bytes"] == out.stat().st_size
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "nope"), "-o", str(out)])
    assert bad.exit_code == 2 and "does not exist" in bad.output
