"""Class-wide shortcuts: the statistics against closed forms, runs with known maps (a mark on
every image of one class, a mark on 30% of all images, a centred object class), and a model
that provably decides one class from a corner stamp, confirmed by intervention."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.shortcut_models import CLASSES, pictures, write_folder
from helpers.synthetic_runs import blob, write_run
from typer.testing import CliRunner

from salience.audit import audit
from salience.audit.class_shortcuts import ClassWideParams, class_box, overlap, peaks_in, spread
from salience.audit.intervention import _elsewhere, _fill, _paste, intervene, run_model
from salience.audit.shortcuts import ShortcutParams, find_shortcuts
from salience.cli import app
from salience.models import load_model
from salience.store import Run
from salience.store.layout import read_json, write_json


# ------------------------------------------------------------------------------ statistics
def test_class_box_is_the_connected_hot_part_around_the_peak() -> None:
    m = np.zeros((8, 8))
    m[6:8, 5:8] = [[0.6, 1.0, 0.7], [0.5, 0.9, 0.2]]
    m[0, 0] = 0.8  # hot but not connected to the peak
    assert class_box(m, 0.5) == (6 / 8, 5 / 8, 1.0, 1.0)
    assert class_box(m, 0.95) == (6 / 8, 6 / 8, 7 / 8, 7 / 8)


def test_peaks_in_grows_the_box_by_a_cell() -> None:
    grids = np.zeros((3, 8, 8))
    grids[0, 7, 7] = grids[1, 5, 5] = grids[2, 1, 1] = 1.0
    box = (6 / 8, 6 / 8, 1.0, 1.0)
    assert peaks_in(grids, box, grow=0).tolist() == [True, False, False]
    assert peaks_in(grids, box).tolist() == [True, True, False]


def test_overlap_is_the_mean_pairwise_share_of_hottest_cells() -> None:
    rng = np.random.default_rng(0)
    grids = rng.random((12, 6, 6)) + 0.01
    grids[:6, 0, :3] += 5  # half the maps share three of their four hottest cells
    k = round(0.1 * 36)
    hot = [set(np.argsort(-g.ravel())[:k]) for g in grids]
    pairs = [len(hot[i] & hot[j]) / k for i in range(12) for j in range(12) if i != j]
    assert overlap(grids, 0.1) == pytest.approx(np.mean(pairs))
    same = np.repeat(grids[:1], 5, 0)
    assert overlap(same, 0.1) == pytest.approx(1.0)


def test_spread_is_the_rms_distance_from_the_median() -> None:
    pts = np.array([[0.5, 0.5], [0.5, 0.5], [0.8, 0.9]])
    assert spread(pts) == pytest.approx(np.sqrt(0.25 / 3))
    assert spread(np.repeat(pts[:1], 4, 0)) == 0.0


# --------------------------------------------------------------------- runs with known maps
def _object(rng: np.random.Generator) -> np.ndarray:
    """Evidence on an object somewhere in the middle of the picture."""
    return blob(rng.uniform(0.25, 0.75), rng.uniform(0.25, 0.75), 0.08)


def _maps_run(tmp_path: Path, case: str, n: int = 40) -> tuple[Run, np.ndarray]:
    """Three classes whose maps show moving objects, plus, by ``case``: ``class``: a corner
    mark decides every "logo" image; ``random``: 30% of all images have it; ``centred``:
    "logo" is an object that always sits in the centre."""
    rng = np.random.default_rng(5)
    labels, maps, marked = [], [], []
    for name in ("logo", "cat", "dog"):
        for _ in range(n):
            mark = (case == "class" and name == "logo") or (case == "random" and rng.random() < 0.3)
            if case == "centred" and name == "logo":
                m = blob(0.5 + rng.normal(0, 0.02), 0.5 + rng.normal(0, 0.02), 0.12)
            else:
                m = 0.3 * _object(rng) + (blob(0.9, 0.9, 0.04) if mark else 0)
            labels.append(name)
            maps.append(m + rng.random((32, 32)) * 0.02)
            marked.append(mark)
    run = write_run(
        tmp_path / "run", labels, labels, np.array(maps, np.float32), ["logo", "cat", "dog"]
    )
    return run, np.array(marked)


def test_a_mark_on_every_image_of_a_class_is_a_class_wide_finding(tmp_path: Path) -> None:
    run, marked = _maps_run(tmp_path, "class")
    result = find_shortcuts(run)
    by_class = {c["class"]: c for c in result["classes"]}
    logo = by_class["logo"]
    assert result["flagged"] == ["logo"]
    assert logo["kind"] == "class" and logo["flagged"]
    # SpRAy alone sees one strategy: the class-wide test is what flags it
    assert not any(c["flagged"] for c in logo["clusters"])
    y0, x0, y1, x1 = logo["box"]
    assert 0.75 <= y0 < 0.9 < y1 and 0.75 <= x0 < 0.9 < x1  # around the mark at (0.9, 0.9)
    wide = logo["class_wide"]
    assert wide["share"] >= 0.9 and wide["other_share"] <= 0.1
    assert wide["overlap"] > 2 * by_class["cat"]["class_wide"]["overlap"], by_class["cat"][
        "class_wide"
    ]["overlap"]
    assert wide["peak_spread"] < 0.1 < by_class["cat"]["class_wide"]["peak_spread"]
    assert wide["confirmed"] is None and wide["intervention"] is None
    assert "not confirmed: pass --model to test it" in logo["reason"]
    assert np.array(wide["mean_map"]).shape == np.array(wide["others_map"]).shape == (16, 16)
    ids = run.samples()["sample_id"].to_numpy()
    assert set(wide["examples"]) <= set(ids[marked]) and wide["examples"]
    assert [(f["class"], f["kind"]) for f in result["findings"]] == [("logo", "class")]
    assert result["findings"][0]["box"] == logo["box"]
    assert json.loads(json.dumps(result, allow_nan=False)) == result


def test_a_mark_on_a_random_30_percent_of_all_images_is_not_class_wide(tmp_path: Path) -> None:
    run, marked = _maps_run(tmp_path, "random")
    assert 0.2 < marked.mean() < 0.4
    result = find_shortcuts(run)
    for c in result["classes"]:
        assert c["kind"] != "class" and not c["class_wide"]["flagged"], c["reason"]
        assert c["class_wide"]["share"] < 0.6


def test_a_centred_object_class_is_not_flagged(tmp_path: Path) -> None:
    run, _ = _maps_run(tmp_path, "centred")
    result = find_shortcuts(run)
    logo = next(c for c in result["classes"] if c["class"] == "logo")
    assert logo["class_wide"]["share"] > 0.9  # it does sit still ...
    assert not logo["class_wide"]["flagged"] and result["flagged"] == []  # ... but it is big


def test_clusters_of_moving_objects_are_not_minority_shortcuts(tmp_path: Path) -> None:
    """With many images SpRAy splits moving objects by position, and a cluster off to one side
    looks like a watermark; other classes' objects go there as often, so none is flagged."""
    run, _ = _maps_run(tmp_path, "none", n=240)
    result = find_shortcuts(run)
    clusters = [k for c in result["classes"] for k in c["clusters"]]
    assert result["flagged"] == [], [c["reason"] for c in result["classes"]]
    off = [k for k in clusters if k["distance"] >= 0.25 and k["share"] <= 0.5]
    assert off and all(k["class_share"] < 3 * k["other_share"] for k in off)
    loose = ShortcutParams(class_wide=ClassWideParams(min_contrast=0.0))
    alone = find_shortcuts(run, params=loose)["findings"]  # what SpRAy alone would say
    assert alone and {f["kind"] for f in alone} == {"cluster"}


