"""``salience export fiftyone``: the exported files line up with the model's view, and FiftyOne
reads the dataset back (when fiftyone and a database that starts here are installed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers.synthetic_runs import blob, write_run
from PIL import Image
from typer.testing import CliRunner

from salience.cli import app
from salience.errors import SalienceError
from salience.export import export_fiftyone
from salience.export.media import Exported, Skipped, encode, export_media
from salience.store import Run
from salience.store.layout import write_json

CLASSES = ["cat", "dog"]
IDS = ["s0", "s1", "a b/../c:d", "../../../escape"]
PHOTO = (48, 36)  # width, height of the originals: the view is a 32 x 32 centre crop


def make_run(path: Path, map_size: int = 16) -> Run:
    """Four samples (one pointing outside the data root), maps with one peak each, originals
    of 48 x 36 and a recorded preprocessing that resizes to 43 x 32 and crops 32 x 32."""
    labels, preds = ["cat", "dog", "cat", "dog"], ["cat", "cat", "cat", "dog"]
    centres = [(0.25, 0.25), (0.75, 0.25), (0.5, 0.75), (0.5, 0.5)]
    maps = np.stack([blob(y, x, 0.1, map_size) for y, x in centres]).astype(np.float32)
    maps[1] -= 0.5  # negative values, shown clipped to 0 by an unsigned method
    run = write_run(path, labels, preds, maps, CLASSES, ids=IDS)
    manifest = dict(run.manifest)
    manifest["preprocess"] = {"size": 32, "resize": 32, "mean": [0.5] * 3, "std": [0.5] * 3}
    write_json(path / "run.json", manifest)
    rng = np.random.default_rng(0)
    for label, sid in zip(labels, IDS, strict=True):
        file = path / "data" / label / f"{sid}.png"
        if file.resolve().is_relative_to((path / "data").resolve()):
            file.resolve().parent.mkdir(parents=True, exist_ok=True)
            pixels = rng.integers(0, 256, (PHOTO[1], PHOTO[0], 3), dtype=np.uint8)
            Image.fromarray(pixels).save(file.resolve())
    return Run.open(path)


def test_encoding_keeps_zero_and_sign() -> None:
    m = np.array([[-2.0, 0.0], [1.0, 2.0]], np.float32)
    signed = encode(m, (2, 2), signed=True)
    assert signed.tolist() == [[1, 128], [191, 255]]
    unsigned = encode(np.array([[-2.0, 2.0], [1.0, 2.0]]), (2, 2), signed=False)
    assert unsigned.tolist() == [[0, 255], [128, 255]]  # negative values count as 0
    assert encode(np.zeros((2, 2)), (4, 4), signed=False).shape == (4, 4)


def test_media_are_the_model_view_with_maps_at_its_size(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run")
    out = tmp_path / "export"
    items = list(export_media(run, out, ["gradcam"], {"gradcam": "saliency_gradcam"}))
    done = [i for i in items if isinstance(i, Exported)]
    skipped = [i for i in items if isinstance(i, Skipped)]
    assert [s.sample_id for s in skipped] == ["../../../escape"]
    assert [i.row["sample_id"] for i in done] == IDS[:3]
    for item in done:
        sid = str(item.row["sample_id"])
        image = Image.open(item.image)
        assert image.size == (32, 32) == (item.width, item.height)
        assert np.array_equal(np.asarray(image), np.asarray(run.view_image(sid)))
        heat = np.asarray(Image.open(item.maps["gradcam"].path))
        assert heat.shape == (32, 32) and heat.dtype == np.uint8
        # the peak of the 16 x 16 map lands on the same place of the 32 x 32 view
        peak = np.unravel_index(np.argmax(run.saliency(sid, "gradcam")), (16, 16))
        assert heat[2 * peak[0] : 2 * peak[0] + 2, 2 * peak[1] : 2 * peak[1] + 2].max() == 255
        assert item.maps["gradcam"].range == (0, 255) and not item.maps["gradcam"].signed
        assert item.stats["gradcam"]["entropy"] == pytest.approx(
            run.stats("gradcam").set_index("sample_id").loc[sid, "entropy"]
        )
    # every file stays inside the export folder, with a safe name
    written = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert written == [
        "images/000000-s0.png",
        "images/000001-s1.png",
        "images/000002-a_b_c_d.png",
        "maps/saliency_gradcam/000000-s0.png",
        "maps/saliency_gradcam/000001-s1.png",
        "maps/saliency_gradcam/000002-a_b_c_d.png",
    ]


def test_missing_fiftyone_is_one_line_with_the_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_run(tmp_path / "run")
    monkeypatch.setitem(sys.modules, "fiftyone", None)  # import fiftyone -> ImportError
    with pytest.raises(SalienceError, match=r"pip install 'salience\[fiftyone\]'"):
        export_fiftyone(tmp_path / "run")
    result = CliRunner().invoke(app, ["export", "fiftyone", str(tmp_path / "run")])
    assert result.exit_code == 2, result.output
    assert "pip install 'salience[fiftyone]'" in result.output
    assert "Traceback" not in result.output


def _mongod_problem() -> str | None:
    """Why FiftyOne's bundled mongod cannot run here, or None (an external URI is trusted)."""
    if os.environ.get("FIFTYONE_DATABASE_URI"):
        return None
    from fiftyone.core.service import DatabaseService, ServiceException

    try:
        mongod = DatabaseService.find_mongod()
        done = subprocess.run([mongod, "--version"], capture_output=True, text=True, timeout=60)
    except (ServiceException, OSError, subprocess.TimeoutExpired) as exc:
        return f"FiftyOne's database (mongod from fiftyone-db) cannot run here: {exc}"
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["no output"]
        return f"fiftyone-db's mongod does not start here: {lines[0]}"
    return None


