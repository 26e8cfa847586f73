"""The explorer end to end in Debian's Chromium (Playwright): confusion cell -> cards -> image
detail -> every method's overlay, method switch, a filter, a shared URL, two runs compared.

Screenshots land in test-output/<test>/ to be looked at."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.browser_helpers import chromium_page, csp_violations, drawn, serve
from helpers.explorer_runs import make_runs

from salience.server import create_app
from salience.store import Run

pytestmark = pytest.mark.browser

LOADED = "els => els.length > 0 && els.every(e => e.complete && e.naturalWidth > 0)"
CHARTED = "sel => !!(window.Chart && Chart.getChart(document.querySelector(sel)))"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_runs(tmp_path_factory.mktemp("browser"))


@pytest.fixture(scope="module")
def server(runs: tuple[Path, Path]) -> Iterator[str]:
    """The project's app under uvicorn in a thread, on a free loopback port."""
    with serve(create_app(list(runs))) as url:
        yield url


@pytest.fixture(scope="module")
def page(server: str) -> Iterator[Any]:
    with chromium_page() as pg:
        yield pg


@pytest.fixture(autouse=True)
def _clean_page(page: Any) -> Iterator[None]:
    """Every test ends without errors, dialogs or CSP violations (the explorer works under its
    Content-Security-Policy)."""
    yield
    assert not page.errors, page.errors
    assert not page.dialogs, page.dialogs
    assert not csp_violations(page)


def overlays_loaded(pg: Any, scope: str, method: str | None = None) -> list[str]:
    """Wait until every overlay under ``scope`` has loaded; their methods."""
    sel = f"{scope} [data-testid=saliency-overlay]" + (f"[data-method={method}]" if method else "")
    pg.wait_for_selector(sel, state="attached")
    pg.eval_on_selector_all(sel, "els => els.forEach(e => { e.loading = 'eager'; })")  # offscreen
    pg.wait_for_function(f"() => ({LOADED})([...document.querySelectorAll('{sel}')])")
    return pg.eval_on_selector_all(sel, "els => els.map(e => e.dataset.method)")


def shows(pg: Any, n: int) -> None:
    """Wait until the grid says it holds ``n`` images."""
    count = "document.querySelector('[data-testid=result-count]')?.textContent"
    pg.wait_for_function(f"() => ({count} || '').startsWith('{n} ')")


def test_drill_down_from_a_cell_to_every_methods_map(
    page: Any, server: str, runs: tuple[Path, Path], out_dir: Path
) -> None:
    run = Run.open(runs[0])
    samples = run.samples()
    page.goto(server + "#/overview?run=v1")
    page.wait_for_selector("[data-testid=confusion-cell]")
    assert page.locator(".legend .bar").count() >= 1
    page.screenshot(path=str(out_dir / "1-overview.png"), full_page=True)
    cells = page.locator("[data-testid=confusion-cell]")
    total = sum(int(cells.nth(i).get_attribute("data-count")) for i in range(cells.count()))
    assert total == len(samples)
    busiest = max(range(cells.count()), key=lambda i: int(cells.nth(i).get_attribute("data-count")))
    cell = cells.nth(busiest)
    true, pred = cell.get_attribute("data-true"), cell.get_attribute("data-pred")
    count = int(cell.get_attribute("data-count"))
    cell.click()
    page.wait_for_selector("[data-testid=sample-card]")
    cards = page.locator("[data-testid=sample-card]")
    assert cards.count() == count
    expected = set(samples[(samples.label == true) & (samples.pred == pred)].sample_id)
    shown = {cards.nth(i).get_attribute("data-sample-id") for i in range(cards.count())}
    assert shown == expected
    overlays_loaded(page, ".cards")
    page.screenshot(path=str(out_dir / "2-cell-grid.png"), full_page=True)

    cards.first.click()
    page.wait_for_selector("[data-testid=sample-detail]")
    methods = overlays_loaded(page, "[data-testid=sample-detail]")
    assert set(methods) == set(run.methods)
    for canvas in ("#topk-chart", "#region-chart"):
        page.wait_for_function(CHARTED, arg=canvas)
    page.set_viewport_size({"width": 1440, "height": 1700})  # the whole dialog in view
    drawn(page, "[data-testid=sample-detail]")
    page.locator("[data-testid=sample-detail]").screenshot(path=str(out_dir / "3-detail.png"))
    page.set_viewport_size({"width": 1440, "height": 1000})
    assert "sample=" in page.url
    page.keyboard.press("Escape")
    page.wait_for_selector("[data-testid=sample-detail]", state="detached")

    page.select_option("[data-testid=method-select]", "input_x_gradient")
    page.wait_for_function("() => location.hash.includes('method=input_x_gradient')")
    assert overlays_loaded(page, ".cards", "input_x_gradient")
    assert page.locator(".cards [data-testid=saliency-overlay][data-method=gradcam]").count() == 0
    assert not page.errors, page.errors