# ---------------------------------------------------------------- a model that reads a stamp
@pytest.fixture(scope="module")
def stamp_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """:class:`CornerNet` audited with gradients on 30 pictures per class; ``run.json``
    records the loadable spec ``helpers.shortcut_models:corner_net``."""
    tmp = tmp_path_factory.mktemp("stamp")
    write_folder(tmp / "data", pictures(30))
    model = load_model(
        "helpers.shortcut_models:corner_net",
        preprocess="unit:size=32,resize=32",
        class_names=CLASSES,
    )
    audit(model, tmp / "data", tmp / "run", ["gradient"], map_size=32)
    return Run.open(tmp / "run")


def test_the_stamp_is_flagged_and_confirmed_by_intervention(stamp_run: Run) -> None:
    model, why = run_model(stamp_run)
    assert model is not None, why
    result = find_shortcuts(stamp_run, model=model)
    by_class = {c["class"]: c for c in result["classes"]}
    assert result["flagged"] == ["stamped"]
    stamped = by_class["stamped"]
    assert stamped["kind"] == "class"
    y0, x0, _, _ = stamped["box"]
    assert y0 >= 0.75 and x0 >= 0.75  # the 6x6 corner the model reads starts at 26/32
    wide = stamped["class_wide"]
    assert wide["confirmed"] is True
    done = wide["intervention"]
    assert done["images"] == 30 and done["kept_by_model"] == 1.0
    assert done["removed"] >= 0.9 and done["removed_control"] <= 0.1
    assert done["pasted"] >= 0.9 and done["pasted_control"] <= 0.1
    assert "confirmed" in stamped["reason"] and "100%" in stamped["reason"]
    for name in ("red", "green", "centred"):
        assert not by_class[name]["flagged"], by_class[name]["reason"]


