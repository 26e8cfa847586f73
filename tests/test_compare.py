"""Run comparison: similarity measures against scipy/skimage and closed forms, the bootstrap
floor against the standard error, and compare_runs on runs whose answer is known."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers.synthetic_runs import blob, figure_mask, write_run
from scipy.stats import spearmanr
from skimage.metrics import structural_similarity
from typer.testing import CliRunner

from salience.audit.compare import CompareParams, bootstrap_floor, compare_runs, map_similarity
from salience.cli import app
from salience.errors import SalienceError
from salience.store import Run

CLASSES = ["chef", "doctor"]


def test_similarity_matches_scipy_and_skimage() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.random((5, 12, 12)), rng.random((5, 12, 12))
    b[0] = a[0] + 0.1 * b[0]
    sim = map_similarity(a, b)
    for i in range(5):
        assert sim["spearman"][i] == pytest.approx(spearmanr(a[i].ravel(), b[i].ravel())[0])
        ua = (a[i] - a[i].min()) / np.ptp(a[i])
        ub = (b[i] - b[i].min()) / np.ptp(b[i])
        assert sim["ssim"][i] == pytest.approx(structural_similarity(ua, ub, data_range=1.0))
    assert sim["spearman"][0] > 0.9 > sim["spearman"][1:].max()


def test_similarity_closed_forms() -> None:
    m = np.arange(100, dtype=float).reshape(1, 10, 10)
    same = map_similarity(m, m)
    assert same["spearman"][0] == pytest.approx(1.0)
    assert same["ssim"][0] == pytest.approx(1.0)
    assert same["topk_iou"][0] == 1.0
    flipped = map_similarity(m, -m)
    assert flipped["spearman"][0] == pytest.approx(-1.0)
    assert flipped["topk_iou"][0] == 0.0  # top 10 pixels of m are the bottom 10 of -m
    half = np.zeros((1, 10, 10))
    half[0, 9, :5] = 1.0  # 5 of m's top-10 pixels...
    half[0, 0, :5] = 1.0  # ...and 5 of its lowest
    assert map_similarity(m, half)["topk_iou"][0] == pytest.approx(5 / 15)
    const = map_similarity(m, np.ones((1, 10, 10)))
    assert np.isnan(const["spearman"][0]) and np.isnan(const["ssim"][0])


def test_bootstrap_floor_tracks_the_standard_error() -> None:
    rng = np.random.default_rng(1)
    diff = rng.normal(0.3, 1.0, 400)
    floor = bootstrap_floor(diff, CompareParams(resamples=4000, level=0.99))
    se = diff.std() / np.sqrt(len(diff))
    assert floor == pytest.approx(2.576 * se, rel=0.12)
    assert bootstrap_floor(np.full(50, 0.2), CompareParams()) == 0.0
    assert np.isnan(bootstrap_floor(np.array([1.0]), CompareParams()))


def _runs(tmp_path: Path) -> tuple[Run, Run, dict[str, np.ndarray]]:
    """A looks at the head, B at the uniform, on the same 60 images; some predictions flip."""
    rng = np.random.default_rng(2)
    mask = figure_mask()
    n = 60
    labels = np.array([CLASSES[i % 2] for i in range(n)])
    pred_a, pred_b = labels.copy(), labels.copy()
    fixed, broken = np.arange(0, 10), np.arange(10, 14)
    pred_a[fixed] = [CLASSES[(i + 1) % 2] for i in fixed]
    pred_b[broken] = [CLASSES[(i + 1) % 2] for i in broken]
    jitter = rng.normal(0, 0.03, (n, 2))
    maps_a = np.array([blob(0.19 + dy, 0.5 + dx, 0.08) for dy, dx in jitter], dtype=np.float32)
    maps_b = maps_a.copy()
    moved = np.arange(20, 60)  # the last 40 images look at the uniform in B
    maps_b[moved] = [blob(0.65 + dy, 0.5 + dx, 0.15) for dy, dx in jitter[moved]]
    masks = np.repeat(mask[None], n, 0)
    a = write_run(tmp_path / "a", list(labels), list(pred_a), maps_a, CLASSES, masks)
    b = write_run(tmp_path / "b", list(labels), list(pred_b), maps_b, CLASSES, masks)
    truth = {"labels": labels, "pred_a": pred_a, "pred_b": pred_b, "moved": moved}
    return a, b, truth | {"maps_a": maps_a, "maps_b": maps_b, "masks": masks}


def test_compare_runs_reports_accuracy_flips_and_the_region_shift(tmp_path: Path) -> None:
    a, b, t = _runs(tmp_path)
    result = compare_runs(a, b)
    ids = np.array(a.samples()["sample_id"])
    correct_a, correct_b = t["labels"] == t["pred_a"], t["labels"] == t["pred_b"]
    assert result["matched"] == 60
    assert result["accuracy"] == {"a": round(correct_a.mean(), 4), "b": round(correct_b.mean(), 4)}
    assert set(result["fixed"]["sample_ids"]) == set(ids[~correct_a & correct_b])
    assert set(result["broken"]["sample_ids"]) == set(ids[correct_a & ~correct_b])
    per_class = {c["class"]: c for c in result["per_class"]}
    for name in CLASSES:
        sel = t["labels"] == name
        assert per_class[name]["accuracy_a"] == pytest.approx(correct_a[sel].mean(), abs=1e-4)
        assert per_class[name]["change"] == pytest.approx(
            correct_b[sel].mean() - correct_a[sel].mean(), abs=1e-3
        )
    # region shift by hand from the stored (float16) maps
    sa = a.saliencies(list(ids), "gradcam").astype(np.float64)
    sb = b.saliencies(list(ids), "gradcam").astype(np.float64)
    head = t["masks"] == 1
    expected = (
        (sb * head).sum((1, 2)) / sb.sum((1, 2)) - (sa * head).sum((1, 2)) / sa.sum((1, 2))
    ).mean()
    assert result["region_shift"]["head"] == pytest.approx(expected, abs=1e-3)
    assert result["region_shift"]["head"] < -0.3 and result["region_shift"]["uniform"] > 0.3
    assert result["region_shift_real"]["head"] and result["region_shift_real"]["uniform"]
    floor = result["noise_floor"]
    assert floor["kind"] == "bootstrap and other images"
    assert 0 < floor["region_shift"]["head"] < abs(result["region_shift"]["head"])
    # silent: same prediction in both runs and the map moved (images 20..59 minus none flipped)
    same = t["pred_a"] == t["pred_b"]
    moved = np.zeros(60, dtype=bool)
    moved[t["moved"]] = True
    assert set(result["silent_changes"]["sample_ids"]) == set(ids[same & moved])
    assert result["silent_changes"]["count"] == int((same & moved).sum())
    assert json.loads(json.dumps(result, allow_nan=False)) == result


def test_a_reference_run_sets_the_floor(tmp_path: Path) -> None:
    a, b, t = _runs(tmp_path)
    rng = np.random.default_rng(5)
    retrained = t["maps_a"] * (1 + 0.2 * rng.random(t["maps_a"].shape)).astype(np.float32)
    ref = write_run(
        tmp_path / "ref", list(t["labels"]), list(t["pred_a"]), retrained, CLASSES, t["masks"]
    )
    result = compare_runs(a, b, reference=ref)
    floor = result["noise_floor"]
    assert floor["kind"] == "reference run" and floor["reference"] == str(ref.path)
    ref_shift = compare_runs(a, ref)["region_shift"]
    for region, value in floor["region_shift"].items():
        assert value >= abs(ref_shift[region]) - 1e-4
    ids = np.array(a.samples()["sample_id"])
    same = t["pred_a"] == t["pred_b"]
    assert set(result["silent_changes"]["sample_ids"]) == set(ids[t["moved"]][same[t["moved"]]])
    # the reference against itself: its own shift is the floor, so nothing is real
    alone = compare_runs(a, ref, reference=ref)
    assert not any(alone["region_shift_real"].values())


def test_compare_refuses_runs_of_different_images(tmp_path: Path) -> None:
    a, _, t = _runs(tmp_path)
    other = write_run(
        tmp_path / "other",
        list(t["labels"]),
        list(t["pred_a"]),
        t["maps_a"],
        CLASSES,
        t["masks"],
        ids=[f"x{i}" for i in range(60)],
    )
    with pytest.raises(SalienceError, match="share no images"):
        compare_runs(a, other)
    with pytest.raises(SalienceError, match="no 'rise' maps"):
        compare_runs(a, other, "rise")


def test_compare_cli(tmp_path: Path) -> None:
    a, b, _ = _runs(tmp_path)
    out = tmp_path / "cmp.json"
    res = CliRunner().invoke(app, ["compare", str(a.path), str(b.path), "--out", str(out)])
    assert res.exit_code == 0, res.output
    written = json.loads(out.read_text())
    assert set(written) >= {
        "accuracy",
        "per_class",
        "fixed",
        "broken",
        "region_shift",
        "silent_changes",
        "noise_floor",
    }
    assert "silent changes" in res.output and "head" in res.output


def test_compare_with_one_image_per_class_says_the_floor_is_missing(tmp_path: Path) -> None:
    maps_a = np.stack([blob(0.3, 0.5, 0.1), blob(0.6, 0.5, 0.1)]).astype(np.float32)
    maps_b = np.stack([blob(0.7, 0.5, 0.1), blob(0.6, 0.4, 0.1)]).astype(np.float32)
    a = write_run(tmp_path / "a", CLASSES, ["chef", "chef"], maps_a, CLASSES)
    b = write_run(tmp_path / "b", CLASSES, CLASSES, maps_b, CLASSES)
    result = compare_runs(a, b)
    assert result["fixed"]["count"] == 1 and result["broken"]["count"] == 0
    assert result["noise_floor"]["similarity"]["spearman"] is None
    assert "no class has two images" in result["noise_floor"]["kind"]
    assert result["silent_changes"]["count"] == 0
    out = str(tmp_path / "cmp.json")
    res = CliRunner().invoke(app, ["compare", str(a.path), str(b.path), "--out", out])
    assert res.exit_code == 0, res.output
    assert "not measured" in res.output


def test_similarity_of_no_maps_is_empty() -> None:
    empty = np.zeros((0, 8, 8))
    assert all(len(v) == 0 for v in map_similarity(empty, empty).values())
