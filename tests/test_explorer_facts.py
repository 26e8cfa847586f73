"""What the explorer says about a run: one sentence per statistic (from the library), and the
number of classes in the data next to the model's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from fastapi.testclient import TestClient
from helpers.synthetic_runs import blob, figure_mask, write_run

from salience.audit.stats import STAT_DESCRIPTIONS, describe_stat, region_columns, stat_columns
from salience.server import create_app


def test_every_statistic_column_has_a_description() -> None:
    regions = ["background", "Head & Hat", "uniform"]
    for name in stat_columns(regions):
        text = describe_stat(name, region_columns(regions))
        assert text and text.endswith(".") and "\n" not in text, name
    assert "Head & Hat" in (describe_stat("share_head_hat", region_columns(regions)) or "")
    assert set(STAT_DESCRIPTIONS) >= set(stat_columns([])) - {"si_pattern"}
    assert describe_stat("no_such_statistic") is None


def test_run_summary_carries_the_descriptions_and_counts_the_classes_seen(
    tmp_path: Path,
) -> None:
    classes = [f"class {i:04d}" for i in range(1000)]
    rng = np.random.default_rng(0)
    labels = [classes[i % 60] for i in range(120)]
    preds = [lab if k % 4 else classes[int(rng.integers(0, 1000))] for k, lab in enumerate(labels)]
    maps = np.stack([blob(0.3 + 0.004 * k, 0.5, 0.1) for k in range(120)]).astype(np.float32)
    masks = np.stack([figure_mask()] * 120)
    write_run(tmp_path / "wide", labels, preds, maps, classes, masks=masks)
    client = TestClient(create_app([tmp_path / "wide"]), base_url="http://127.0.0.1")
    ov = client.get("/api/runs/wide/overview").json()
    assert ov["classes_seen"] == 60 and ov["model_classes"] == 1000
    run = ov["run"]
    assert run["stats"] and set(run["stat_descriptions"]) == set(run["stats"])
    assert all(run["stat_descriptions"][s] != s for s in run["stats"])
    assert "head region" in run["stat_descriptions"]["share_head"]
