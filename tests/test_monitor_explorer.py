"""The explorer's monitoring side: monitor folders served next to runs (timeline, one window's
classes and images, a tampered record refused), ``/metrics`` behind the guard, ``salience
serve`` telling monitor folders from runs, the slices route, and the Monitor and Slices tabs
in Chromium on a planted shift.

Screenshots land in test-output/<test>/ to be looked at."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from helpers.browser_helpers import chromium_page, csp_violations, serve
from helpers.monitor_helpers import baseline, stream, tiny_model
from test_slices import make_run
from typer.testing import CliRunner

from salience.cli import app as cli
from salience.monitor import monitor_data
from salience.server import create_app

LOADED = "els => els.length > 0 && els.every(e => e.complete && e.naturalWidth > 0)"


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A baseline run, a monitor of 4 windows of 20 images with a corner stamp planted from
    window 2 on, and a run whose camera "c" stamps its images (for slices)."""
    tmp = tmp_path_factory.mktemp("monitor-explorer")
    ref = baseline(tmp)
    data = stream(tmp / "in", 80, shifted_from=40, labels=True)
    mon = tmp / "mon"
    monitor_data(ref, data, mon, window=20, model=tiny_model(tmp), workers=0, calibration_splits=20)
    (tmp / "sliced").mkdir()
    return {"ref": ref, "mon": mon, "sliced": make_run(tmp / "sliced"), "tmp": tmp}


@pytest.fixture(scope="module")
def client(folders: dict[str, Path]) -> TestClient:
    return TestClient(
        create_app([folders["ref"], folders["sliced"]], monitors=[folders["mon"]]),
        base_url="http://127.0.0.1",
    )


def test_the_timeline_is_monitor_json(client: TestClient, folders: dict[str, Path]) -> None:
    on_disk = json.loads((folders["mon"] / "monitor.json").read_text())
    listed = client.get("/api/monitors").json()["monitors"]
    assert [m["id"] for m in listed] == ["mon"] and listed[0]["windows"] == 4
    t = client.get("/api/monitors/mon").json()
    assert t["monitor"]["alpha"] == on_disk["alpha"] and t["monitor"]["window"] == 20
    assert len(t["windows"]) == len(on_disk["windows"]) == 4
    for got, want in zip(t["windows"], on_disk["windows"], strict=True):
        assert got["index"] == want["index"] and got["n"] == want["n"]
        assert (got["start"], got["end"]) == (want["start"], want["end"])
        assert got["alert"] == want["alert"] and got["p_value"] == pytest.approx(want["p_value"])
        assert got["bbsd"]["p_value"] == pytest.approx(want["bbsd"]["p_value"])
        assert got["bbsd"]["alert"] == want["bbsd"]["alert"]
        assert set(got["tests"]) == set(want["tests"])
        for name, test in want["tests"].items():
            assert got["tests"][name]["alert"] == test["alert"]
            assert got["tests"][name]["p_value"] == pytest.approx(test["p_value"])
            assert got["tests"][name]["statistic"] == pytest.approx(test["statistic"])
        assert got["moved"] == [c["class"] for c in want["classes"] if c["moved"]]
        assert got["audit"] is True
    assert [w["alert"] for w in t["windows"]] == [False, False, True, True]  # the planted shift
    assert len(t["alerts"]) == len(on_disk["alerts"])
    assert {a["window"] for a in t["alerts"] if a["detector"] == "saliency"} == {2, 3}
    assert t["false_alarm_rate"]["target"] == on_disk["false_alarm_rate"]["target"]


def test_a_window_shows_its_classes_and_images(
    client: TestClient, folders: dict[str, Path]
) -> None:
    on_disk = json.loads((folders["mon"] / "monitor.json").read_text())["windows"][2]
    d = client.get("/api/monitors/mon/windows/2").json()
    assert d["window"]["index"] == 2 and d["window"]["alert"] is True
    assert d["total"] == 20 and len(d["samples"]) == 20 and d["methods"] == ["gradcam"]
    assert {c["class"] for c in d["classes"]} == {c["class"] for c in on_disk["classes"]}
    for c in d["classes"]:
        assert len(c["baseline_mean_map"]) == 64 and len(c["window_mean_map"]) == 64
        assert sum(c["window_mean_map"]) == pytest.approx(1.0, abs=1e-3)
    example = next(c["examples"][0] for c in d["classes"] if c["examples"])
    thumb = client.get(f"/api/monitors/mon/windows/2/thumb/{example}?size=128")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    ov = client.get(f"/api/monitors/mon/windows/2/overlay/gradcam/{example}")
    assert ov.status_code == 200 and ov.headers["content-type"] == "image/png"
    assert client.get(f"/api/monitors/mon/windows/2/overlay/lime/{example}").status_code == 400