def test_without_a_model_the_finding_says_it_is_not_confirmed(stamp_run: Run) -> None:
    result = find_shortcuts(stamp_run)
    stamped = next(c for c in result["classes"] if c["class"] == "stamped")
    assert stamped["flagged"] and stamped["class_wide"]["confirmed"] is None
    assert stamped["reason"].endswith("not confirmed: pass --model to test it")


def test_a_model_that_ignores_the_place_refutes_the_map(stamp_run: Run) -> None:
    """The same maps tested on a model that calls every picture "stamped": filling the corner
    changes nothing, so the class is not flagged and the reason says why."""
    model, _ = run_model(stamp_run)
    assert model is not None
    model.module = _Always()
    result = find_shortcuts(stamp_run, model=model)
    stamped = next(c for c in result["classes"] if c["class"] == "stamped")
    assert stamped["class_wide"]["confirmed"] is False and not stamped["flagged"]
    assert stamped["class_wide"]["intervention"]["removed"] == 0.0
    assert "does not depend on it" in stamped["reason"]


class _Always(torch.nn.Module):
    """Logits that always pick class 0, whatever the picture."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.zeros(len(x), len(CLASSES), device=x.device)
        out[:, 0] = 1.0
        return out


def test_the_cli_tests_the_runs_own_model(stamp_run: Run, tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["shortcuts", str(stamp_run.path), "-o", str(tmp_path / "a")])
    assert res.exit_code == 0, res.output
    found = json.loads((tmp_path / "a").read_text())
    assert found["findings"][0]["confirmed"] is True and found["findings"][0]["kind"] == "class"
    assert "class" in next(line for line in res.output.splitlines() if "stamped" in line)
    res = CliRunner().invoke(
        app, ["shortcuts", str(stamp_run.path), "--no-model", "-o", str(tmp_path / "b")]
    )
    assert res.exit_code == 0, res.output
    found = json.loads((tmp_path / "b").read_text())
    assert found["findings"][0]["confirmed"] is None
    assert "--no-model was given" in found["findings"][0]["reason"]


def test_a_model_recorded_as_a_python_file_is_not_run(stamp_run: Run, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    copy.mkdir()
    manifest = read_json(stamp_run.path / "run.json")
    manifest["model"]["spec"] = str(tmp_path / "evil.py") + ":factory"
    (tmp_path / "evil.py").write_text("raise SystemExit('ran')\n")
    write_json(copy / "run.json", manifest)
    model, why = run_model(Run(copy, manifest))
    assert model is None and "Python file" in why
    manifest["model"]["spec"] = "synthetic"
    model, why = run_model(Run(copy, manifest))
    assert model is None and "cannot be loaded" in why


@pytest.mark.slow
def test_a_trained_cnn_with_a_stamp_on_every_chef_is_caught(tmp_path: Path) -> None:
    """The issue's case: every chef carries the corner stamp, the trained CNN decides chef from
    it (its recall is perfect), SpRAy sees one strategy, the class-wide test flags the corner
    and filling it flips the model's chef decisions."""
    from salience.data.demo import generate, write
    from salience.demo.model import ProfessionNet
    from salience.demo.pipeline import load_demo_model
    from salience.demo.train import TrainConfig, train

    size, names = 48, ("chef", "doctor", "referee", "sailor")
    train_set = generate(900, seed=1, size=size, watermark_class="chef", watermark_rate=1.0)
    test_set = generate(240, seed=2, size=size, watermark_class="chef", watermark_rate=1.0)
    manifest = write(test_set, tmp_path / "data", "test", masks=False)
    torch.manual_seed(0)
    net = ProfessionNet()
    train(net, train_set.images, train_set.labels, TrainConfig(epochs=4))
    torch.save(net.state_dict(), tmp_path / "model.pt")
    audit(load_demo_model(tmp_path / "model.pt", size, names), manifest, tmp_path / "run",
          ["gradcam"], map_size=size)  # fmt: skip
    run = Run.open(tmp_path / "run")
    model, why = run_model(run)
    assert model is not None, why
    result = find_shortcuts(run, model=model)
    chef = next(c for c in result["classes"] if c["class"] == "chef")
    assert result["flagged"] == ["chef"] and chef["kind"] == "class"
    assert not any(c["flagged"] for c in chef["clusters"])
    y0, x0, y1, x1 = chef["box"]
    assert y0 < 0.89 < y1 and x0 < 0.89 < x1 and y0 >= 0.5 and x0 >= 0.5  # the stamp's corner
    done = chef["class_wide"]["intervention"]
    assert chef["class_wide"]["confirmed"] is True
    assert done["removed"] >= 0.8 and done["removed_control"] <= 0.2


