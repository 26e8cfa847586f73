"""Nothing from the data is ever run as HTML or script: an XSS corpus in class names, file names,
metadata, split and region names, run folder names, sample ids and shortcut findings, shown by
the explorer (overview, a confusion cell, a grid, the detail, compare, a damaged run) and by the
report in Chromium, raises no dialog and no CSP violation; files that a manifest row points to
never come back as HTML or SVG."""

from __future__ import annotations

import io
import re
import shutil
from collections.abc import Iterator
from html import escape
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
from fastapi.testclient import TestClient
from helpers.browser_helpers import chromium_page, csp_violations, serve
from helpers.hostile_runs import (
    EVIL,
    META,
    NAMES,
    REGIONS,
    RUN_NAMES,
    SPLITS,
    XSS,
    make_hostile_runs,
)
from helpers.synthetic_runs import blob, write_run
from PIL import Image

from salience.report import write_report
from salience.server import create_app
from salience.store import Run
from salience.store.layout import samples_file

IDS = [
    "<img src=x onerror=alert(20)>",
    'dir/"><svg onload=alert(21)>',
    "javascript:alert(22)",
    "</script><script>alert(23)</script>",
]
ID_RUN = "<iframe src=javascript:alert(24)>"
DAMAGED_RUN = "'><img src=x onerror=alert(25)>"
# Markup that would exist in the page had any payload been parsed as HTML.
INJECTED = (
    '() => document.querySelectorAll(\'img[src="x"], svg[onload], iframe, b[onmouseover], '
    "[onerror], [onload], [onmouseover]').length + document.scripts.length"
)
# Every picture the page asked for has loaded or failed, so its load or error event is queued.
PICTURES_SETTLED = "() => [...document.images].every(i => i.complete || i.loading === 'lazy')"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The two hostile audit runs, a run whose sample ids are markup, and a damaged copy."""
    root = tmp_path_factory.mktemp("xss")
    a, b = make_hostile_runs(root)
    n = len(IDS)
    labels, preds = [XSS[i % 4] for i in range(n)], [XSS[(i + 1) % 4] for i in range(n)]
    maps = np.stack([blob(0.3 + 0.1 * i, 0.5, 0.2) for i in range(n)]).astype(np.float32)
    ids = write_run(root / ID_RUN, labels, preds, maps, XSS, ids=IDS, shard_size=2)
    for rel in ids.samples()["path"]:
        (ids.data_root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (32, 32), (40, 120, 200)).save(ids.data_root / rel)
    damaged = root / DAMAGED_RUN
    shutil.copytree(root / ID_RUN, damaged)
    path = samples_file(damaged, 1)
    path.write_bytes(path.read_bytes()[:100])
    return {"a": a, "b": b, "ids": root / ID_RUN, "damaged": damaged}


def rid(name: str) -> str:
    return quote(name, safe="")


# -- served files, through the API ---------------------------------------------------------------


def test_served_files_are_pictures_or_downloads(hostile: dict[str, Path]) -> None:
    c = TestClient(create_app([hostile["a"]]), base_url="http://127.0.0.1")
    run = rid(RUN_NAMES[0])
    for rel, content in EVIL.items():
        res = c.get(f"/api/runs/{run}/files/{rel}")
        assert res.status_code == 200, rel
        kind = res.headers["content-type"]
        assert kind == "application/octet-stream", (rel, kind)
        assert res.headers["content-disposition"].startswith("attachment"), rel
        assert res.headers["x-content-type-options"] == "nosniff"
        assert "sandbox" in res.headers["content-security-policy"]
        assert res.content == content
    tiff = c.get(f"/api/runs/{run}/files/img/photo.tiff")
    assert tiff.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(tiff.content)).size == (32, 32)
    first = f"img/00 {NAMES[0]}.png"
    png = c.get(f"/api/runs/{run}/files/{quote(first)}")
    assert png.headers["content-type"] == "image/png" and "content-disposition" not in png.headers
    assert png.content == (Run.open(hostile["a"]).data_root / first).read_bytes()
    for rel in EVIL:  # the other image routes refuse them outright
        sid = Run.open(hostile["a"]).samples().set_index("path").loc[rel, "sample_id"]
        assert c.get(f"/api/runs/{run}/thumb/{sid}").status_code == 404


def test_the_report_escapes_every_string(hostile: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    write_report(hostile["a"], out, max_images=100, per_cell=20)
    html = out.read_text()
    body = html.split("<body>", 1)[1]
    assert "<script" not in html and "<svg" not in body and "<img src=x" not in body
    for s in (*XSS, RUN_NAMES[0], *REGIONS.values()):
        assert escape(s) in body, s
        if "<" in s or '"' in s:
            assert s not in body, s
    assert '<meta http-equiv="Content-Security-Policy" content="default-src \'none\';' in html


# -- the explorer and the report in Chromium ---------------------------------------------------


@pytest.fixture(scope="module")
def page(hostile: dict[str, Path]) -> Iterator[Any]:
    with chromium_page() as pg:
        yield pg


@pytest.fixture(scope="module")
def server(hostile: dict[str, Path]) -> Iterator[str]:
    app = create_app([hostile[k] for k in ("a", "b", "ids", "damaged")])
    with serve(app) as url:
        yield url


def settle(page: Any) -> None:
    """Wait until the page's pictures have loaded or failed and the page has run the events
    that brings, so that any onerror/onload handler a payload injected would have fired."""
    page.wait_for_function(PICTURES_SETTLED)
    page.evaluate("() => new Promise(r => setTimeout(r))")  # one turn for the queued events


def assert_inert(page: Any) -> None:
    """No dialog, no CSP violation, no error, and no element a payload would have created
    (the page's own two scripts aside)."""
    settle(page)
    assert not page.dialogs, page.dialogs
    assert not csp_violations(page), csp_violations(page)
    # Missing pictures (the evil rows, the damaged run) are expected; script errors are not.
    assert not [e for e in page.errors if "Failed to load resource" not in e], page.errors
    assert page.evaluate(INJECTED) == 2


@pytest.mark.browser
def test_the_explorer_shows_markup_as_text(
    page: Any, server: str, hostile: dict[str, Path], out_dir: Path
) -> None:
    a, b = rid(RUN_NAMES[0]), rid(RUN_NAMES[1])
    page.goto(server + f"#/overview?run={a}")
    page.wait_for_selector("[data-testid=confusion-cell]")
    page.wait_for_selector(".shortcut")
    page.wait_for_selector("[data-testid=shortcut-class-wide]")
    text = page.inner_text("main")
    for s in (*XSS, *REGIONS.values()):
        assert s in text, s
    assert RUN_NAMES[0] in page.inner_text("#run-select")
    assert DAMAGED_RUN in page.inner_text("#run-select")
    page.screenshot(path=str(out_dir / "1-overview.png"), full_page=True)
    assert_inert(page)

    page.locator("[data-testid=confusion-cell].has").first.click()  # a cell -> its grid
    page.wait_for_selector("[data-testid=sample-card]")
    page.wait_for_selector(f"select[data-filter='meta:{META_NAME}']", state="attached")
    options = page.inner_text(".filters")
    assert SPLITS[0] in options and REGIONS["1"] in options and XSS[2] in options
    page.screenshot(path=str(out_dir / "2-cell-grid.png"), full_page=True)
    assert_inert(page)

    page.locator("[data-testid=sample-card]").first.click()  # the detail
    page.wait_for_selector("[data-testid=sample-detail] dl.facts")
    detail = page.inner_text("[data-testid=sample-detail]")
    assert any(name in detail for name in NAMES) and META_NAME in detail
    link = page.get_attribute("[data-testid=sample-detail] dd.mono a", "href")
    assert link and link.startswith("api/runs/%22%3E%3Cimg") and "/files/img/" in link
    page.locator("[data-testid=sample-detail]").screenshot(path=str(out_dir / "3-detail.png"))
    assert_inert(page)
    page.keyboard.press("Escape")

    page.goto(server + f"#/samples?run={a}&errors=true")  # the rows that are no images
    page.wait_for_selector("[data-testid=sample-card]")
    titles = page.eval_on_selector_all("[data-testid=sample-card]", "els => els.map(e => e.title)")
    assert sorted(titles) == sorted(EVIL)
    page.locator("[data-testid=sample-card]").first.click()
    page.wait_for_selector("[data-testid=sample-detail] dl.facts")
    assert page.inner_text("[data-testid=sample-detail] header .title") in EVIL
    assert_inert(page)
    page.keyboard.press("Escape")

    sid = Run.open(hostile["a"]).samples()["sample_id"].iloc[0]
    page.goto(server + f"#/compare?run={a}&b={b}&method=gradcam&sample={sid}")  # compare
    page.wait_for_selector("[data-testid=map-comparison] .kpi")
    page.wait_for_selector("[data-testid=sample-detail]")
    page.wait_for_function("() => !document.body.innerText.includes('Loading predictions')")
    assert RUN_NAMES[1] in page.inner_text("main") and XSS[0] in page.inner_text("body")
    page.screenshot(path=str(out_dir / "4-compare.png"), full_page=True)
    assert_inert(page)
    page.keyboard.press("Escape")

    ids = rid(ID_RUN)
    page.goto(server + f"#/samples?run={ids}&method=gradcam")  # markup as sample ids
    page.wait_for_selector("[data-testid=sample-card]")
    got = page.eval_on_selector_all(
        "[data-testid=sample-card]", "els => els.map(e => e.dataset.sampleId)"
    )
    assert sorted(got) == sorted(IDS)
    for sample in IDS:
        page.goto(server + f"#/samples?run={ids}&method=gradcam&sample={quote(sample, safe='')}")
        page.wait_for_selector("[data-testid=sample-detail] dl.facts")
        assert page.get_attribute("[data-testid=sample-detail]", "data-sample-id") == sample
        assert_inert(page)
    page.keyboard.press("Escape")

    page.select_option("[data-testid=run-select]", DAMAGED_RUN)  # a damaged run: its reason
    page.wait_for_selector("[data-testid=damaged-run]")
    assert "samples/part-00001.parquet" in page.inner_text("[data-testid=damaged-run]")
    page.screenshot(path=str(out_dir / "5-damaged.png"))
    assert_inert(page)

    for rel in EVIL:  # the served files, fetched by the page itself
        url = f"api/runs/{a}/files/{quote(rel)}"
        kind, disposition = page.evaluate(
            "u => fetch(u).then(r => [r.headers.get('content-type'), "
            "r.headers.get('content-disposition')])",
            url,
        )
        assert kind == "application/octet-stream" and disposition.startswith("attachment")
    # The watcher works: an inline script injected on purpose is refused and reported.
    page.evaluate(
        "() => { const s = document.createElement('script'); s.textContent = 'alert(99)'; "
        "document.body.append(s); }"
    )
    page.wait_for_function("() => window.__csp.some(v => v.includes('script-src'))")
    assert not page.dialogs


@pytest.mark.browser
def test_the_report_shows_markup_as_text(
    page: Any, hostile: dict[str, Path], tmp_path: Path, out_dir: Path
) -> None:
    out = tmp_path / "report.html"
    write_report(hostile["a"], out, max_images=100, per_cell=20)
    page.goto(out.as_uri())
    page.errors.clear()
    page.wait_for_selector("table.cm")
    text = page.inner_text("body")
    for s in (*XSS, RUN_NAMES[0], *REGIONS.values()):
        assert s in text, s
    for anchor in page.eval_on_selector_all("a[href^='#cell-']", "els => els.map(e => e.hash)"):
        page.goto(out.as_uri() + anchor)
        page.wait_for_selector(anchor, state="visible")
    page.screenshot(path=str(out_dir / "report.png"), full_page=True)
    settle(page)
    assert not page.dialogs and not csp_violations(page) and not page.errors
    assert page.evaluate(INJECTED) == 0


META_NAME = "b_onmouseover_alert_12_note_b"  # META as the manifest reader normalises it
assert re.sub(r"[^0-9a-zA-Z_]+", "_", META).strip("_").lower() == META_NAME
