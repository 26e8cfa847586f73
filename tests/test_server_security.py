"""The explorer's hardening: the Host check (DNS rebinding), security headers on every response,
per-request caps, images too large to render, and damaged runs listed beside working ones."""

from __future__ import annotations

import asyncio
import http.client
import io
import json
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest
from fastapi.testclient import TestClient
from helpers.browser_helpers import serve
from helpers.synthetic_runs import blob, write_run
from PIL import Image
from typer.testing import CliRunner

from salience.models.preprocess import Preprocess
from salience.server import create_app
from salience.store import Run
from salience.store.layout import map_file, samples_file, write_json

CLASSES = ["cat", "dog"]
LOCAL = "http://127.0.0.1:8765"


def make_run(path: Path, n: int = 8) -> Path:
    """A small complete run (two shards) whose images exist and were viewed at 32 px."""
    labels = [CLASSES[i % 2] for i in range(n)]
    preds = [CLASSES[(i // 3) % 2] for i in range(n)]
    maps = np.stack([blob(0.3 + 0.05 * i, 0.5, 0.15) for i in range(n)]).astype(np.float32)
    run = write_run(path, labels, preds, maps, CLASSES, shard_size=4)
    rng = np.random.default_rng(0)
    for rel in run.samples()["path"]:
        (run.data_root / rel).parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(run.data_root / rel)
    manifest = {**run.manifest, "preprocess": Preprocess(size=32, resize=32).describe()}
    write_json(path / "run.json", manifest)
    return path


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, Path]:
    return make_run(tmp_path / "good"), make_run(tmp_path / "bad")


def client(app: Any, base: str = LOCAL, **kw: Any) -> TestClient:
    return TestClient(app, base_url=base, **kw)


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def first_id(run: Path) -> str:
    return str(Run.open(run).samples()["sample_id"].iloc[0])


# -- DNS rebinding: the Host header ----------------------------------------------------------


@pytest.mark.parametrize(
    "base",
    [
        "http://evil.example:8765",
        "http://127.0.0.1.evil.example:8765",
        "http://localhost.evil.example",
        "http://evil.example",
        "http://0.0.0.0:8765",
    ],
)
def test_a_rebound_host_is_refused_without_a_token(two_runs: tuple[Path, Path], base: str) -> None:
    evil = client(create_app([two_runs[0]]), base)
    for path in ("/", "/static/js/main.js", "/api/runs", "/api/runs/good/overview"):
        res = evil.get(path)
        assert res.status_code == 400, (base, path)
        assert res.headers["content-type"] == "application/json"
        assert "cat" not in res.text and "good" not in res.text
        assert "frame-ancestors 'none'" in res.headers["content-security-policy"]


@pytest.mark.parametrize(
    "base",
    [
        "http://127.0.0.1:8765",
        "http://localhost:8765",
        "http://LOCALHOST.:8765",
        "http://[::1]:8765",
        "http://127.0.0.1",
        "http://explorer.lan:9000",
    ],
)
def test_the_bound_hosts_are_answered(two_runs: tuple[Path, Path], base: str) -> None:
    c = client(create_app([two_runs[0]], hosts=["explorer.lan"]), base)
    assert c.get("/api/runs").status_code == 200
    assert c.get("/").status_code == 200


def raw_get(app: Any, path: str, query: str = "", host: str | None = "127.0.0.1") -> Any:
    """GET through the ASGI app directly (HTTP clients refuse URLs this long): (status, body)."""
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "http", "path": path, "raw_path": path.encode(),
        "query_string": query.encode(), "root_path": "",
        "headers": [(b"host", host.encode())] if host else [], "client": ("127.0.0.1", 1),
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


def test_a_request_without_host_is_refused(two_runs: tuple[Path, Path]) -> None:
    assert raw_get(create_app([two_runs[0]]), "/api/runs", host=None)[0] == 400


def test_with_a_token_any_host_needs_the_token(two_runs: tuple[Path, Path]) -> None:
    app = create_app([two_runs[0]], token="s3cret")
    evil = client(app, "http://evil.example:8765")
    assert evil.get("/api/runs").status_code == 401
    assert evil.get("/api/runs", headers={"X-Salience-Token": "s3cret"}).status_code == 200
    assert client(app).get("/api/runs").status_code == 401


def test_serve_passes_its_bound_name_to_the_guard(
    monkeypatch: pytest.MonkeyPatch, two_runs: tuple[Path, Path]
) -> None:
    import uvicorn

    from salience.cli import app

    served: dict = {}
    monkeypatch.setattr(uvicorn, "run", lambda a, **kw: served.update(app=a, **kw))
    res = CliRunner().invoke(app, ["serve", str(two_runs[0]), "--port", "0"])
    assert res.exit_code == 0, res.output
    assert client(served["app"], "http://127.0.0.1:0").get("/api/runs").status_code == 200
    assert client(served["app"], "http://evil.example:0").get("/api/runs").status_code == 400
    res = CliRunner().invoke(app, ["serve", str(two_runs[0]), "--port", "0", "--host", "localhost"])
    assert res.exit_code == 0 and "token" not in res.output
    assert client(served["app"], "http://localhost:0").get("/api/runs").status_code == 200
    assert client(served["app"], "http://evil.example:0").get("/api/runs").status_code == 400


# -- security headers --------------------------------------------------------------------------


def assert_secured(res: Any, page: bool = False) -> None:
    h = res.headers
    assert h["x-content-type-options"] == "nosniff"
    assert h["x-frame-options"] == "DENY"
    csp = h["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    assert "unsafe-eval" not in csp
    if page:
        assert "script-src 'self'" in csp and "default-src 'none'" in csp
    else:
        assert csp.startswith("default-src 'none'") and "sandbox" in csp
        assert "script-src" not in csp


def test_every_response_carries_the_security_headers(
    two_runs: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    good = two_runs[0]
    app = create_app([good])
    c = client(app, raise_server_exceptions=False)
    sid = first_id(good)
    path = Run.open(good).samples()["path"].iloc[0]
    page = c.get("/")
    assert page.status_code == 200
    assert_secured(page, page=True)
    answers = {
        "/static/js/main.js": 200,
        "/static/css/app.css": 200,
        "/static/nothere.js": 404,
        "/api/runs": 200,
        "/api/runs/good/overview": 200,
        f"/api/runs/good/thumb/{sid}": 200,
        f"/api/runs/good/overlay/gradcam/{sid}": 200,
        f"/api/runs/good/files/{path}": 200,
        "/api/runs/nope": 404,
        "/api/runs/good/samples?sort=nope": 400,
        f"/api/runs/good/thumb/{sid}?size=99999": 422,
        "/api/runs/good/files/../run.json": 404,
        "/api/runs/good/samples/" + "x" * 20_000: 414,
    }
    for url, status in answers.items():
        res = c.get(url)
        assert res.status_code == status, url
        assert_secured(res)
    assert_secured(c.post("/api/runs"))
    assert_secured(client(app, "http://evil.example").get("/"))
    assert_secured(client(create_app([good], token="t")).get("/"))
    run = app.state.registry.entry("good").run

    def broken() -> None:
        raise RuntimeError("secret internals at /home/user")

    monkeypatch.setattr(run, "class_metrics", broken)
    app.state.registry.entry("good").tables.clear()
    res = c.get("/api/runs/good/overview")
    assert res.status_code == 500 and "secret" not in res.text and "Traceback" not in res.text
    assert_secured(res)


# -- per-request caps --------------------------------------------------------------------------


def test_over_long_ids_paths_and_queries_are_refused_early(two_runs: tuple[Path, Path]) -> None:
    app = create_app([two_runs[0]])
    huge = "a" * 100_000
    for path, query in (
        (f"/api/runs/good/samples/{huge}", ""),
        (f"/api/runs/good/thumb/{huge}", "size=64"),
        (f"/api/runs/{huge}/overview", ""),
        ("/api/runs/good/samples", f"true={huge}"),
        ("/api/runs/good/samples", "&".join(["meta=a%3Db"] * 5000)),
    ):
        start = time.perf_counter()
        status, body = raw_get(app, path, query)
        assert status == 414, (path[:40], query[:40])
        assert time.perf_counter() - start < 1.0
        assert huge.encode() not in body and len(body) < 200


def test_page_and_image_sizes_are_capped(two_runs: tuple[Path, Path]) -> None:
    c = client(create_app([two_runs[0]]))
    sid = first_id(two_runs[0])
    for params in ({"limit": 501}, {"limit": 100_000}, {"limit": 0}, {"offset": -1}):
        res = c.get("/api/runs/good/samples", params=params)
        assert res.status_code == 422, params
        detail = res.json()["detail"]
        assert isinstance(detail, str) and "\n" not in detail and "100000" not in detail
    assert c.get("/api/runs/good/samples", params={"limit": 500}).status_code == 200
    assert c.get("/api/runs/good/samples", params={"offset": 10**12}).json()["items"] == []
    for size in (0, 15, 1025, 10**9):
        assert c.get(f"/api/runs/good/thumb/{sid}", params={"size": size}).status_code == 422
    for route in (f"thumb/{sid}", f"overlay/gradcam/{sid}", "mean/gradcam"):
        img = Image.open(io.BytesIO(c.get(f"/api/runs/good/{route}?size=1024").content))
        assert max(img.size) <= 512, route
    assert c.get("/api/runs/good/overview", params={"top": 10**9}).status_code == 200


def test_an_image_too_large_to_render_is_a_clean_422(two_runs: tuple[Path, Path]) -> None:
    """A 1x20000 PNG (a few hundred bytes) would ask preprocessing for gigabytes; the library's
    caps refuse it, and the server answers one line, quickly, never 500."""
    from salience.report import write_report

    good = two_runs[0]
    run = Run.open(good)
    row = run.samples().iloc[0]
    tall = run.data_root / row.path
    Image.new("RGB", (1, 20000), (200, 10, 10)).save(tall)
    assert tall.stat().st_size < 2000
    c = client(create_app([good]))
    start = time.perf_counter()
    res = c.get(f"/api/runs/good/thumb/{row.sample_id}", params={"size": 512})
    assert res.status_code == 422 and time.perf_counter() - start < 2.0
    assert res.json() == {"detail": "the image is too large to render safely"}
    served = c.get(f"/api/runs/good/files/{row.path}")  # a real PNG: the browser decodes it
    assert served.status_code == 200 and served.headers["content-type"] == "image/png"
    assert c.get("/api/runs").status_code == 200
    data = write_report(good, good.parent / "r.html", max_images=100)
    html = (good.parent / "r.html").read_text()
    card = next(k for cell in data.cells for k in cell.cards if k.sample_id == row.sample_id)
    assert card.images == [] and card.problem and "image not embedded" in html


# -- damaged runs ------------------------------------------------------------------------------


def assert_damaged_answers(c: TestClient, sid: str, named: str) -> str:
    """The damaged run is listed with its reason, and every route of it answers that line."""
    listed = c.get("/api/runs")
    assert listed.status_code == 200
    rows = {r["id"]: r for r in listed.json()["runs"]}
    assert rows["good"]["status"] == "complete" and rows["good"]["problem"] is None
    bad = rows["bad"]
    assert bad["status"] == "damaged" and named in bad["problem"] and "\n" not in bad["problem"]
    for route in ("", "/overview", "/confusion", "/facets", "/samples", f"/samples/{sid}",
                  f"/thumb/{sid}", f"/overlay/gradcam/{sid}", f"/outline/{sid}",
                  "/mean/gradcam", f"/files/cat/{sid}.png"):  # fmt: skip
        res = c.get(f"/api/runs/bad{route}")
        assert res.status_code == 503, route
        assert res.json()["detail"] == bad["problem"], route
        assert "Traceback" not in res.text
    for pair in ("good/bad", "bad/good"):
        res = c.get(f"/api/compare/{pair}")
        assert res.status_code == 503 and res.json()["detail"] == bad["problem"]
    return str(bad["problem"])


def assert_good_run_works(c: TestClient, run_dir: Path) -> None:
    run = Run.open(run_dir)
    sid = first_id(run_dir)
    path = run.samples()["path"].iloc[0]
    for route in ("", "/overview", "/confusion", "/facets", "/samples", f"/samples/{sid}",
                  f"/thumb/{sid}", f"/overlay/gradcam/{sid}", "/mean/gradcam",
                  f"/files/{path}"):  # fmt: skip
        assert c.get(f"/api/runs/good{route}").status_code == 200, route
    page = c.get("/api/runs/good/samples", params={"limit": 500}).json()
    assert page["total"] == len(run.samples())


def test_a_run_damaged_before_start_is_listed_and_the_others_work(
    two_runs: tuple[Path, Path],
) -> None:
    good, bad = two_runs
    sid = first_id(bad)
    truncate(samples_file(bad, 1))
    c = client(create_app([good, bad]))
    assert_damaged_answers(c, sid, "samples/part-00001.parquet")
    assert_good_run_works(c, good)


def test_a_run_damaged_while_served_is_listed_and_the_others_work(
    two_runs: tuple[Path, Path],
) -> None:
    good, bad = two_runs
    sid = first_id(bad)
    c = client(create_app([good, bad]))
    truncate(samples_file(bad, 1))  # after the runs were opened, before any table was read
    assert_damaged_answers(c, sid, "samples/part-00001.parquet")
    assert_good_run_works(c, good)


def test_a_damaged_map_file_answers_its_images_only(two_runs: tuple[Path, Path]) -> None:
    good, bad = two_runs
    c = client(create_app([good, bad]))
    assert c.get("/api/runs").status_code == 200  # tables read while the maps were intact
    samples = Run.open(bad).samples()
    in_shard_1 = samples[samples["shard"] == 1]["sample_id"].iloc[0]
    truncate(map_file(bad, "gradcam", 1))
    res = c.get(f"/api/runs/bad/overlay/gradcam/{in_shard_1}")
    assert res.status_code == 503 and "maps/gradcam/part-00001.npy" in res.json()["detail"]
    assert "\n" not in res.json()["detail"] and "Traceback" not in res.text
    assert c.get("/api/runs").status_code == 200
    assert_good_run_works(c, good)


def test_warming_a_damaged_run_marks_it(two_runs: tuple[Path, Path]) -> None:
    from salience.server.warm import warm

    good, bad = two_runs
    app = create_app([good, bad])
    truncate(samples_file(bad, 0))
    warm(app.state.registry)
    assert app.state.registry.preloaded
    assert app.state.registry.entries["bad"].damage
    assert_good_run_works(client(app), good)


def test_report_of_a_damaged_run_is_one_line(two_runs: tuple[Path, Path], tmp_path: Path) -> None:
    from salience.cli import app

    bad = two_runs[1]
    truncate(samples_file(bad, 1))
    res = CliRunner().invoke(app, ["report", str(bad), "-o", str(tmp_path / "r.html")])
    assert res.exit_code == 2
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "samples/part-00001.parquet" in lines[0], res.output
    assert "Traceback" not in res.output and not (tmp_path / "r.html").exists()


# -- the real server: a bounded, concurrent load ------------------------------------------------


@pytest.fixture
def live(two_runs: tuple[Path, Path]) -> Iterator[tuple[str, int]]:
    app = create_app(list(two_runs), hosts=["127.0.0.1"])
    with serve(app, log_level="critical") as url:
        port = urlsplit(url).port
        assert port is not None
        yield "127.0.0.1", port


def get(addr: tuple[str, int], path: str, host: str | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(*addr, timeout=20)
    try:
        conn.request("GET", path, headers={"Host": host} if host else {})
        res = conn.getresponse()
        return res.status, res.read()
    finally:
        conn.close()


def test_the_live_server_refuses_rebinding_and_huge_ids_and_stays_up_under_load(
    live: tuple[str, int], two_runs: tuple[Path, Path]
) -> None:
    status, body = get(live, "/api/runs", host=f"evil.example:{live[1]}")
    assert status == 400 and b"cat" not in body
    assert get(live, "/api/runs", host=f"127.0.0.1:{live[1]}")[0] == 200
    start = time.perf_counter()
    status, _ = get(live, "/api/runs/good/samples/" + "a" * 100_000)
    assert 400 <= status < 500 and time.perf_counter() - start < 2.0
    sid = first_id(two_runs[0])
    paths = [
        "/api/runs", "/api/runs/good/overview", "/api/runs/good/samples?limit=60",
        f"/api/runs/good/thumb/{sid}?size=160", f"/api/runs/good/overlay/gradcam/{sid}",
        "/api/runs/good/samples/" + "b" * 9000, "/api/runs/nope", "/",
    ]  # fmt: skip
    with ThreadPoolExecutor(max_workers=50) as pool:
        results = list(pool.map(lambda i: get(live, paths[i % len(paths)])[0], range(200)))
    assert all(s < 500 for s in results), sorted(set(results))
    assert results.count(200) == 200 // len(paths) * 6  # the 8 paths: 6 answer, 2 refused


def test_the_page_and_api_do_not_echo_markup_as_html(two_runs: tuple[Path, Path]) -> None:
    c = client(create_app([two_runs[0]]))
    for url in ("/api/runs/<script>alert(1)</script>", "/api/runs/good/samples?sort=<b>x</b>"):
        res = c.get(url)
        assert res.headers["content-type"] == "application/json"
        assert json.loads(res.text)["detail"]
    html = c.get("/").text
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html)  # no inline script in the page
    assert not re.search(r"\son\w+=", html) and "style=" not in html  # nor inline handlers
