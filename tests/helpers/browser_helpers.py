"""The explorer under uvicorn on a free loopback port, and a headless Debian Chromium page that
records what must never happen: page errors, console errors, JavaScript dialogs (an XSS payload
that ran) and Content-Security-Policy violations."""

from __future__ import annotations

import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from helpers.waiting import wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Each document records its CSP violations before any of its own script runs.
WATCH_CSP = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) =>
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
"""
# Every picture under a scope has loaded, and every chart there has its box's current size.
DRAWN = """scope => {
  const all = (sel) => [...document.querySelectorAll(`${scope} ${sel}`)];
  const fits = (c) => {
    const chart = window.Chart && Chart.getChart(c);
    const box = c.parentElement;
    return !!chart && Math.abs(chart.width - box.clientWidth) < 1
      && Math.abs(chart.height - box.clientHeight) < 1;
  };
  return all("img").every((i) => i.complete && i.naturalWidth > 0) && all("canvas").every(fits);
}"""


@contextmanager
def serve(app: Any, log_level: str = "warning") -> Iterator[str]:
    """``app`` under uvicorn in a thread; yields its URL once the server has started."""
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level=log_level))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    wait_until(lambda: srv.started or not thread.is_alive(), 30, f"uvicorn to start on {port}")
    assert srv.started, "uvicorn stopped before it started serving"
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


@contextmanager
def chromium_page() -> Iterator[Any]:
    """A page whose ``errors`` (page and console errors) and ``dialogs`` lists fill as it runs;
    :func:`csp_violations` reads what the current document refused."""
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            pg = browser.new_page(viewport={"width": 1440, "height": 1000})
            pg.set_default_timeout(20_000)
            pg.errors = []
            pg.dialogs = []
            pg.on("pageerror", lambda e: pg.errors.append(str(e)))
            pg.on("console", lambda m: m.type == "error" and pg.errors.append(m.text))

            def dialog(d: Any) -> None:
                pg.dialogs.append(f"{d.type}: {d.message}")
                d.dismiss()

            pg.on("dialog", dialog)
            pg.add_init_script(WATCH_CSP)
            yield pg
        finally:
            browser.close()


def drawn(pg: Any, scope: str) -> None:
    """Wait until ``scope`` is drawn at the current viewport size: every picture in it has
    loaded (lazy ones are asked for at once) and every chart has been fitted to its box."""
    pg.eval_on_selector_all(f"{scope} img", "els => els.forEach(e => { e.loading = 'eager'; })")
    pg.wait_for_function(DRAWN, arg=scope)


def csp_violations(pg: Any) -> list[str]:
    return list(pg.evaluate("() => window.__csp || []"))