# -------------------------------------------------------------------- intervention pieces
def test_the_control_box_never_overlaps_the_box() -> None:
    for box in [(26, 26, 32, 32), (12, 12, 20, 20), (0, 10, 4, 22)]:
        y0, x0, y1, x1 = box
        c = _elsewhere(box, 32, 32)
        assert (c[2] - c[0], c[3] - c[1]) == (y1 - y0, x1 - x0)
        assert c[0] >= y1 or c[2] <= y0 or c[1] >= x1 or c[3] <= x0
        assert min(c) >= 0 and max(c) <= 32


def test_fill_uses_the_colour_around_the_box_and_paste_copies_it() -> None:
    views = np.zeros((2, 8, 8, 3), np.uint8)
    views[:] = 40
    views[:, 6:, 6:] = 255  # the stamp
    filled = _fill(views, (6, 6, 8, 8))
    assert (filled[:, 6:, 6:] == 40).all() and (views[:, 6:, 6:] == 255).all()  # input kept
    pasted = _paste(views, filled, (6, 6, 8, 8))
    assert (pasted[:, 6:, 6:] == 255).all() and (pasted[:, :6] == 40).all()


def test_intervene_refuses_a_class_without_images(stamp_run: Run) -> None:
    model, _ = run_model(stamp_run)
    assert model is not None
    with pytest.raises(Exception, match="no stamped image"):
        intervene(model, stamp_run, "stamped", (0.8, 0.8, 1.0, 1.0), [], [])


# ------------------------------------------------------------------------ explorer payload
def test_the_explorer_overview_carries_the_class_wide_finding(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from salience.server import create_app

    run, _ = _maps_run(tmp_path, "class")
    write_json(run.path / "shortcuts.json", find_shortcuts(run))
    client = TestClient(create_app([run.path]), base_url="http://127.0.0.1")
    run_id = client.get("/api/runs").json()["runs"][0]["id"]
    shortcuts = client.get(f"/api/runs/{run_id}/overview").json()["shortcuts"]
    by_class = {s["class"]: s for s in shortcuts}
    logo, cat = by_class["logo"], by_class["cat"]
    assert logo["kind"] == "class" and logo["box"] == logo["class_wide"]["box"]
    assert np.array(logo["class_wide"]["mean_map"]).shape == (16, 16)
    assert np.array(logo["class_wide"]["others_map"]).shape == (16, 16)
    assert logo["class_wide"]["confirmed"] is None and logo["class_wide"]["examples"]
    # maps travel only for classes the maps flagged
    assert cat["kind"] is None and cat["class_wide"]["mean_map"] is None


def test_the_report_shows_the_class_wide_maps(tmp_path: Path) -> None:
    from salience.report import write_report

    run, _ = _maps_run(tmp_path, "class")
    write_json(run.path / "shortcuts.json", find_shortcuts(run))
    write_report(run.path, tmp_path / "r.html", max_images=0)
    html = (tmp_path / "r.html").read_text()
    block = html[html.index('id="shortcuts"') :]
    assert "1 of 3 classes flagged" in block and "<th>Kind</th>" in block
    row = next(r for r in block.split("<tr>") if r.startswith("<td>logo</td>"))
    assert "<td>class</td>" in row and "not confirmed" in row
    assert row.count('<img src="data:image/jpeg;base64,') == 2  # this class, other classes
    cat = next(r for r in block.split("<tr>") if r.startswith("<td>cat</td>"))
    assert "<img" not in cat
