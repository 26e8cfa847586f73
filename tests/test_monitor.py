"""``salience monitor``: calibrated two-sample tests, the monitor folder, exit codes,
Prometheus, the in-memory ``Monitor`` API and candidate versions."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from helpers.monitor_helpers import baseline, factory, stream, tiny_model
from typer.testing import CliRunner

import salience
from salience.cli import app
from salience.errors import SalienceError
from salience.monitor import (
    Monitor,
    monitor_data,
    plan_windows,
    register,
    rollback_target,
    versions,
)
from salience.monitor.features import EMBED, STATS, Features
from salience.monitor.prometheus import metrics_text, parse_address, serve_metrics
from salience.monitor.twosample import holm
from salience.monitor.window import Baseline, window_tests
from salience.store import RunLock

DESIGN_KEYS = {"index", "start", "end", "n", "alert", "p_value", "tests", "bbsd"}


def synthetic(
    n: int, rng: np.random.Generator, shift: float = 0.0, out_shift: float = 0.0
) -> Features:
    """Features drawn from one fixed law; ``shift`` moves the maps, ``out_shift`` the outputs."""
    logits = rng.normal(size=(n, 3)) + np.array([out_shift, 0.0, 0.0])
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    stats = rng.normal(size=(n, len(STATS))) + shift
    emb = rng.dirichlet(np.ones(EMBED * EMBED), size=n)
    if shift:
        emb[:, :8] += shift / 8
        emb /= emb.sum(1, keepdims=True)
    return Features(
        [str(i) for i in range(n)],
        probs.argmax(1),
        np.full(n, -1),
        probs,
        {"gradcam": stats},
        {"gradcam": emb},
    )


def test_holm_matches_the_step_down_definition() -> None:
    p = np.array([0.01, 0.04, 0.03, 0.5])
    assert holm(p).tolist() == pytest.approx([0.04, 0.09, 0.09, 0.5])


def test_false_alarm_rate_is_at_most_the_set_level() -> None:
    """Windows drawn like the baseline: the saliency test and BBSD each fire at most alpha of
    the time (one-sided 3-sigma slack over 120 windows; benchmarks/monitor.py runs many more)."""
    rng = np.random.default_rng(0)
    base = Baseline(synthetic(1000, rng), ["a", "b", "c"])
    alarms = bbsd = 0
    reps, alpha = 120, 0.05
    for _ in range(reps):
        r = window_tests(base, synthetic(40, rng), alpha, rng, classes=False)
        alarms += r["alert"]
        bbsd += r["bbsd"]["alert"]
    limit = alpha + 3 * np.sqrt(alpha * (1 - alpha) / reps)
    assert alarms / reps <= limit and bbsd / reps <= limit


def test_saliency_only_and_output_only_shifts_are_told_apart() -> None:
    rng = np.random.default_rng(1)
    base = Baseline(synthetic(2000, rng), ["a", "b", "c"])
    maps_moved = window_tests(base, synthetic(200, rng, shift=0.6), 0.05, rng)
    assert maps_moved["alert"] and not maps_moved["bbsd"]["alert"]
    assert maps_moved["tests"]["mmd_gradcam"]["alert"]
    outputs_moved = window_tests(base, synthetic(200, rng, out_shift=1.5), 0.05, rng)
    assert outputs_moved["bbsd"]["alert"] and not outputs_moved["alert"]


@pytest.fixture(scope="module")
def ref(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return baseline(tmp_path_factory.mktemp("monitor"))


def test_monitor_json_follows_the_contract_and_flags_the_planted_shift(
    ref: Path, tmp_path: Path
) -> None:
    data = stream(tmp_path / "in", 80, shifted_from=40)
    out = tmp_path / "mon"
    summary = monitor_data(
        ref, data, out, window=20, model=tiny_model(tmp_path), workers=0, calibration_splits=40
    )
    on_disk = json.loads((out / "monitor.json").read_text())
    assert {"baseline", "window", "windows", "alerts", "false_alarm_rate"} <= set(on_disk)
    assert on_disk["window"] == 20 and len(on_disk["windows"]) == 4
    for w in on_disk["windows"]:
        assert set(w) >= DESIGN_KEYS and {"p_value", "alert"} <= set(w["bbsd"])
        assert all(set(t) == {"statistic", "p_value", "alert"} for t in w["tests"].values())
    assert [w["start"] for w in on_disk["windows"]] == [0, 20, 40, 60]
    assert [w["alert"] for w in on_disk["windows"]] == [False, False, True, True]
    assert {a["window"] for a in on_disk["alerts"] if a["detector"] == "saliency"} == {2, 3}
    far = on_disk["false_alarm_rate"]
    assert far["target"] == 0.05 and far["method"] == "baseline split against itself"
    assert 0.0 <= far["measured"] <= 0.2
    assert summary["data_windows"] == [0, 1, 2, 3]
    # a rerun with the same data records nothing new; new data adds windows after the old
    again = monitor_data(ref, data, out, model=tiny_model(tmp_path), workers=0)
    assert len(again["windows"]) == 4
    more = stream(tmp_path / "in2", 20, seed=9000)
    added = monitor_data(ref, more, out, model=tiny_model(tmp_path), workers=0)
    assert [w["index"] for w in added["windows"]] == [0, 1, 2, 3, 4] and added["data_windows"] == [
        4
    ]


def test_time_windows_follow_the_time_column(tmp_path: Path) -> None:
    from salience.data import read_dataset
    from salience.monitor import parse_window

    data = read_dataset(stream(tmp_path / "in", 150))
    plans = plan_windows(data, parse_window("1h", "ts"), "ts")
    assert [len(p.items) for p in plans] == [60, 60, 30]
    assert (
        plans[1].start == "2024-01-01T01:00:00+00:00"
        and plans[1].end == "2024-01-01T02:00:00+00:00"
    )
    with pytest.raises(SalienceError, match="time-column"):
        parse_window("1h", None)


def cli(ref: Path, tmp: Path, data: Path, *extra: str) -> list[str]:
    return [
        "monitor",
        str(ref),
        "--data",
        str(data),
        "--out",
        str(tmp / "mon"),
        "--window",
        "20",
        "--workers",
        "0",
        "--calibration-splits",
        "20",
        *extra,
    ]


def test_cli_exit_codes_gate_on_alerts(ref: Path, tmp_path: Path) -> None:
    """No alert: exit 0. A window that alerts: exit 3 (the monitor reloads the baseline's
    model from its run.json)."""
    clean = CliRunner().invoke(app, cli(ref, tmp_path, stream(tmp_path / "a", 40), "--json"))
    assert clean.exit_code == 0, clean.output
    assert json.loads(clean.stdout)["alerts"] == []
    shifted = stream(tmp_path / "b", 40, shifted_from=0, seed=7000)
    res = CliRunner().invoke(app, cli(ref, tmp_path, shifted))
    assert res.exit_code == 3, res.output
    assert (
        "saliency alert" in res.output and "false-alarm rate: set to 5.0% per window" in res.output
    )


def test_second_writer_is_refused(ref: Path, tmp_path: Path) -> None:
    with (
        Monitor.open(tmp_path / "mon", ref, window=20),
        pytest.raises(SalienceError, match="another monitor"),
    ):
        Monitor.open(tmp_path / "mon", ref)
    with RunLock(tmp_path / "mon"):
        res = CliRunner().invoke(app, cli(ref, tmp_path, stream(tmp_path / "a", 20)))
    assert res.exit_code == 2 and "another monitor" in res.output


def test_a_different_model_is_refused(ref: Path, tmp_path: Path) -> None:
    model = tiny_model(tmp_path)
    model.module.fc.weight.data += 1.0  # type: ignore[operator]
    with pytest.raises(SalienceError, match="--candidate"):
        monitor_data(ref, stream(tmp_path / "a", 20), tmp_path / "mon", window=20, model=model)


def test_observe_records_windows_from_tensors_and_pil_images(ref: Path, tmp_path: Path) -> None:
    from helpers.audit_helpers import image

    with salience.Monitor.open(
        tmp_path / "mon", baseline=ref, window=20, calibration_splits=20
    ) as mon:
        model = tiny_model(tmp_path)
        mon.use_model(model)
        assert mon.observe([image(i) for i in range(15)]) == []
        x = torch_stack([model.preprocess(image(100 + i)) for i in range(10)])
        recorded = mon.observe(x)
        assert len(recorded) == 1 and recorded[0]["n"] == 20 and mon.pending == 5
        status = mon.status()
        assert status["pending"] == 5 and len(status["windows"]) == 1
        assert set(status["windows"][0]) >= DESIGN_KEYS
    assert mon.window_features(0).stats["gradcam"].shape == (20, len(STATS))


def torch_stack(xs: list) -> object:  # type: ignore[type-arg]
    import torch

    return torch.stack(xs)


def test_prometheus_scrape_returns_the_latest_window(ref: Path, tmp_path: Path) -> None:
    out = tmp_path / "mon"
    monitor_data(
        ref,
        stream(tmp_path / "a", 40, shifted_from=20),
        out,
        window=20,
        model=tiny_model(tmp_path),
        workers=0,
        calibration_splits=20,
    )
    latest = json.loads((out / "monitor.json").read_text())["windows"][-1]
    assert parse_address(":9108") == ("127.0.0.1", 9108)
    server, _thread = serve_metrics([out], "127.0.0.1:0")
    try:
        port = server.server_port
        body = (
            urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
        )
    finally:
        server.shutdown()
    assert 'salience_monitor_window_index{monitor="mon"} 1.0' in body
    assert 'salience_monitor_alert{detector="saliency",monitor="mon"} 1.0' in body
    line = next(
        x
        for x in body.splitlines()
        if x.startswith('salience_monitor_p_value{monitor="mon",test="bbsd"}')
    )
    assert float(line.split()[-1]) == pytest.approx(latest["bbsd"]["p_value"], rel=1e-6)
    assert body == metrics_text([out]).decode()


def test_candidate_shadow_run_and_version_registry(ref: Path, tmp_path: Path) -> None:
    """A retrained candidate (other weights) is shadow-run on every window; the registry names
    the deployed version's exact weights and the candidate."""
    import torch

    spec = factory(tmp_path)
    model = tiny_model(tmp_path)
    cand = tiny_model(tmp_path)
    torch.manual_seed(3)
    for p in cand.module.parameters():
        p.data = torch.randn_like(p)
    out = tmp_path / "mon"
    summary = monitor_data(
        ref,
        stream(tmp_path / "a", 40),
        out,
        window=20,
        model=model,
        candidate=cand,
        workers=0,
        calibration_splits=20,
    )
    for w in summary["windows"]:
        c = w["candidate"]
        assert 0.0 <= c["agreement"] <= 1.0 and "noise_floor" in c and c["classes"]
        assert c["version"] == 2
    reg = versions(out)
    deployed = json.loads((ref / "run.json").read_text())["model"]
    assert [v["version"] for v in reg] == [1, 2]
    assert reg[0]["state_sha256"] == deployed["state_sha256"] and reg[1]["spec"] == spec
    assert reg[0]["promoted"] and reg[1]["promoted"] is None
    with pytest.raises(SalienceError, match="nothing to roll back"):
        rollback_target(out)
    cand_run = json.loads(
        (out / summary["windows"][0]["candidate"]["run"] / "run.json").read_text()
    )
    register(out, cand_run["model"], promoted=True)  # the candidate goes live
    assert rollback_target(out)["version"] == 1  # "the version before" is the deployed one