@pytest.fixture(scope="module")
def fo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """fiftyone with its database in a temporary folder; skipped with the reason when absent."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("FIFTYONE_DATABASE_DIR", str(tmp_path_factory.mktemp("fiftyone-db")))
        mp.setenv("FIFTYONE_DO_NOT_TRACK", "true")
        mp.setenv("FIFTYONE_DATABASE_VALIDATION", "false")
        mp.setenv("FIFTYONE_SHOW_PROGRESS_BARS", "false")
        fiftyone = pytest.importorskip("fiftyone", reason="fiftyone is not installed")
        problem = _mongod_problem()
        if problem:
            pytest.skip(problem)
        yield fiftyone


def test_fiftyone_reads_the_export_back(tmp_path: Path, fo: Any) -> None:
    run = make_run(tmp_path / "run")
    name = f"salience-test-{os.getpid()}"
    result = CliRunner().invoke(
        app, ["export", "fiftyone", str(tmp_path / "run"), "--name", name, "--json"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    try:
        assert summary["samples"] == 3 and summary["skipped"]["total"] == 1
        assert summary["out"] == str(run.path / "fiftyone")
        assert json.loads((run.path / "fiftyone" / "export.json").read_text()) == summary
        ds = fo.load_dataset(name)
        assert ds.persistent and len(ds) == 3 and ds.default_classes == CLASSES
        schema = ds.get_field_schema()
        assert {"ground_truth", "predictions", "saliency_gradcam", "stats_gradcam"} <= set(schema)
        stats = run.stats("gradcam").set_index("sample_id")
        for sample in ds:
            sid = sample["salience_id"]
            row = run.samples().set_index("sample_id").loc[sid]
            assert sample.ground_truth.label == row["label"]
            assert sample.predictions.label == row["pred"]
            assert sample.predictions.confidence == pytest.approx(row["confidence"])
            assert sample.correct == bool(row["correct"])
            heatmap = sample["saliency_gradcam"]
            assert isinstance(heatmap, fo.Heatmap) and heatmap.range == [0, 255]
            assert heatmap.get_map().shape == (sample.metadata.height, sample.metadata.width)
            assert Image.open(sample.filepath).size == (32, 32)
            assert sample["stats_gradcam"]["entropy"] == pytest.approx(stats.loc[sid, "entropy"])
        # an existing dataset is replaced only when asked
        with pytest.raises(SalienceError, match="--overwrite"):
            export_fiftyone(run, tmp_path / "again", name=name)
        again = export_fiftyone(run, tmp_path / "again", name=name, overwrite=True)
        assert again["samples"] == 3 and len(fo.load_dataset(name)) == 3
    finally:
        if fo.dataset_exists(name):
            fo.delete_dataset(name)
