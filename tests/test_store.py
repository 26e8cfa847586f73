"""The run store: atomic shard writer, lock, and the DuckDB reader against pandas/numpy."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from salience.audit.stats import region_columns, stat_columns
from salience.errors import DamagedRunError, SalienceError
from salience.models.preprocess import Preprocess
from salience.store import Run, RunLock, SampleFilter, ShardWriter, is_locked
from salience.store.layout import atomic_write, samples_file, stats_file, write_json
from salience.store.manifest import RecordedModel

CLASSES = ["ant", "bee", "cat", "dog"]
REGIONS = ["background", "head"]
MAP = (4, 5)


def synthetic_run(path: Path, n: int = 50, shard_size: int = 16, seed: int = 0) -> pd.DataFrame:
    """A run written through :class:`ShardWriter` with known rows and maps; returns the truth."""
    rng = np.random.default_rng(seed)
    root = path / "data"
    root.mkdir(parents=True)
    manifest: dict[str, Any] = {
        "salience": "test",
        "methods": {"gradcam": {}},
        "class_names": CLASSES,
        "regions": REGIONS,
        "region_columns": region_columns(REGIONS),
        "ground_truth": ["head"],
        "meta_columns": ["meta_site"],
        "stat_columns": stat_columns(REGIONS),
        "map_size": list(MAP),
        "status": "complete",
        "dataset": {"root": str(root)},
    }
    write_json(path / "run.json", manifest)
    writer = ShardWriter(path, ["meta_site"], stat_columns(REGIONS), pattern=True)
    label = rng.integers(0, 4, n)
    pred = np.where(rng.random(n) < 0.6, label, rng.integers(0, 4, n))
    truth = pd.DataFrame(
        {
            "sample_id": [f"s{i:04d}" for i in range(n)],
            "path": [f"{CLASSES[label[i]]}/{i}.png" for i in range(n)],
            "label_index": label,
            "pred_index": pred,
            "confidence": rng.random(n),
            "site": rng.choice(["x", "y"], n),
            "share_head": rng.random(n),
        }
    )
    truth.loc[3, "pred_index"] = -1  # a failed image
    maps = rng.normal(size=(n, *MAP)).astype(np.float16)
    for shard, start in enumerate(range(0, n, shard_size)):
        rows = range(start, min(start + shard_size, n))
        samples: dict[str, list[Any]] = {
            "sample_id": [truth.sample_id[i] for i in rows],
            "path": [truth.path[i] for i in rows],
            "label": [CLASSES[label[i]] for i in rows],
            "label_index": [int(label[i]) for i in rows],
            "pred": [None if i == 3 else CLASSES[pred[i]] for i in rows],
            "pred_index": [None if i == 3 else int(pred[i]) for i in rows],
            "confidence": [None if i == 3 else float(truth.confidence[i]) for i in rows],
            "correct": [None if i == 3 else bool(pred[i] == label[i]) for i in rows],
            "topk_index": [[int(pred[i])] for i in rows],
            "error": ["unreadable: broken" if i == 3 else None for i in rows],
            "meta_site": [truth.site[i] for i in rows],
            "shard": [shard] * len(rows),
            "row": list(range(len(rows))),
        }
        stats = {
            "gradcam": {
                "sample_id": samples["sample_id"],
                "shard": samples["shard"],
                "row": samples["row"],
                "share_head": [float(truth.share_head[i]) for i in rows],
                "share_background": [1 - float(truth.share_head[i]) for i in rows],
                "entropy": [float(i) for i in rows],
                "si_pattern": ["distractor"] * len(rows),
                "error": [None] * len(rows),
            }
        }
        writer.write_shard(shard, samples, stats, {"gradcam": maps[start : rows.stop]})
    truth["smap"] = list(maps.astype(np.float32))
    return truth


@pytest.fixture
def run_and_truth(tmp_path: Path) -> tuple[Run, pd.DataFrame]:
    truth = synthetic_run(tmp_path / "run")
    return Run.open(tmp_path / "run"), truth


def test_samples_and_layout(run_and_truth: tuple[Run, pd.DataFrame]) -> None:
    run, truth = run_and_truth
    df = run.samples()
    assert list(df.sample_id) == list(truth.sample_id)
    assert run.count() == 50 and run.status == "complete"
    assert sorted(p.name for p in (run.path / "samples").iterdir()) == [
        f"part-{i:05d}.parquet" for i in range(4)
    ]
    assert run.samples(["sample_id", "meta_site"]).meta_site.tolist() == truth.site.tolist()
    with pytest.raises(SalienceError, match="unknown sample column"):
        run.samples(["nope"])


def test_confusion_matrix_matches_crosstab(run_and_truth: tuple[Run, pd.DataFrame]) -> None:
    run, truth = run_and_truth
    ok = truth[truth.pred_index >= 0]
    expected = pd.crosstab(
        ok.label_index.map(CLASSES.__getitem__), ok.pred_index.map(CLASSES.__getitem__)
    )
    cm = run.confusion_matrix()
    pd.testing.assert_frame_equal(
        cm, expected.rename_axis(index="true", columns="pred"), check_dtype=False
    )
    norm = run.confusion_matrix(normalize=True)
    np.testing.assert_allclose(norm.sum(1), 1.0)


def test_class_metrics_match_counting(run_and_truth: tuple[Run, pd.DataFrame]) -> None:
    run, truth = run_and_truth
    ok = truth[truth.pred_index >= 0]
    t, p = ok.label_index.to_numpy(), ok.pred_index.to_numpy()
    m = run.class_metrics().set_index("class_index")
    for k in range(4):
        tp = int(((t == k) & (p == k)).sum())
        precision = tp / (p == k).sum() if (p == k).any() else np.nan
        recall = tp / (t == k).sum()
        f1 = 2 * precision * recall / (precision + recall) if tp else 0.0
        np.testing.assert_allclose(
            m.loc[k, ["precision", "recall", "f1"]].to_numpy(float), [precision, recall, f1]
        )
        assert m.loc[k, "support"] == (t == k).sum() and m.loc[k, "predicted"] == (p == k).sum()
    assert m["class"].tolist() == CLASSES


def test_saliency_random_access_and_mean(run_and_truth: tuple[Run, pd.DataFrame]) -> None:
    run, truth = run_and_truth
    for i in (0, 17, 49):
        np.testing.assert_array_equal(run.saliency(truth.sample_id[i], "gradcam"), truth.smap[i])
    both = run.saliencies([truth.sample_id[20], truth.sample_id[1]], "gradcam")
    np.testing.assert_array_equal(both, np.stack([truth.smap[20], truth.smap[1]]))
    f = SampleFilter(true="bee", correct=True)
    sel = truth[(truth.label_index == 1) & (truth.pred_index == 1)]
    np.testing.assert_allclose(
        run.mean_saliency("gradcam", f), np.mean(list(sel.smap), 0), rtol=1e-6
    )
    with pytest.raises(SalienceError, match="no sample"):
        run.saliency("missing", "gradcam")
    with pytest.raises(SalienceError, match="no maps for method"):
        run.saliency(truth.sample_id[0], "rise")


def test_query_filters_sort_and_pages(run_and_truth: tuple[Run, pd.DataFrame]) -> None:
    run, truth = run_and_truth
    f = SampleFilter(true="ant", meta={"site": "x"}, region="head", region_share_min=0.3)
    page, total = run.query(f, method="gradcam", sort="share_head", descending=True, limit=3)
    sel = truth[(truth.label_index == 0) & (truth.site == "x") & (truth.share_head >= 0.3)]
    assert total == len(sel)
    assert (
        page.sample_id.tolist()
        == sel.sort_values("share_head", ascending=False)["sample_id"].head(3).tolist()
    )
    assert "map_error" in page.columns and "entropy" in page.columns
    page2, _ = run.query(
        f, method="gradcam", sort="share_head", descending=True, offset=3, limit=100
    )
    assert len(page) + len(page2) == total
    conf = SampleFilter(confidence_min=0.5, correct=False)
    _, n = run.query(conf)
    ok = truth[truth.pred_index >= 0]
    assert n == int(((ok.confidence >= 0.5) & (ok.pred_index != ok.label_index)).sum())
    _, n_err = run.query(SampleFilter(errors=True))
    assert n_err == 1
    with pytest.raises(SalienceError, match="needs a method"):
        run.query(SampleFilter(region="head", region_share_min=0.1))
    with pytest.raises(SalienceError, match="unknown region"):
        run.query(SampleFilter(region="tail", region_share_min=0.1), method="gradcam")
    with pytest.raises(SalienceError, match="unknown metadata"):
        run.query(SampleFilter(meta={"nope": "1"}))
    with pytest.raises(SalienceError, match="cannot sort"):
        run.query(sort="entropy; DROP TABLE samples")


def test_stats_and_sql(run_and_truth: tuple[Run, pd.DataFrame]) -> None:
    run, truth = run_and_truth
    st = run.stats("gradcam")
    np.testing.assert_allclose(st.share_head, truth.share_head)
    assert run.sql("SELECT count(*) AS n FROM stats")["n"].iloc[0] == 50


def test_image_paths_stay_inside_root(run_and_truth: tuple[Run, pd.DataFrame]) -> None:
    run, truth = run_and_truth
    assert run.image_path(truth.sample_id[0]) == run.data_root.resolve() / truth.path[0]
    run._index["evil"] = (0, 0, "../../etc/passwd")
    with pytest.raises(SalienceError, match="outside the data root"):
        run.image_path("evil")


def test_incomplete_shards_and_temp_files_are_invisible(tmp_path: Path) -> None:
    synthetic_run(tmp_path / "run", n=32, shard_size=16)
    run = Run.open(tmp_path / "run")
    samples_file(run.path, 1).unlink()  # shard 1: maps and stats on disk, samples not yet
    (run.path / "samples" / ".part-00001.parquet.tmp-1").write_bytes(b"PAR1 half")
    assert run.count() == 16
    assert len(run.stats("gradcam")) == 16
    assert stats_file(run.path, 1).exists()


def test_open_errors(tmp_path: Path) -> None:
    with pytest.raises(SalienceError, match="does not exist"):
        Run.open(tmp_path / "nope")
    with pytest.raises(SalienceError, match="not a salience run"):
        Run.open(tmp_path)
    (tmp_path / "run.json").write_text("{bad")
    with pytest.raises(SalienceError, match="damaged"):
        Run.open(tmp_path)


def test_empty_run_is_queryable(tmp_path: Path) -> None:
    synthetic_run(tmp_path / "run", n=5)
    for p in (tmp_path / "run" / "samples").iterdir():
        p.unlink()
    run = Run.open(tmp_path / "run")
    assert run.count() == 0 and run.confusion_matrix().empty
    assert run.query(method="gradcam")[1] == 0


def test_lock_refuses_a_second_writer(tmp_path: Path) -> None:
    with RunLock(tmp_path):
        assert is_locked(tmp_path)
        with pytest.raises(SalienceError, match="being written by another audit"):
            RunLock(tmp_path).acquire()
    assert not is_locked(tmp_path)
    with RunLock(tmp_path) as lock:
        assert lock.held


def test_atomic_write_leaves_nothing_on_failure(tmp_path: Path) -> None:
    def boom(_f: object) -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_write(tmp_path / "x.parquet", boom)
    assert list(tmp_path.iterdir()) == []


def test_partial_batches_round_trip_exactly(tmp_path: Path) -> None:
    writer = ShardWriter(tmp_path, [], stat_columns([]), pattern=False)
    samples = {
        "sample_id": ["a", "b"],
        "confidence": [0.1 + 0.2, None],
        "topk_index": [[1, 2], None],
        "correct": [True, None],
    }
    stats = {"gradcam": {"entropy": [float("nan"), 1 / 3]}}
    maps = {"gradcam": np.array([[[1.5, np.nan]], [[-2.0, 7.0]]], np.float16)}
    writer.save_batch(0, 0, 2, samples, stats, maps)
    (tmp_path / ".partial" / "part-00000" / "batch-0000002-0000004.npz").write_bytes(b"junk")
    loaded = writer.load_batches(0)
    assert list(loaded) == [(0, 2)]
    s2, st2, m2 = loaded[(0, 2)]
    assert s2 == samples and st2["gradcam"]["entropy"][1] == 1 / 3
    assert np.isnan(st2["gradcam"]["entropy"][0])
    np.testing.assert_array_equal(m2["gradcam"], maps["gradcam"])


def test_reading_while_writing(tmp_path: Path) -> None:
    """Queries during shard writes never fail and see whole shards only."""
    synthetic_run(tmp_path / "run", n=16, shard_size=16)
    run = Run.open(tmp_path / "run")
    writer = ShardWriter(run.path, ["meta_site"], stat_columns(REGIONS), pattern=True)
    maps = np.zeros((16, *MAP), np.float16)
    done = threading.Event()

    def write() -> None:
        for shard in range(1, 30):
            cols = {
                "sample_id": [f"t{shard}-{i}" for i in range(16)],
                "label": ["ant"] * 16,
                "label_index": [0] * 16,
                "pred": ["ant"] * 16,
                "pred_index": [0] * 16,
                "shard": [shard] * 16,
                "row": list(range(16)),
            }
            stats = {"gradcam": {k: cols[k] for k in ("sample_id", "shard", "row")}}
            writer.write_shard(shard, cols, stats, {"gradcam": maps})
        done.set()

    thread = threading.Thread(target=write)
    thread.start()
    seen = []
    while not done.is_set():
        n = run.count()
        assert n % 16 == 0
        seen.append(n)
        run.confusion_matrix()
    thread.join()
    assert seen == sorted(seen) and run.count() == 30 * 16


def test_manifest_reloads_when_rewritten(tmp_path: Path) -> None:
    synthetic_run(tmp_path / "run", n=4)
    run = Run.open(tmp_path / "run")
    m = json.loads((tmp_path / "run" / "run.json").read_text())
    m["status"] = "running"
    write_json(tmp_path / "run" / "run.json", m)
    assert run.status == "running"


def test_older_manifest_reads_with_the_defaults(tmp_path: Path) -> None:
    """A ``run.json`` without the newer keys (model, preprocess, top_k...) reads with the
    defaults readers rely on; a block that is not a JSON object reads as empty."""
    synthetic_run(tmp_path / "run", n=4)
    run = Run.open(tmp_path / "run")
    info = run.info
    assert info.recorded_model == RecordedModel() and info.recorded_data.manifest_sha256 is None
    assert info.recorded_data.root == str(tmp_path / "run" / "data")
    assert info.top_k == 5 and info.params("gradcam") == {} and info.params("rise") == {}
    assert run.preprocess() is None and info.input_size is None
    m = json.loads((tmp_path / "run" / "run.json").read_text())
    m["model"], m["methods"]["gradcam"] = None, {"layer": "features"}
    m["preprocess"] = Preprocess(size=8, resize=8).describe()
    write_json(tmp_path / "run" / "run.json", m)
    assert run.info.recorded_model == RecordedModel() and run.info.input_size == 8
    assert run.info.params("gradcam") == {"layer": "features"}
    assert run.preprocess("nearest") == Preprocess(size=8, resize=8, interpolation="nearest")


def test_a_manifest_block_of_the_wrong_shape_is_one_line_damage(tmp_path: Path) -> None:
    synthetic_run(tmp_path / "run", n=4)
    path = tmp_path / "run" / "run.json"
    good = json.loads(path.read_text())
    for key, value in (("dataset", "data/"), ("regions", {"a": 1}), ("preprocess", [8])):
        write_json(path, {**good, key: value})
        with pytest.raises(DamagedRunError, match=f"'{key}' should be"):
            Run.open(tmp_path / "run")
    write_json(path, {**good, "preprocess": {"size": "<b>8</b>", "resize": 8}})
    with pytest.raises(DamagedRunError, match="preprocessing cannot be read"):
        Run.open(tmp_path / "run").preprocess()
    write_json(path, {**good, "dataset": {}})
    run = Run.open(tmp_path / "run")
    with pytest.raises(DamagedRunError, match="records no data root"):
        run.image_path(run.samples()["sample_id"].iloc[0])


def test_index_file_locates_samples_and_newer_shards_are_scanned(tmp_path: Path) -> None:
    truth = synthetic_run(tmp_path / "run", n=40, shard_size=16)
    writer = ShardWriter(tmp_path / "run", ["meta_site"], stat_columns(REGIONS), pattern=True)
    samples_file(tmp_path / "run", 2).unlink()  # the index covers shards 0 and 1 only
    writer.write_index()
    synthetic_run(tmp_path / "again", n=40, shard_size=16)  # shard 2's files, copied back
    (tmp_path / "run" / "samples" / "part-00002.parquet").write_bytes(
        samples_file(tmp_path / "again", 2).read_bytes()
    )
    run = Run.open(tmp_path / "run")
    for i in (0, 20, 31):
        np.testing.assert_array_equal(run.saliency(truth.sample_id[i], "gradcam"), truth.smap[i])
    assert run._index == {}  # found through index.npz, no shard scanned
    np.testing.assert_array_equal(run.saliency(truth.sample_id[35], "gradcam"), truth.smap[35])
    assert set(run._index) == set(truth.sample_id[32:])  # only the newer shard was scanned
    assert run.image_path(truth.sample_id[5]).name == "5.png"