def test_bad_windows_and_paths_are_refused(client: TestClient) -> None:
    assert client.get("/api/monitors/mon/windows/99").status_code == 404
    assert client.get("/api/monitors/mon/windows/99/thumb/00000.png").status_code == 404
    assert client.get("/api/monitors/nope").status_code == 404
    assert client.get("/api/monitors/mon/windows/x").status_code == 422
    assert client.get("/api/monitors/mon/windows/2/thumb/no-such-image").status_code == 404
    for path in (
        "/api/monitors/mon/windows/..%2F..%2Fref",
        "/api/monitors/mon/windows/2/thumb/..%2F..%2F..%2Fref%2Frun.json",
        "/api/monitors/mon/windows/2/overlay/gradcam/%2Fetc%2Fpasswd",
    ):
        assert client.get(path).status_code in (404, 422)


def test_a_path_like_audit_key_in_the_record_is_refused(
    folders: dict[str, Path], tmp_path: Path
) -> None:
    """A tampered monitor.json whose window key climbs out of audits/ (to the baseline run,
    whose images are real) serves nothing from there."""
    mon = tmp_path / "mon"
    shutil.copytree(folders["mon"], mon)
    summary = json.loads((mon / "monitor.json").read_text())
    summary["windows"][0]["key"] = "../../ref"
    summary["windows"][1]["key"] = "/etc"
    (mon / "monitor.json").write_text(json.dumps(summary))
    c = TestClient(create_app([folders["ref"]], monitors=[mon]), base_url="http://127.0.0.1")
    some = c.get("/api/runs/ref/samples?limit=1").json()["items"][0]["sample_id"]
    for index in (0, 1):
        assert c.get(f"/api/monitors/mon/windows/{index}").status_code == 404
        assert c.get(f"/api/monitors/mon/windows/{index}/thumb/{some}").status_code == 404
    points = c.get("/api/monitors/mon").json()["windows"]
    assert [p["audit"] for p in points] == [False, False, True, True]