def test_filters_live_in_the_url(
    page: Any, server: str, runs: tuple[Path, Path], out_dir: Path
) -> None:
    samples = Run.open(runs[0]).samples()
    page.goto(server + "#/samples?run=v1&method=gradcam")
    page.wait_for_selector("[data-testid=sample-card]")
    page.click("button[data-filter=correct][data-value=false]")
    wrong = samples[~samples.correct]
    shows(page, len(wrong))
    page.wait_for_function("() => location.hash.includes('correct=false')")
    ids = page.eval_on_selector_all(
        "[data-testid=sample-card]", "els => els.map(e => e.dataset.sampleId)"
    )
    assert set(ids) == set(wrong.sample_id)
    page.select_option("select[data-filter=true]", "chef")
    chef_wrong = wrong[wrong.label == "chef"]
    shows(page, len(chef_wrong))
    url = page.url
    overlays_loaded(page, ".cards")
    page.screenshot(path=str(out_dir / "filtered-grid.png"), full_page=True)
    first = chef_wrong.sample_id.iloc[0]
    page.goto(url + f"&sample={first}")  # a shared link: filters and the open image
    page.reload()
    page.wait_for_selector("[data-testid=sample-detail]")
    assert page.locator("[data-testid=result-count]").inner_text().startswith(f"{len(chef_wrong)} ")
    assert page.get_attribute("[data-testid=sample-detail]", "data-sample-id") == first
    assert (
        page.locator("button[data-filter=correct][data-value=false]").get_attribute("class") == "on"
    )
    assert not page.errors, page.errors


def test_two_runs_side_by_side(
    page: Any, server: str, runs: tuple[Path, Path], out_dir: Path
) -> None:
    a, b = (Run.open(r).samples().set_index("sample_id") for r in runs)
    b = b.loc[a.index]
    changed = int(((a.correct != b.correct) | (~a.correct & (a.pred != b.pred))).sum())
    page.goto(server + "#/compare?run=v1&method=gradcam")
    page.wait_for_selector("[data-testid=map-comparison] .kpi")
    page.wait_for_function(CHARTED, arg="#per-class-chart")
    page.wait_for_selector("[data-testid=flip-count]")  # the flips have arrived too
    assert page.evaluate(CHARTED, "#per-class-chart")  # and the chart survived them
    assert int(page.locator("[data-testid=flip-count]").inner_text().split()[0]) == changed
    overlays_loaded(page, "[data-testid=flip-card]")
    page.screenshot(path=str(out_dir / "1-compare.png"), full_page=True)
    page.locator("[data-testid=flip-card]").first.click()
    page.wait_for_selector("[data-testid=sample-detail]")
    shown = overlays_loaded(page, "[data-testid=sample-detail]")
    assert sorted(shown) == sorted(Run.open(runs[0]).methods * 2)  # every method, both runs
    page.locator("[data-testid=sample-detail]").screenshot(path=str(out_dir / "2-pair.png"))
    page.keyboard.press("Escape")
    same = a.index[(a.pred == b.pred)][0]  # any image, not only flipped ones
    page.goto(server + f"#/samples?run=v1&method=gradcam&sample={same}")
    page.click("[data-testid=compare-link]")
    page.wait_for_function(
        f"() => location.hash.startsWith('#/compare') && location.hash.includes('{same}')"
    )
    page.wait_for_selector(f"[data-testid=sample-detail][data-sample-id='{same}']")
    assert len(overlays_loaded(page, "[data-testid=sample-detail]")) == 2 * len(
        Run.open(runs[0]).methods
    )
    page.keyboard.press("Escape")
    page.select_option("[data-testid=run-select]", "v2")
    page.wait_for_function("() => location.hash.includes('run=v2')")
    page.click("nav.tabs a[data-view=overview]")
    page.wait_for_selector("[data-testid=confusion-cell]")
    counts = page.eval_on_selector_all(
        "[data-testid=confusion-cell]", "els => els.map(e => +e.dataset.count)"
    )
    assert sum(counts) == len(b) and (counts != [])
    assert not page.errors, page.errors
