"""The Ray executor writes the same run as the local one, and resumes what either left."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.audit_helpers import (
    TinyModel,
    importable_by_ray_workers,
    make_folder,
    skip_without_ray_cluster,
)

from salience.audit import audit
from salience.errors import SalienceError
from salience.store import Run
from salience.store.layout import PARTIAL, samples_file

pytest.importorskip("ray")

METHODS = ["gradcam", "integrated_gradients:steps=8"]
OPTIONS = {"batch_size": 3, "shard_size": 6, "map_size": 8, "device": "cpu"}


def assert_same_run(a: Run, b: Run) -> None:
    assert a.status == b.status == "complete"
    sa, sb = a.samples(), b.samples()
    assert sa.sample_id.is_unique
    pd.testing.assert_frame_equal(sa, sb)
    for method in ("gradcam", "integrated_gradients"):
        pd.testing.assert_frame_equal(a.stats(method), b.stats(method))
        ids = sa.sample_id.tolist()
        np.testing.assert_array_equal(a.saliencies(ids, method), b.saliencies(ids, method))


def test_ray_run_equals_local_run_and_resumes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    importable_by_ray_workers(monkeypatch)
    data = make_folder(tmp_path / "data", per_class=7)  # 21 images: 4 shards, the last short
    local = tmp_path / "local"
    expected = audit(TinyModel(), data, local, METHODS, **OPTIONS)  # type: ignore[arg-type]

    seen = []
    try:
        got = audit(
            TinyModel(),
            data,
            tmp_path / "ray",
            METHODS,
            executor="ray",
            progress=seen.append,
            **OPTIONS,  # type: ignore[arg-type]
        )
    except SalienceError as exc:
        skip_without_ray_cluster(str(exc))
        raise
    for key in ("images", "accuracy", "confused_pairs", "skipped"):
        assert got[key] == expected[key]
    assert_same_run(Run.open(tmp_path / "ray"), Run.open(local))
    assert Run.open(tmp_path / "ray").manifest["counts"]["shards_done"] == 4
    assert seen[0].done == 0 and seen[-1].done == seen[-1].total == 21
    assert not (tmp_path / "ray" / PARTIAL).exists()

    # a run the local executor left half done (two shards gone) is finished by Ray
    for shard in (1, 3):
        samples_file(local, shard).unlink()
    audit(TinyModel(), data, local, METHODS, executor="ray", **OPTIONS)  # type: ignore[arg-type]
    assert_same_run(Run.open(local), Run.open(tmp_path / "ray"))


def test_unknown_executor_is_refused_before_any_work(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "data", per_class=1)
    with pytest.raises(SalienceError, match="unknown executor 'dask'; use local or ray"):
        audit(TinyModel(), data, tmp_path / "run", ["gradcam"], executor="dask")
    assert not any((tmp_path / "run").glob("samples/*"))
