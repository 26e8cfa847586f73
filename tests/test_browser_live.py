"""The image detail with a live model (``salience serve --model``) in Chromium: a misclassified
image shows its true class's map next to the predicted one, a class picked by search gets its
map, statistics carry their descriptions; without a model the page says what it would need."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.browser_helpers import chromium_page, csp_violations, drawn, serve
from helpers.live_runs import figure_run, model_file

from salience.models import load_model
from salience.server import create_app
from salience.server.run_cache import RunRegistry, attach
from salience.store import Run

pytestmark = pytest.mark.browser

LOADED = "el => !!el && el.complete && el.naturalWidth > 0"
SAYS = "([s, p]) => new RegExp(p).test(document.querySelector(s)?.textContent || '')"


@pytest.fixture(scope="module")
def tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("browser-live")


@pytest.fixture(scope="module")
def run_path(tmp: Path) -> Path:
    return figure_run(tmp)


@pytest.fixture
def page() -> Iterator[Any]:
    with chromium_page() as pg:
        yield pg
        assert not pg.errors, pg.errors
        assert not pg.dialogs, pg.dialogs
        assert not csp_violations(pg)


def wrong(run_path: Path) -> str:
    samples = Run.open(run_path).samples()
    return str(samples[~samples["correct"].astype(bool)]["sample_id"].iloc[0])


def loaded(pg: Any, selector: str) -> None:
    pg.wait_for_function(f"() => ({LOADED})(document.querySelector({selector!r}))")


def test_true_class_and_picked_class_maps_live(
    page: Any, tmp: Path, run_path: Path, out_dir: Path
) -> None:
    registry = RunRegistry([run_path])
    attach(registry, load_model(f"{model_file(tmp)}:figures"))
    sid = wrong(run_path)
    run = Run.open(run_path)
    with serve(create_app(registry)) as url:
        page.goto(f"{url}#/samples?run=figures&method=integrated_gradients&sample={sid}")
        page.wait_for_selector("[data-testid=sample-detail] [data-testid=class-maps]")
        loaded(page, "[data-testid=true-class-map] img.ov")
        loaded(page, "[data-testid=pred-class-map] img.ov")
        row = run.samples().set_index("sample_id").loc[sid]
        label, pred = str(row["label"]), str(row["pred"])
        true_tile = page.locator("[data-testid=true-class-map]")
        assert true_tile.get_attribute("data-target") == str(run.class_names.index(label))
        page.wait_for_function(SAYS, arg=["[data-testid=true-class-map] .name", "p = "])
        # A class by search: type part of its name, take the first match.
        target = next(c for c in run.class_names if c not in (label, pred))
        page.fill("[data-testid=class-picker]", target[:4])
        page.locator("[data-testid=class-option]").first.click()
        loaded(page, "[data-testid=picked-class-map] img.ov")
        picked = page.locator("[data-testid=picked-class-map]").get_attribute("data-target")
        assert picked == str(run.class_names.index(target))
        # The big image: integrated gradients at full resolution, computed live.
        loaded(page, ".big img.ov")
        page.wait_for_function(SAYS, arg=["[data-testid=resolution-note]", "full resolution"])
        # Every statistic row says what it means; the (i) legend lists them.
        titles = page.eval_on_selector_all(
            "[data-testid=stat-name]", "els => els.map(e => e.getAttribute('title') || '')"
        )
        assert titles and all(len(t) > 20 for t in titles)
        page.locator("[data-testid=sample-detail] [data-testid=stat-legend] summary").click()
        assert (
            "gini"
            in page.locator("[data-testid=sample-detail] [data-testid=stat-legend]").inner_text()
        )
        page.set_viewport_size({"width": 1440, "height": 1900})
        drawn(page, "[data-testid=sample-detail]")
        page.locator("[data-testid=sample-detail]").screenshot(
            path=str(out_dir / "live-detail.png")
        )


def test_without_a_model_the_detail_says_what_it_needs(
    page: Any, run_path: Path, out_dir: Path
) -> None:
    sid = wrong(run_path)
    with serve(create_app([run_path])) as url:
        page.goto(f"{url}#/samples?run=figures&method=gradient&sample={sid}")
        page.wait_for_selector("[data-testid=true-class-map]")
        assert "--model" in page.locator("[data-testid=true-class-map]").inner_text()
        assert page.locator("[data-testid=class-picker]").is_disabled()
        note = page.locator("[data-testid=resolution-note]").inner_text()
        assert "8×8" in note and "--map-size 32" in note
        loaded(page, ".big img.ov")
        assert "smooth=true" in (page.locator(".big img.ov").get_attribute("src") or "")
        page.set_viewport_size({"width": 1440, "height": 1900})
        drawn(page, "[data-testid=sample-detail]")
        page.locator("[data-testid=sample-detail]").screenshot(path=str(out_dir / "no-model.png"))
