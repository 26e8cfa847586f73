"""The explorer's HTTP API on two real audit runs: numbers agree with the run store, filters
and paging agree with ``Run.query``, images render, and the guard refuses what it must."""

from __future__ import annotations

import asyncio
import io
import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient
from helpers.explorer_runs import make_runs
from helpers.waiting import wait_until
from PIL import Image
from typer.testing import CliRunner

from salience.server import create_app
from salience.server.render import heatmap
from salience.store import Run, SampleFilter


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_runs(tmp_path_factory.mktemp("explorer"))


def local(app: Any, **kw: Any) -> TestClient:
    """A client of ``app`` on the loopback name it answers to without a token."""
    return TestClient(app, base_url="http://127.0.0.1", **kw)


@pytest.fixture(scope="session")
def client(runs: tuple[Path, Path]) -> TestClient:
    return local(create_app(list(runs)))


@pytest.fixture(scope="session")
def v1(runs: tuple[Path, Path]) -> Run:
    return Run.open(runs[0])


def raw_get(app: Any, path: str) -> tuple[int, bytes]:
    """GET ``path`` exactly as written (clients drop ``..`` segments; ``curl --path-as-is``
    and attackers do not)."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": unquote(path), "raw_path": path.encode(), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"127.0.0.1")], "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }  # fmt: skip
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body


def png(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img


def test_runs_and_overview_agree_with_the_store(client: TestClient, v1: Run) -> None:
    listed = client.get("/api/runs").json()["runs"]
    assert [r["id"] for r in listed] == ["v1", "v2"]
    r = listed[0]
    samples = v1.samples()
    assert r["count"] == len(samples) and r["errors"] == 0
    assert r["accuracy"] == pytest.approx(samples.correct.mean())
    assert r["methods"] == v1.methods and r["regions"] == ["background", "head", "uniform"]
    assert {"share_head", "entropy"} <= set(r["stats"]) and "si_pattern" not in r["stats"]
    assert r["meta"] == ["hat", "hat_matches", "watermark"]
    ov = client.get("/api/runs/v1/overview").json()
    metrics = v1.class_metrics().fillna(0.0)
    got = pd.DataFrame(ov["classes"])
    np.testing.assert_allclose(got.f1, metrics.f1)
    assert got["class"].tolist() == metrics["class"].tolist()
    assert ov["balanced_accuracy"] == pytest.approx(v1.class_metrics().recall.mean())
    cm = v1.confusion_matrix()
    top = ov["top_confusions"]
    assert [c["count"] for c in top] == sorted((c["count"] for c in top), reverse=True)
    off = sum(int(cm.loc[t, p]) for t in cm.index for p in cm.columns if t != p and cm.loc[t, p])
    assert sum(c["count"] for c in top) == off  # fewer than 20 confusions: all listed
    for c in top:
        assert c["count"] == cm.loc[c["true"], c["pred"]]


def test_confusion_cells_rebuild_the_matrix_and_cell_means(client: TestClient, v1: Run) -> None:
    cm = v1.confusion_matrix()
    res = client.get("/api/runs/v1/confusion", params={"stat": "share_head", "method": "gradient"})
    body = res.json()
    rebuilt = np.zeros(cm.shape, dtype=int)
    for c in body["cells"]:
        rebuilt[c["t"], c["p"]] = c["count"]
        assert c["share"] == pytest.approx(c["count"] / body["row_totals"][c["t"]], abs=1e-6)
    np.testing.assert_array_equal(rebuilt, cm.to_numpy())
    assert body["labels"] == list(cm.index) and body["preds"] == list(cm.columns)
    joined = v1.samples().merge(v1.stats("gradient"), on="sample_id")
    means = joined.groupby(["label", "pred"])["share_head"].mean()
    for c in body["cells"]:
        t, p = body["labels"][c["t"]], body["preds"][c["p"]]
        assert c["value"] == pytest.approx(means[(t, p)])
    lo, hi = body["stat_range"]
    assert lo == pytest.approx(means.min()) and hi == pytest.approx(means.max())
    assert client.get("/api/runs/v1/confusion", params={"stat": "nope"}).status_code == 400


@pytest.mark.parametrize(
    ("params", "flt"),
    [
        ({}, SampleFilter()),
        ({"correct": "false"}, SampleFilter(correct=False)),
        ({"true": "chef", "pred": "chef"}, SampleFilter(true="chef", pred="chef")),
        ({"conf_min": 0.3, "conf_max": 0.5}, SampleFilter(confidence_min=0.3, confidence_max=0.5)),
        ({"meta": "hat=doctor"}, SampleFilter(meta={"hat": "doctor"})),
        ({"region": "uniform", "share_min": 0.3}, SampleFilter(region="uniform",
                                                                region_share_min=0.3)),
    ],
)  # fmt: skip
@pytest.mark.parametrize(("sort", "desc"), [("confidence", True), ("share_head", False)])
def test_pages_match_run_query(
    client: TestClient, v1: Run, params: dict, flt: SampleFilter, sort: str, desc: bool
) -> None:
    ref, total = v1.query(flt, "gradcam", sort, desc, 0, 1000)
    got, offset = [], 0
    while True:
        page = client.get(
            "/api/runs/v1/samples",
            params={**params, "method": "gradcam", "sort": sort, "desc": desc, "offset": offset,
                    "limit": 7},
        ).json()  # fmt: skip
        assert page["total"] == total
        got += page["items"]
        offset += 7
        if offset >= total:
            break
    assert [s["sample_id"] for s in got] == ref.sample_id.tolist()
    if sort == "share_head":
        assert [s["value"] for s in got] == pytest.approx(ref.share_head.tolist())


def test_filter_and_sort_mistakes_are_one_line_400s(client: TestClient) -> None:
    mistakes = [
        {"sort": "nope"},
        {"method": "occlusion"},
        {"meta": "colour=red"},
        {"share_min": 0.2},
        {"region": "hat", "share_min": 0.1},
        {"meta": "hat"},
    ]
    for params in mistakes:
        res = client.get("/api/runs/v1/samples", params=params)
        assert res.status_code == 400, params
        assert "\n" not in res.json()["detail"]


def test_sample_detail_matches_the_rows(client: TestClient, v1: Run) -> None:
    row = v1.samples().iloc[5]
    d = client.get(f"/api/runs/v1/samples/{row.sample_id}").json()
    assert (d["label"], d["pred"], d["path"]) == (row.label, row.pred, row.path)
    assert [t["prob"] for t in d["topk"]] == pytest.approx(list(row.topk_prob))
    assert d["topk"][0]["class"] == row.pred
    assert d["meta"] == {"hat": row.meta_hat, "hat_matches": row.meta_hat_matches,
                         "watermark": row.meta_watermark}  # fmt: skip
    assert d["has_mask"] and set(d["region_colors"]) == {"head", "uniform"}
    for m in d["methods"]:
        st = v1.stats(m["method"]).set_index("sample_id").loc[row.sample_id]
        assert m["region_share"]["uniform"] == pytest.approx(st.share_uniform)
        assert m["stats"]["entropy"] == pytest.approx(st.entropy)
    assert client.get("/api/runs/v1/samples/not-a-sample").status_code == 404


def test_images_render_from_the_stored_maps(client: TestClient, v1: Run) -> None:
    sid = v1.samples().sample_id.iloc[3]
    thumb = client.get(f"/api/runs/v1/thumb/{sid}", params={"size": 64})
    assert thumb.headers["content-type"] == "image/jpeg"
    view = np.asarray(v1.view_image(sid).convert("RGB"), dtype=float)
    shown = np.asarray(png(thumb.content).convert("RGB"), dtype=float)
    assert shown.shape == view.shape and np.abs(shown - view).mean() < 12  # JPEG of the view
    for method in v1.methods:
        img = png(client.get(f"/api/runs/v1/overlay/{method}/{sid}").content)
        assert img.mode == "RGBA" and img.size == (32, 32)
        alpha = np.asarray(img)[..., 3].astype(float)
        magnitude = np.abs(v1.saliency(sid, method))
        assert np.corrcoef(alpha.ravel(), np.sqrt(magnitude).ravel())[0, 1] > 0.9
    small = png(client.get(f"/api/runs/v1/overlay/gradcam/{sid}", params={"size": 16}).content)
    assert small.size == (16, 16)
    on = np.asarray(png(client.get(f"/api/runs/v1/outline/{sid}").content))[..., 3] > 0
    mask = v1.mask(sid)  # the images are already 32 px: the model's view is the whole image
    padded = np.pad(mask, 1, mode="edge")
    differs = np.zeros(mask.shape, dtype=bool)
    for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
        differs |= padded[dy : dy + 32, dx : dx + 32] != mask
    assert on.any() and not (on & ((mask == 0) | ~differs)).any()
    assert {int(v) for v in np.unique(mask[on])} == {int(v) for v in np.unique(mask)} - {0}
    body = client.get("/api/runs/v1/files/" + v1.samples().path.iloc[3]).content
    assert body == (v1.data_root / v1.samples().path.iloc[3]).read_bytes()


def test_mean_map_of_a_one_image_selection_is_that_image(client: TestClient, v1: Run) -> None:
    samples = v1.samples()
    counts = samples.groupby(["label", "pred"]).size()
    (t, p) = counts[counts == counts.min()].index[0]
    res = client.get("/api/runs/v1/mean/gradcam", params={"true": t, "pred": p, "size": 256})
    ids = samples[(samples.label == t) & (samples.pred == p)].sample_id
    expected = heatmap(np.mean([v1.saliency(i, "gradcam") for i in ids], axis=0), 256)
    np.testing.assert_allclose(np.asarray(png(res.content)), np.asarray(expected), atol=2)


def test_compare_counts_flips(client: TestClient, runs: tuple[Path, Path]) -> None:
    a, b = (Run.open(r).samples().set_index("sample_id") for r in runs)
    s = client.get("/api/compare/v1/v2").json()
    assert s["matched"] == len(a)
    assert s["accuracy_a"] == pytest.approx(a.correct.mean())
    assert s["accuracy_b"] == pytest.approx(b.correct.mean())
    b = b.loc[a.index]
    fixed = int((~a.correct & b.correct).sum())
    broken = int((a.correct & ~b.correct).sum())
    assert (s["fixed"], s["broken"]) == (fixed, broken) and fixed > 0
    per = {c["class"]: c for c in s["per_class"]}
    for label, g in a.groupby("label"):
        assert per[label]["delta"] == pytest.approx(
            b.loc[g.index].correct.mean() - g.correct.mean()
        )
    flips = client.get("/api/compare/v1/v2/flips", params={"kind": "fixed", "limit": 500}).json()
    assert flips["total"] == fixed
    assert all(not a.correct[f["sample_id"]] and b.correct[f["sample_id"]] for f in flips["items"])


def test_map_comparison_is_the_librarys(client: TestClient, runs: tuple[Path, Path]) -> None:
    from salience.audit.compare import compare_runs

    ref = compare_runs(Run.open(runs[0]), Run.open(runs[1]), "gradient")
    got = client.get("/api/compare/v1/v2/maps", params={"method": "gradient"}).json()
    assert got["method"] == "gradient" and got["matched"] == ref["matched"] == 48
    assert got["region_shift"] == ref["region_shift"]
    assert got["region_shift_real"] == ref["region_shift_real"]
    assert got["similarity"]["spearman"] == ref["similarity"]["spearman"]
    assert got["silent_changes"]["sample_ids"] == ref["silent_changes"]["sample_ids"]
    assert [c["similarity"] for c in got["per_class"]] == [
        c["similarity"] for c in ref["per_class"]
    ]
    bad = client.get("/api/compare/v1/v2/maps", params={"method": "occlusion"})
    assert bad.status_code == 400 and "occlusion" in bad.json()["detail"]


def test_every_response_is_read_only_and_timed(client: TestClient) -> None:
    assert "app;dur=" in client.get("/api/health").headers["server-timing"]
    for verb in ("post", "put", "delete", "patch"):
        assert getattr(client, verb)("/api/runs").status_code == 405


@pytest.mark.parametrize(
    "path",
    [
        "/api/runs/v1/files/../run.json",
        "/api/runs/v1/files/%2e%2e/%2e%2e/etc/passwd",
        "/api/runs/v1/files/..%2f..%2fetc%2fpasswd",
        "/api/runs/v1/files/%252e%252e/%252e%252e/etc/passwd",
        "/api/runs/v1/files//etc/passwd",
        "/api/runs/v1/files/%2fetc%2fpasswd",
        "/api/runs/v1/files/test%5c..%5c..%5crun.json",
        "/api/runs/v1/files/test/chef/nothere.png",
        "/static/../../run.json",
        "/static/%2e%2e/%2e%2e/salience/errors.py",
    ],
)
def test_paths_outside_the_run_are_404_and_logged(
    client: TestClient, path: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="salience.server"):
        status, body = raw_get(client.app, path)
    assert status == 404 and b"root:" not in body
    assert any("refused" in r.getMessage() for r in caplog.records)


def test_symlinks_out_of_the_data_root_are_refused(
    runs: tuple[Path, Path], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    run = Run.open(runs[0])
    secret = tmp_path / "secret.png"
    secret.write_bytes(b"not for you")
    row = run.samples().iloc[0]
    image = run.data_root / row.path
    original = image.read_bytes()
    link = run.data_root / "escape.png"
    link.symlink_to(secret)
    image.unlink()
    image.symlink_to(secret)
    try:
        fresh = local(create_app([runs[0]]))
        with caplog.at_level(logging.WARNING, logger="salience.server"):
            for path in (f"/api/runs/v1/thumb/{row.sample_id}", f"/api/runs/v1/files/{row.path}",
                         "/api/runs/v1/files/escape.png"):  # fmt: skip
                res = fresh.get(path)
                assert res.status_code == 404 and b"not for you" not in res.content, path
        assert sum("refused" in r.getMessage() for r in caplog.records) >= 2
    finally:
        image.unlink()
        image.write_bytes(original)
        link.unlink()


def test_token_is_required_on_every_request(runs: tuple[Path, Path]) -> None:
    guarded = local(create_app([runs[0]], token="s3cret"))
    for path in ("/", "/static/js/main.js", "/api/runs", "/api/runs/v1/overview"):
        assert guarded.get(path).status_code == 401, path
    assert guarded.get("/api/runs", headers={"X-Salience-Token": "wrong"}).status_code == 401
    assert guarded.get("/api/runs", headers={"X-Salience-Token": "s3cret"}).status_code == 200
    assert guarded.get("/api/runs", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    first = guarded.get("/?token=s3cret")
    assert first.status_code == 200 and "HttpOnly" in first.headers["set-cookie"]
    assert guarded.get("/api/runs").status_code == 200  # the cookie now carries it
    assert local(create_app([runs[0]], token="s3cret")).get("/?token=nope").status_code == 401


def test_server_errors_hide_their_traceback(runs: tuple[Path, Path]) -> None:
    app = create_app([runs[0]])
    run = app.state.registry.entry("v1").run

    def broken() -> pd.DataFrame:
        raise RuntimeError("secret internals at /home/user")

    run.class_metrics = broken
    res = local(app, raise_server_exceptions=False).get("/api/runs/v1/overview")
    assert res.status_code == 500
    assert "secret" not in res.text and "Traceback" not in res.text and "/home" not in res.text


def test_front_end_is_self_contained(client: TestClient) -> None:
    html = client.get("/").text
    refs = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert refs and all(not re.match(r"^(https?:)?//", r) for r in refs)
    for ref in refs:
        if ref.startswith("static/"):
            assert client.get("/" + ref).status_code == 200, ref
    assert client.get("/static/vendor/chart.js-LICENSE.md").status_code == 200
    js = client.get("/static/js/util.js").text + client.get("/static/js/main.js").text
    assert "http://" not in js and "https://" not in js
    for hook in ("confusion-cell", "sample-card", "saliency-overlay"):
        assert any(
            hook in client.get(f"/static/js/{m}.js").text for m in ("overview", "samples", "util")
        )


def test_serve_command_guards_and_opens(
    monkeypatch: pytest.MonkeyPatch, runs: tuple[Path, Path]
) -> None:
    import webbrowser

    import uvicorn

    from salience.cli import app

    served: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda a, **kw: served.update(app=a, **kw))
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", opened.append)
    res = CliRunner().invoke(app, ["serve", str(runs[0]), "--host", "0.0.0.0", "--port", "0"])
    assert res.exit_code == 0, res.output
    token = re.search(r"access token: (\S+)", res.output)
    assert token and served["host"] == "0.0.0.0"
    guarded = local(served["app"])
    assert guarded.get("/api/runs").status_code == 401
    assert guarded.get("/api/runs", headers={"X-Salience-Token": token.group(1)}).status_code == 200
    res = CliRunner().invoke(app, ["serve", str(runs[0]), "--port", "0", "--open"])
    assert res.exit_code == 0 and "token" not in res.output
    assert local(served["app"]).get("/api/runs").status_code == 200
    wait_until(lambda: opened, 10, "serve --open to open the browser")
    assert opened == ["http://127.0.0.1:0/"]
    bad = CliRunner().invoke(app, ["serve", str(runs[0].parent / "nope")])
    assert bad.exit_code == 2 and "does not exist" in bad.output


def test_a_run_without_masks_and_with_a_broken_image(tmp_path: Path) -> None:
    from helpers.explorer_runs import Model, Net

    from salience.audit import audit
    from salience.report import write_report

    rng = np.random.default_rng(0)
    for name in ("cat", "dog"):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "data" / name / f"{i}.png")
    (tmp_path / "data" / "dog" / "broken.png").write_bytes(b"not an image")
    model = Model(Net(2).eval(), ["cat", "dog"], "tests:Net")
    audit(model, tmp_path / "data", tmp_path / "run", ["gradcam"], map_size=32)
    c = local(create_app([tmp_path / "run"]))
    summary = c.get("/api/runs/run").json()
    assert summary["count"] == 7 and summary["errors"] == 1 and summary["regions"] == []
    assert c.get("/api/runs/run/overview").status_code == 200
    assert sum(x["count"] for x in c.get("/api/runs/run/confusion").json()["cells"]) == 6
    failed = c.get("/api/runs/run/samples", params={"errors": True}).json()
    assert failed["total"] == 1 and failed["items"][0]["error"]
    sid = failed["items"][0]["sample_id"]
    detail = c.get(f"/api/runs/run/samples/{sid}").json()
    assert detail["error"] and detail["pred"] is None and not detail["has_mask"]
    assert c.get(f"/api/runs/run/thumb/{sid}").status_code == 404
    assert c.get(f"/api/runs/run/overlay/gradcam/{sid}").status_code == 404
    assert c.get("/api/runs/run/samples", params={"sort": "share_head"}).status_code == 400
    ok = c.get("/api/runs/run/samples", params={"correct": True, "limit": 1}).json()["items"]
    if ok:
        assert c.get(f"/api/runs/run/outline/{ok[0]['sample_id']}").status_code == 404
    data = write_report(tmp_path / "run", tmp_path / "r.html")
    assert data.embedded == 6 and data.regions is None
