"""Shortcut discovery: SpRAy pieces against closed forms, region verdicts on runs with known
maps, and a planted corner watermark found without masks in a model trained on it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.sparse.csgraph
import torch
from helpers.synthetic_runs import blob, figure_mask, write_run
from typer.testing import CliRunner

from salience.audit import audit
from salience.audit.shortcuts import ShortcutParams, find_shortcuts
from salience.audit.spray import (
    downsample,
    eigengap,
    kmeans,
    knn_graph,
    laplacian_spectrum,
    mass_centre,
    nearest_mean,
    peak,
    spray,
    top_mass,
)
from salience.cli import app
from salience.data.demo import generate, write
from salience.demo.model import ProfessionNet
from salience.demo.pipeline import load_demo_model
from salience.demo.train import TrainConfig, train
from salience.errors import SalienceError
from salience.store import Run


# ----------------------------------------------------------------------------------- SpRAy
def test_downsample_area_means_normalised_and_degenerate_maps() -> None:
    maps = np.zeros((3, 8, 8))
    maps[0, :4, :4] = 2.0  # top-left quarter
    maps[1] = -1.0  # no positive mass: falls back to |map|
    out = downsample(maps, 2)
    assert np.allclose(out.sum(axis=(1, 2)), 1.0)
    assert np.allclose(out[0], [[1.0, 0.0], [0.0, 0.0]])
    assert np.allclose(out[1], 0.25) and np.allclose(out[2], 0.25)  # empty map -> uniform


def test_knn_graph_is_symmetric_with_half_and_full_edges() -> None:
    x = np.array([[0.0], [1.0], [3.0], [10.0]])
    a = knn_graph(x, 1).toarray()
    # nearest: 0->1, 1->0, 2->1, 3->2
    expected = np.array(
        [[0, 1, 0, 0], [1, 0, 0.5, 0], [0, 0.5, 0, 0.5], [0, 0, 0.5, 0]], dtype=float
    )
    assert np.allclose(a, expected)


def test_laplacian_spectrum_matches_scipy_and_counts_components() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 0.1, (20, 3)), rng.normal(5, 0.1, (15, 3))])
    graph = knn_graph(x, 4)
    vals, _ = laplacian_spectrum(graph, 6)
    ref = np.linalg.eigvalsh(scipy.sparse.csgraph.laplacian(graph.toarray(), normed=True))
    assert np.allclose(vals, ref[:6], atol=1e-8)
    assert np.sum(vals < 1e-8) == 2  # two connected components -> two zero eigenvalues


def test_sparse_and_dense_eigensolvers_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.normal(c, 0.3, (40, 4)) for c in (0, 3, 6)])
    graph = knn_graph(x, 6)
    dense, _ = laplacian_spectrum(graph, 5)
    monkeypatch.setattr("salience.audit.spray.DENSE_LIMIT", 10)
    sparse, _ = laplacian_spectrum(graph, 5)
    assert np.allclose(dense, sparse, atol=1e-6)


def test_eigengap_picks_the_largest_gap() -> None:
    assert eigengap(np.array([0.0, 0.0, 0.6, 0.7, 0.75]), 4) == 2
    assert eigengap(np.array([0.0, 0.5, 0.55, 0.6]), 3) == 1
    assert eigengap(np.array([0.0, 0.05, 0.3, 0.9, 0.95]), 2) == 2  # capped at max_clusters


def test_kmeans_separates_blobs_whatever_the_seed() -> None:
    rng = np.random.default_rng(2)
    x = np.concatenate([rng.normal(c, 0.1, (30, 2)) for c in (0, 4)])
    for seed in range(3):
        labels = kmeans(x, 2, seed=seed)
        assert len(set(labels[:30])) == 1 and len(set(labels[30:])) == 1
        assert labels[0] != labels[-1]


def test_spray_finds_a_small_separate_strategy() -> None:
    rng = np.random.default_rng(3)
    main = [blob(0.6 + rng.normal(0, 0.03), 0.5 + rng.normal(0, 0.05), 0.15) for _ in range(60)]
    corner = [blob(0.9, 0.9, 0.05) for _ in range(15)]
    grids = downsample(np.array(main + corner) + rng.random((75, 32, 32)) * 0.01, 16)
    result = spray(grids.reshape(75, -1))
    assert result.k >= 2
    corner_labels = set(result.labels[60:])
    assert len(corner_labels) == 1
    assert not set(result.labels[:60]) & corner_labels


def test_spray_on_a_sample_assigns_the_rest_to_the_nearest_cluster() -> None:
    rng = np.random.default_rng(3)
    main = [blob(0.6 + rng.normal(0, 0.03), 0.5 + rng.normal(0, 0.05), 0.15) for _ in range(90)]
    corner = [blob(0.9, 0.9, 0.05) for _ in range(30)]
    feats = downsample(np.array(main + corner) + rng.random((120, 32, 32)) * 0.01, 16)
    feats = feats.reshape(120, -1)
    sampled = spray(feats, max_points=60)
    assert sampled.k >= 2 and set(sampled.labels) == set(range(sampled.k))
    # every corner map, in the sample or not, in one cluster with no other map
    assert len(set(sampled.labels[90:])) == 1
    assert not set(sampled.labels[:90]) & set(sampled.labels[90:])
    sample = np.array([[0.0, 0.0], [0.0, 2.0], [4.0, 0.0], [6.0, 0.0]])
    points = np.array([[0.0, 1.2], [4.8, 0.0], [2.9, 0.0]])  # means (0, 1) and (5, 0)
    assert nearest_mean(points, sample, np.array([0, 0, 1, 1])).tolist() == [0, 1, 1]


def test_map_location_helpers() -> None:
    m = np.zeros((4, 4))
    m[3, 2] = 1.0
    assert peak(m) == (0.875, 0.625)
    assert mass_centre(m) == (0.875, 0.625)
    m[0, 0] = 1.0
    assert mass_centre(m) == (0.5, 0.375)
    assert top_mass(np.ones((10, 10))) == pytest.approx(0.1)
    assert top_mass(m, 0.1) == pytest.approx(1.0)


# --------------------------------------------------------------------------- region verdicts
def _region_run(tmp_path: Path) -> tuple[Run, dict[str, np.ndarray]]:
    """Class "chef" looks at the head, "doctor" at the uniform; a few of each are wrong."""
    rng = np.random.default_rng(0)
    mask = figure_mask()
    head, uniform = (mask == 1).astype(float), (mask == 2).astype(float)
    labels, preds, maps = [], [], []
    for i in range(40):
        labels.append("chef")
        preds.append("chef" if i % 5 else "doctor")
        maps.append(head * (1 + rng.random()) + 0.1 * uniform)
    for i in range(40):
        labels.append("doctor")
        preds.append("doctor" if i % 4 else "chef")
        maps.append(uniform * (1 + rng.random()) + 0.1 * head)
    arr = np.array(maps, dtype=np.float32)
    run = write_run(
        tmp_path / "run", labels, preds, arr, ["chef", "doctor"], np.repeat(mask[None], 80, 0)
    )
    return run, {"maps": arr, "labels": np.array(labels), "preds": np.array(preds)}


def test_region_verdicts_flag_the_class_decided_by_the_head(tmp_path: Path) -> None:
    run, truth = _region_run(tmp_path)
    result = find_shortcuts(run)
    by_class = {c["class"]: c for c in result["classes"]}
    assert result["flagged"] == ["chef"]
    assert by_class["chef"]["flagged"] and not by_class["doctor"]["flagged"]
    assert "'head'" in by_class["chef"]["reason"]
    # mean shares over the correctly classified images, recomputed by hand
    mask = figure_mask()
    maps = run.saliencies(run.samples()["sample_id"].tolist(), "gradcam").astype(np.float64)
    for name in ("chef", "doctor"):
        sel = (truth["labels"] == name) & (truth["labels"] == truth["preds"])
        m = maps[sel]
        share_head = (m * (mask == 1)).sum(axis=(1, 2)) / m.sum(axis=(1, 2))
        assert by_class[name]["region_share"]["head"] == pytest.approx(share_head.mean(), abs=1e-3)
        area = (mask == 1).mean()
        assert by_class[name]["region_density"]["head"] == pytest.approx(
            (share_head / area).mean(), abs=1e-2
        )
        assert by_class[name]["correct"] == int(sel.sum())
    # one entry per confusion cell, with its count
    cells = {(c["true"], c["pred"]): c for c in result["cells"]}
    assert cells["chef", "doctor"]["count"] == 8 and cells["doctor", "chef"]["count"] == 10
    # the correct chefs are exactly the (chef, chef) cell
    assert cells["chef", "chef"]["region_share"] == by_class["chef"]["region_share"]
    assert json.loads(json.dumps(result, allow_nan=False)) == result


def test_the_deciding_region_is_an_option(tmp_path: Path) -> None:
    run, _ = _region_run(tmp_path)
    assert find_shortcuts(run, params=ShortcutParams(region="head"))["flagged"] == ["doctor"]
    with pytest.raises(SalienceError, match="no region 'hat'"):
        find_shortcuts(run, params=ShortcutParams(region="hat"))
    with pytest.raises(SalienceError, match="no 'occlusion' maps"):
        find_shortcuts(run, "occlusion")


def test_shortcuts_cli_writes_json_into_the_run(tmp_path: Path) -> None:
    run, _ = _region_run(tmp_path)
    res = CliRunner().invoke(app, ["shortcuts", str(run.path)])
    assert res.exit_code == 0, res.output
    written = json.loads((run.path / "shortcuts.json").read_text())
    assert written["flagged"] == ["chef"]
    assert "chef" in res.output
    bad = CliRunner().invoke(app, ["shortcuts", str(run.path), "--region", "hat"])
    assert bad.exit_code == 2 and "no region 'hat'" in bad.output


# --------------------------------------------------------------------------- without masks
def test_spray_flags_a_corner_cluster_in_a_run_without_masks(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    labels, maps, corner = [], [], []
    for name in ("chef", "doctor"):
        for i in range(60):
            marked = name == "chef" and i < 15
            labels.append(name)
            corner.append(marked)
            cy, cx = 0.6 + rng.normal(0, 0.03), 0.5 + rng.normal(0, 0.06)
            maps.append(blob(0.88, 0.88, 0.05) if marked else blob(cy, cx, 0.15))
    arr = (np.array(maps) + rng.random((120, 32, 32)) * 0.02).astype(np.float32)
    run = write_run(tmp_path / "run", labels, labels, arr, ["chef", "doctor"])
    result = find_shortcuts(run)
    by_class = {c["class"]: c for c in result["classes"]}
    assert result["regions"] == [] and by_class["chef"]["region_share"] == {}
    assert result["flagged"] == ["chef"]
    assert "bottom right" in by_class["chef"]["reason"]
    flagged = [c for c in by_class["chef"]["clusters"] if c["flagged"]]
    assert len(flagged) == 1
    cluster = flagged[0]
    assert cluster["size"] == 15 and cluster["share"] == pytest.approx(0.25)
    assert np.hypot(cluster["peak"][0] - 0.88, cluster["peak"][1] - 0.88) < 0.08
    ids = run.samples()["sample_id"].to_numpy()
    assert set(cluster["examples"]) <= set(ids[np.array(corner)])
    assert np.array(cluster["mean_map"]).shape == (16, 16)
    assert cluster["accuracy"] == 1.0 and cluster["purity"] == 1.0
    # a minority strategy: a cluster finding with the cluster's box, not a class-wide one
    assert by_class["chef"]["kind"] == "cluster" and not by_class["chef"]["class_wide"]["flagged"]
    assert by_class["chef"]["box"] == cluster["box"]
    y0, x0, y1, x1 = cluster["box"]
    assert y0 < 0.88 < y1 and x0 < 0.88 < x1
    assert [(f["class"], f["kind"]) for f in result["findings"]] == [("chef", "cluster")]
    assert by_class["doctor"]["kind"] is None and by_class["doctor"]["box"] is None


def test_a_planted_watermark_is_found_in_a_trained_model(tmp_path: Path) -> None:
    """A model trained on generated figures where 30% of chefs carry a corner stamp: SpRAy on
    its Grad-CAM maps (no masks) flags chef with a cluster at the stamp, made of stamped
    images, and no other class has a cluster there."""
    size, names = 48, ("chef", "doctor", "referee", "sailor")
    train_set = generate(900, seed=1, size=size, watermark_class="chef", watermark_rate=0.3)
    test_set = generate(240, seed=2, size=size, watermark_class="chef", watermark_rate=0.3)
    manifest = write(test_set, tmp_path / "data", "test", masks=False)
    torch.manual_seed(0)
    net = ProfessionNet()
    train(net, train_set.images, train_set.labels, TrainConfig(epochs=4))
    torch.save(net.state_dict(), tmp_path / "model.pt")
    model = load_demo_model(tmp_path / "model.pt", size, names)
    audit(model, manifest, tmp_path / "run", ["gradcam"], map_size=size)
    run = Run.open(tmp_path / "run")
    assert run.regions == []
    result = find_shortcuts(run)
    by_class = {c["class"]: c for c in result["classes"]}
    assert by_class["chef"]["flagged"]

    def at_stamp(c: dict[str, Any]) -> bool:
        y, x = c["peak"]
        return bool(c["flagged"]) and np.hypot(y - 0.89, x - 0.89) < 0.15

    stamp = [c for c in by_class["chef"]["clusters"] if at_stamp(c)]
    assert stamp, by_class["chef"]["clusters"]
    samples = run.samples(["sample_id", "meta_watermark"]).set_index("sample_id")
    members = [i for c in stamp for i in c["examples"]]
    assert (samples.loc[members, "meta_watermark"] == "True").all()
    for name in names[1:]:
        assert not [c for c in by_class[name]["clusters"] if at_stamp(c)]


def test_cli_table_shows_a_class_without_correct_images(tmp_path: Path) -> None:
    mask = figure_mask()
    maps = np.repeat(((mask == 1) + 0.1 * (mask == 2)).astype(np.float32)[None], 20, 0)
    labels = ["chef"] * 10 + ["nurse"] * 10
    preds = ["chef"] * 10 + ["chef"] * 10  # no nurse is recognised
    run = write_run(
        tmp_path / "run", labels, preds, maps, ["chef", "nurse"], np.repeat(mask[None], 20, 0)
    )
    res = CliRunner().invoke(app, ["shortcuts", str(run.path)])
    assert res.exit_code == 0, res.output
    nurse = next(line for line in res.output.splitlines() if "nurse" in line)
    assert "0%" in nurse
    written = json.loads((run.path / "shortcuts.json").read_text())
    nurse_result = next(c for c in written["classes"] if c["class"] == "nurse")
    assert nurse_result["region_share"]["uniform"] is None
    assert nurse_result["reason"].startswith("no correctly classified nurse images")


def test_classes_with_too_few_images_say_so(tmp_path: Path) -> None:
    classes = [f"c{i}" for i in range(12)]
    labels = classes + ["c0"] * 7
    maps = np.stack([blob(0.5, 0.5, 0.1) for _ in labels]).astype(np.float32)
    run = write_run(tmp_path / "run", labels, labels, maps, classes)
    args = ["shortcuts", str(run.path), "--no-model"]
    res = CliRunner().invoke(app, args, env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    result = json.loads((run.path / "shortcuts.json").read_text())
    by_class = {c["class"]: c for c in result["classes"]}
    assert not by_class["c0"]["too_few"] and by_class["c1"]["too_few"]
    assert by_class["c1"]["reason"].startswith("only 1 image(s): too few")
    assert "11 of 12 classes have too few images" in res.output
