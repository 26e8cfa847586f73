"""salience.open_explorer: the explorer from Python, framed inline by a notebook on this machine
(and by nothing else)."""

from __future__ import annotations

import functools
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from helpers.browser_helpers import chromium_page
from helpers.synthetic_runs import blob, write_run

import salience
from salience.server.notebook import Explorer


@pytest.fixture
def run(tmp_path: Path) -> Path:
    labels = ["cat", "dog"] * 4
    maps = np.stack([blob(0.5, 0.3 + 0.05 * i, 0.1) for i in range(8)]).astype(np.float32)
    return write_run(tmp_path / "run", labels, labels, maps, ["cat", "dog"]).path


def test_open_explorer_serves_and_shows_itself_as_an_iframe(run: Path) -> None:
    with salience.open_explorer(run, browser=False) as explorer:
        assert isinstance(explorer, Explorer) and "running" in repr(explorer)
        runs = httpx.get(explorer.url + "api/runs").json()
        assert len(runs) == 1
        page = httpx.get(explorer.url)
        csp = page.headers["content-security-policy"]
        assert "frame-ancestors 'self' http://localhost:* http://127.0.0.1:*" in csp
        assert "x-frame-options" not in page.headers
        api = httpx.get(explorer.url + "api/runs")
        assert "frame-ancestors 'none'" in api.headers["content-security-policy"]
        assert f'<iframe src="{explorer.url}"' in explorer._repr_html_()
        url = explorer.url
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "api/runs", timeout=2)


def test_a_served_explorer_still_refuses_frames(run: Path) -> None:
    from fastapi.testclient import TestClient

    from salience.server import create_app

    page = TestClient(create_app([run])).get("/")
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"


@pytest.fixture
def notebook_page(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A page served from another loopback origin, as Jupyter's would be."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield tmp_path, f"http://localhost:{server.server_address[1]}/"
    finally:
        server.shutdown()


@pytest.mark.browser
def test_a_notebook_on_another_port_frames_the_explorer(
    run: Path, notebook_page: tuple[Path, str]
) -> None:
    folder, origin = notebook_page
    with salience.open_explorer(run, browser=False) as explorer:
        (folder / "notebook.html").write_text(
            f"<!doctype html><html><body>{explorer._repr_html_()}</body></html>"
        )
        with chromium_page() as pg:
            pg.goto(origin + "notebook.html")
            frame = next(f for f in pg.frames if f.url.startswith(explorer.url))
            frame.wait_for_selector("[data-testid=confusion-cell]")
            assert frame.locator("[data-testid=confusion-cell]").count() >= 2
            assert not pg.dialogs
