"""``salience attack --run RUN`` writes into the run, and the explorer's Attack tab shows it:
the API (figures, example pictures checked to lie in the attack folder and typed by their
bytes), and the tab in Chromium with hostile strings in attack.json shown as text."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from helpers.browser_helpers import chromium_page, csp_violations, serve
from helpers.synthetic_runs import blob, write_run
from PIL import Image
from typer.testing import CliRunner

from salience.cli import app as cli
from salience.server import create_app
from salience.store.layout import ATTACK

pytest.importorskip("torchattacks")

FACTORY = """
import torch
from torch import nn

def make():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(128, 2),
    )
"""
HOSTILE = '<img src=x onerror="alert(1)">'
PNG = b"\x89PNG\r\n\x1a\n"


def _run(path: Path) -> Path:
    maps = np.stack([blob(0.5, 0.5, 0.2)] * 4).astype(np.float32)
    return write_run(path, ["a", "b", "a", "b"], ["a", "b", "b", "b"], maps, ["a", "b"]).path


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("attack-explorer")
    (tmp / "tiny.py").write_text(FACTORY)
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp / "data" / c).mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp / "data" / c / f"{i}.png")
    attacked, plain = _run(tmp / "attacked"), _run(tmp / "plain")
    args = ["attack", "--model", f"{tmp / 'tiny.py'}:make", "--data", str(tmp / "data")]
    args += ["--preprocess", "half:size=16,resize=16", "--method", "gradient", "--eps", "8/255"]
    args += ["--steps", "2", "--fragility-steps", "2", "--no-manipulation", "--examples", "2"]
    args += ["--run", str(attacked), "--out", str(tmp / "unused")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert not (tmp / "unused").exists()
    report_file = attacked / ATTACK / "attack.json"
    report = json.loads(report_file.read_text())
    report["model"] = HOSTILE
    report["examples"][0]["image"] = HOSTILE
    report_file.write_text(json.dumps(report))
    return {"tmp": tmp, "attacked": attacked, "plain": plain}


@pytest.fixture
def client(folders: dict[str, Path]) -> TestClient:
    app = create_app([folders["attacked"], folders["plain"]])
    return TestClient(app, base_url="http://127.0.0.1")


def test_the_attack_results_and_pictures_of_a_run(
    client: TestClient, folders: dict[str, Path]
) -> None:
    r = client.get("/api/runs/attacked/attack")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["available"] and body["model"] == HOSTILE
    assert body["source"] == "attack/attack.json"
    p = body["prediction"]
    assert p["attack"] == "pgd" and p["budgets"][0]["pixel_255"] == pytest.approx(8)
    assert p["budgets"][0]["input"] == pytest.approx([16 / 255] * 3)  # std 0.5
    (m,) = body["methods"]
    assert m["method"] == "gradient" and 0 <= m["labels_kept"] <= 1
    assert [e["index"] for e in body["examples"]] == [0, 1]
    assert body["examples"][0]["methods"][0]["method"] == "gradient"
    for kind in ("attacked", "perturbation", "map_clean", "map_attacked"):
        pic = client.get(f"/api/runs/attacked/attack/examples/1/{kind}?method=gradient")
        assert pic.status_code == 200 and pic.headers["content-type"] == "image/png"
        assert pic.content.startswith(PNG)
    clean = client.get("/api/runs/attacked/attack/examples/0/clean")
    assert clean.status_code == 200 and clean.content.startswith(PNG)


def test_a_run_without_attack_and_bad_records_are_refused(
    client: TestClient, folders: dict[str, Path]
) -> None:
    r = client.get("/api/runs/plain/attack")
    assert r.status_code == 200 and r.json()["available"] is False
    assert "no attack results" in r.json()["detail"]
    assert client.get("/api/runs/plain/attack/examples/0/clean").status_code == 404
    base = "/api/runs/attacked/attack/examples"
    assert client.get(f"{base}/0/attacked").status_code == 404  # no method
    assert client.get(f"{base}/0/attacked?method=gradcam").status_code == 404
    assert client.get(f"{base}/9/clean").status_code == 404
    assert client.get(f"{base}/0/secret").status_code == 422
    # attack.json pointing out of the examples folder, or at a file that is no picture
    folder = folders["attacked"] / ATTACK
    report = json.loads((folder / "attack.json").read_text())
    (folder / "examples" / "note.png").write_text("<script>alert(1)</script>")
    report["examples"][1]["clean"] = "../run.json"
    report["examples"][0]["clean"] = "examples/note.png"
    original = (folder / "attack.json").read_text()
    try:
        (folder / "attack.json").write_text(json.dumps(report))
        assert client.get(f"{base}/1/clean").status_code == 404
        assert client.get(f"{base}/0/clean").status_code == 404
        (folder / "attack.json").write_text("{not json")
        r = client.get("/api/runs/attacked/attack")
        assert r.status_code == 400 and "not readable JSON" in r.json()["detail"]
    finally:
        (folder / "attack.json").write_text(original)
        (folder / "examples" / "note.png").unlink()


def test_attack_run_must_be_a_run_folder(folders: dict[str, Path], tmp_path: Path) -> None:
    tmp = folders["tmp"]
    args = ["attack", "--model", f"{tmp / 'tiny.py'}:make", "--data", str(tmp / "data")]
    args += ["--run", str(tmp / "data"), "--out", str(tmp_path / "out")]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "is not a run folder" in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.browser
def test_the_attack_tab_in_chromium(folders: dict[str, Path], out_dir: Path) -> None:
    loaded = "els => els.length > 0 && els.every(e => e.complete && e.naturalWidth > 0)"
    app = create_app([folders["attacked"], folders["plain"]])
    with serve(app) as url, chromium_page() as page:
        page.goto(url + "#/overview?run=attacked")
        page.click("[data-testid=attack-tab]")
        page.wait_for_selector("[data-testid=attack-panel] [data-testid=attack-example]")
        sel = "[data-testid=attack-picture]"
        page.eval_on_selector_all(sel, "els => els.forEach(e => { e.loading = 'eager'; })")
        page.wait_for_function(f'() => ({loaded})([...document.querySelectorAll("{sel}")])')
        examples = page.locator("[data-testid=attack-example]")
        assert examples.count() == 2
        pair = examples.first.locator("[data-testid=attack-pair][data-method=gradient]")
        kinds = pair.locator(sel).evaluate_all("els => els.map(e => e.dataset.kind)")
        assert kinds == ["clean", "map_clean", "attacked", "map_attacked", "perturbation"]
        assert page.locator("[data-testid=attack-method][data-method=gradient]").count() == 1
        assert HOSTILE in examples.first.inner_text()  # shown as text, never as markup
        assert "undefined" not in examples.first.inner_text()
        assert page.locator("[data-testid=attack-panel] img[src=x]").count() == 0
        page.screenshot(path=str(out_dir / "1-attack.png"), full_page=True)
        page.select_option("[data-testid=run-select]", "plain")
        page.wait_for_selector("[data-testid=attack-empty]")
        assert not page.errors, page.errors
        assert not page.dialogs and not csp_violations(page)
