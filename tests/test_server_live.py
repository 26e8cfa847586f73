"""The explorer's live mode (``salience serve RUN --model SPEC``): any class's map with any
method, computed by the loaded model; refused for another model, 409 without one, one
computation at a time, parameters checked."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from helpers.live_runs import MAP_SIZE, live_run, model_file, tiny
from PIL import Image
from typer.testing import CliRunner

from salience import explain
from salience.errors import SalienceError
from salience.live import for_run
from salience.server import create_app
from salience.server.run_cache import RunRegistry, attach
from salience.store import Run


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("live")


@pytest.fixture(scope="module")
def run_path(tmp: Path) -> Path:
    return live_run(tmp)


@pytest.fixture(scope="module")
def live(tmp: Path, run_path: Path) -> tuple[TestClient, RunRegistry]:
    registry = RunRegistry([run_path])
    assert attach(registry, tiny(tmp)) == []
    return TestClient(create_app(registry), base_url="http://127.0.0.1"), registry


def png(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def wrong_sample(run: Run) -> dict[str, Any]:
    samples = run.samples()
    wrong = samples[~samples["correct"].astype(bool)]
    assert len(wrong), "the tiny model should get some images wrong"
    return dict(wrong.iloc[0])


def test_without_a_model_live_routes_answer_409_with_the_reason(run_path: Path) -> None:
    client = TestClient(create_app([run_path]), base_url="http://127.0.0.1")
    sid = Run.open(run_path).samples()["sample_id"].iloc[0]
    res = client.get(f"/api/runs/live/live/gradient/{sid}", params={"target": 1})
    assert res.status_code == 409
    detail = res.json()["detail"]
    assert "--model" in detail and "\n" not in detail
    assert client.get(f"/api/runs/live/live-info/gradient/{sid}").status_code == 409
    status = client.get("/api/runs/live/live").json()
    assert status["available"] is False and "--model" in status["reason"]
    assert status["map_size"] == [MAP_SIZE, MAP_SIZE] and status["input_size"] == 16
    assert "integrated_gradients" in status["pixel_methods"]


def test_live_map_of_the_true_class_is_the_models(
    live: tuple[TestClient, RunRegistry], tmp: Path, run_path: Path
) -> None:
    client, _ = live
    run = Run.open(run_path)
    row = wrong_sample(run)
    sid, true = str(row["sample_id"]), int(row["label_index"])
    info = client.get(f"/api/runs/live/live-info/gradient/{sid}", params={"target": true})
    assert info.status_code == 200, info.text
    got = info.json()
    # Independently: the run's view of the image through the module, softmax and gradient.
    loaded = for_run(tiny(tmp), run)
    x = loaded.preprocess(run.view_image(sid)).unsqueeze(0)
    with torch.no_grad():
        probs = torch.softmax(loaded.module(x), 1)[0]
    assert got["target"] == true and got["class"] == run.class_names[true]
    assert got["prob"] == pytest.approx(float(probs[true]), abs=1e-5)
    assert got["pred"] == int(probs.argmax()) == int(row["pred_index"])
    assert got["map_size"] == [16, 16]  # the model's input, not the stored 8x8
    overlay = client.get(f"/api/runs/live/live/gradient/{sid}", params={"target": true, "size": 64})
    assert overlay.status_code == 200 and overlay.headers["content-type"] == "image/png"
    img = png(overlay.content)
    assert img.mode == "RGBA" and img.size == (64, 64)  # smoothed up from 16 px
    reference = explain(loaded.module, x, true, "gradient")[0].numpy()
    small = np.asarray(img.resize((16, 16), Image.Resampling.BOX))[..., 3].astype(float)
    assert np.corrcoef(small.ravel(), np.sqrt(np.abs(reference)).ravel())[0, 1] > 0.8
    # The predicted class's live map agrees with the stored one (8x8 of the same gradient).
    pred = int(row["pred_index"])
    client.get(f"/api/runs/live/live-info/gradient/{sid}", params={"target": pred})
    stored = run.saliency(sid, "gradient")
    again = explain(loaded.module, x, pred, "gradient")[0].numpy()
    pooled = again.reshape(MAP_SIZE, 2, MAP_SIZE, 2).mean(axis=(1, 3))
    assert np.corrcoef(pooled.ravel(), stored.ravel())[0, 1] > 0.9  # resized otherwise


def test_a_method_the_run_did_not_compute_and_the_cache(
    live: tuple[TestClient, RunRegistry], run_path: Path
) -> None:
    client, registry = live
    sid = Run.open(run_path).samples()["sample_id"].iloc[1]
    first = client.get(f"/api/runs/live/live/input_x_gradient/{sid}", params={"target": 2})
    assert first.status_code == 200, first.text
    misses = registry.images.misses
    again = client.get(f"/api/runs/live/live/input_x_gradient/{sid}", params={"target": 2})
    assert again.content == first.content and registry.images.misses == misses


def test_bad_parameters_are_refused(live: tuple[TestClient, RunRegistry], run_path: Path) -> None:
    client, _ = live
    sid = Run.open(run_path).samples()["sample_id"].iloc[0]
    for params in ({"target": 3}, {"target": -1}, {"target": "cat"}):
        res = client.get(f"/api/runs/live/live/gradient/{sid}", params=params)
        assert res.status_code == 422 and "target" in res.json()["detail"]
    assert client.get(f"/api/runs/live/live/no_such_method/{sid}").status_code == 422
    assert client.get("/api/runs/live/live/gradient/no-such-sample").status_code == 404
    res = client.get(f"/api/runs/live/live/gradient/{sid}", params={"steps": 10_000})
    assert res.status_code == 200  # other parameters are not passed to the method


def test_one_computation_at_a_time(tmp: Path, run_path: Path) -> None:
    registry = RunRegistry([run_path])
    attach(registry, tiny(tmp), time_limit_s=0.3)
    client = TestClient(create_app(registry), base_url="http://127.0.0.1")
    sid = Run.open(run_path).samples()["sample_id"].iloc[2]
    assert registry.live is not None
    with registry.live.lock:  # another map is being computed
        res = client.get(f"/api/runs/live/live/gradient/{sid}", params={"target": 0})
    assert res.status_code == 503
    assert "try again" in res.json()["detail"]
    after = client.get(f"/api/runs/live/live/gradient/{sid}", params={"target": 0})
    assert after.status_code == 200


def test_another_model_is_refused_unless_forced(
    tmp: Path, run_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = RunRegistry([run_path])
    with pytest.raises(SalienceError, match=r"other weights.*--force"):
        attach(registry, tiny(tmp, "other"))
    assert registry.live is None
    assert len(attach(registry, tiny(tmp, "other"), force=True)) == 1
    assert registry.live is not None

    import uvicorn

    from salience.cli import app

    served: dict[str, Any] = {}
    monkeypatch.setattr(uvicorn, "run", lambda a, **kw: served.update(app=a))
    spec = f"{model_file(tmp)}:other"
    res = CliRunner().invoke(app, ["serve", str(run_path), "--port", "0", "--model", spec])
    assert res.exit_code == 2 and "--force" in res.output and not served
    assert len([line for line in res.output.splitlines() if line.strip()]) == 1
    good = f"{model_file(tmp)}:build"
    res = CliRunner().invoke(
        app, ["serve", str(run_path), "--port", "0", "--model", good, "--device", "cpu"]
    )
    assert res.exit_code == 0, res.output
    assert served["app"].state.registry.live is not None