def test_metrics_are_scraped_behind_the_guard(folders: dict[str, Path]) -> None:
    c = TestClient(
        create_app([folders["ref"]], monitors=[folders["mon"]]), base_url="http://127.0.0.1"
    )
    res = c.get("/metrics")
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert 'salience_monitor_alert{detector="saliency",monitor="mon"} 1.0' in res.text
    assert 'salience_monitor_window_index{monitor="mon"} 3.0' in res.text
    assert c.get("/metrics", headers={"host": "evil.example"}).status_code == 400
    locked = TestClient(
        create_app([folders["ref"]], monitors=[folders["mon"]], token="s3cret"),
        base_url="http://127.0.0.1",
    )
    assert locked.get("/metrics").status_code == 401
    ok = locked.get("/metrics", headers={"authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and "salience_monitor_up" in ok.text
    bare = TestClient(create_app([folders["ref"]]), base_url="http://127.0.0.1")
    assert bare.get("/metrics").status_code == 404
    assert bare.get("/api/monitors").json() == {"monitors": []}


def test_serve_accepts_monitor_folders(
    folders: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    served: list[Any] = []
    monkeypatch.setattr(uvicorn, "run", lambda app, **kw: served.append(app))
    res = CliRunner().invoke(
        cli, ["serve", str(folders["ref"]), str(folders["mon"]), "--port", "0"]
    )
    assert res.exit_code == 0, res.output
    assert "1 run(s) and 1 monitor(s)" in res.output and "/metrics" in res.output
    c = TestClient(served[-1], base_url="http://127.0.0.1")
    assert [r["id"] for r in c.get("/api/runs").json()["runs"]] == ["ref"]
    assert c.get("/api/monitors/mon").json()["monitor"]["windows"] == 4
    # a monitor folder alone serves its baseline run with it
    res = CliRunner().invoke(cli, ["serve", str(folders["mon"]), "--port", "0"])
    assert res.exit_code == 0, res.output
    assert [
        r["id"]
        for r in TestClient(served[-1], base_url="http://127.0.0.1").get("/api/runs").json()["runs"]
    ] == ["ref"]
    # a folder that is neither: one line, exit 2
    res = CliRunner().invoke(cli, ["serve", str(folders["tmp"] / "in"), "--port", "0"])
    assert res.exit_code == 2
    assert "neither a run folder" in res.output and len(res.output.strip().splitlines()) == 1


def test_slices_are_computed_or_read_from_the_saved_file(folders: dict[str, Path]) -> None:
    run = folders["sliced"]
    c = TestClient(create_app([run]), base_url="http://127.0.0.1")
    cols = c.get("/api/runs/run/slices").json()
    assert "camera" in cols["columns"] and cols["groups"] == []
    r = c.get("/api/runs/run/slices?by=camera").json()
    assert r["flagged"] == ["c"] and r["source"] == "computed"
    flagged = {g["value"]: g["flagged"] for g in r["groups"]}
    assert flagged == {"a": False, "b": False, "c": True}
    assert c.get("/api/runs/run/slices?by=lens").status_code == 400
    assert c.get("/api/runs/run/slices?by=../run").status_code == 400
    assert CliRunner().invoke(cli, ["slices", str(run), "--by", "camera"]).exit_code == 0
    fresh = TestClient(create_app([run]), base_url="http://127.0.0.1")
    saved = fresh.get("/api/runs/run/slices?by=camera").json()
    assert saved["source"] == "slices-camera.json" and saved["flagged"] == ["c"]


@pytest.mark.browser
def test_monitor_and_slices_tabs_in_chromium(folders: dict[str, Path], out_dir: Path) -> None:
    app = create_app([folders["ref"], folders["sliced"]], monitors=[folders["mon"]])
    with serve(app) as url, chromium_page() as page:
        page.goto(url + "#/overview?run=ref")
        page.click("[data-testid=monitor-tab]")
        page.wait_for_function(
            "() => { const c = document.querySelector('[data-testid=monitor-timeline] canvas');"
            " return !!(c && window.Chart && Chart.getChart(c)); }"
        )
        timeline = page.locator("[data-testid=monitor-timeline]")
        assert timeline.get_attribute("data-alarms").split() == ["2", "3"]
        alarmed = page.locator("[data-testid=monitor-window][data-alert=true]")
        assert [alarmed.nth(i).get_attribute("data-index") for i in range(alarmed.count())] == [
            "2",
            "3",
        ]
        page.screenshot(path=str(out_dir / "1-timeline.png"), full_page=True)
        page.click("[data-testid=monitor-window][data-index='2']")
        sel = "[data-testid=monitor-window-detail][data-index='2'] img"
        page.wait_for_selector("[data-testid=window-image]")
        page.eval_on_selector_all(sel, "els => els.forEach(e => { e.loading = 'eager'; })")
        page.wait_for_function(f'() => ({LOADED})([...document.querySelectorAll("{sel}")])')
        assert page.locator("[data-testid=window-image]").count() == 20
        assert page.locator("[data-testid=window-class]").count() >= 1
        page.screenshot(path=str(out_dir / "2-window.png"), full_page=True)
        page.click("[data-testid=slices-tab]")
        page.select_option("[data-testid=run-select]", "run")
        page.wait_for_selector("[data-testid=slices-view] [data-testid=slice-group]")
        flagged = page.locator("[data-testid=slice-group][data-flagged=true]")
        flagged.first.wait_for()
        assert [flagged.nth(i).get_attribute("data-value") for i in range(flagged.count())] == ["c"]
        page.screenshot(path=str(out_dir / "3-slices.png"), full_page=True)
        assert not page.errors, page.errors
        assert not page.dialogs and not csp_violations(page)


def test_gate_chooses_which_alerts_exit_3(folders: dict[str, Path]) -> None:
    from salience.cli.monitor_cmd import gate_fired

    def summary(*detectors: str) -> dict[str, Any]:
        alerts = [{"window": 1, "detector": d} for d in detectors]
        return {"data_windows": [0, 1], "alerts": [*alerts, {"window": 7, "detector": "bbsd"}]}

    assert gate_fired(summary("bbsd"), "bbsd") and not gate_fired(summary("bbsd"), "saliency")
    assert gate_fired(summary("saliency", "class"), "saliency")
    assert not gate_fired(summary("saliency"), "bbsd") and gate_fired(summary("saliency"), "any")
    assert gate_fired(summary("candidate"), "bbsd") and gate_fired(summary("candidate"), "saliency")
    assert not gate_fired(summary(), "any")  # window 7 is not this invocation's
    args = [
        "monitor",
        str(folders["ref"]),
        "--data",
        str(folders["tmp"] / "in" / "stream.csv"),
        "--out",
        str(folders["mon"]),
        "--workers",
        "0",
    ]
    res = CliRunner().invoke(cli, [*args, "--gate", "saliency"])
    assert res.exit_code == 3, res.output  # the planted shift, already recorded, still gates
    res = CliRunner().invoke(cli, [*args, "--gate", "sometimes"])
    assert res.exit_code == 2
