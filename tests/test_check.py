"""``salience check``: the report keys, the controls, the verdict rules, the HTML page and the
command line on a tiny TorchScript model and a folder of generated images."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

from salience.checking import CheckConfig, judge, run_check, units
from salience.cli import app
from salience.report.check_html import render

DESIGN_KEYS = {
    "randomization_similarity",
    "deletion_auc",
    "insertion_auc",
    "road_morf",
    "road_lerf",
    "max_sensitivity",
    "sparseness",
    "ms_per_image",
    "trusted",
    "verdict",
}
FAST = CheckConfig(steps=6, road_percentages=(0.2, 0.6), layers=2, sensitivity_samples=2)


class Spot(nn.Module):
    """A small CNN whose class 0 logit grows with the brightness of the image centre."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            self.conv.weight.fill_(0.1)
            self.conv.bias.data.zero_()  # type: ignore[union-attr]
            self.fc.weight.copy_(torch.tensor([[0.3] * 4, [0.0] * 4, [-0.3] * 4]))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.conv(x))
        centre = h[:, :, 6:10, 6:10].mean((2, 3))
        return self.fc(centre)


def test_report_has_the_design_keys_and_calibrated_controls() -> None:
    torch.manual_seed(0)
    x = torch.rand(3, 3, 16, 16)
    report = run_check(Spot(), x, ["gradient", "gradcam"], config=FAST, model_name="spot")
    assert report["model"] == "spot" and report["samples"] == 3
    assert set(report["methods"]) == {"gradient", "gradcam"}
    assert set(report["controls"]) == {"random", "constant"}
    for entry in [*report["methods"].values(), *report["controls"].values()]:
        assert set(entry) >= DESIGN_KEYS
        assert isinstance(entry["trusted"], bool) and isinstance(entry["verdict"], str)
        assert entry["ms_per_image"] >= 0
    assert report["controls"]["constant"]["randomization_similarity"] == 1.0
    assert abs(report["controls"]["random"]["randomization_similarity"]) < 0.3
    assert report["controls"]["constant"]["sparseness"] == 0.0
    assert len(report["methods"]["gradient"]["randomization"]["spearman_abs"]) == 2
    assert report["config"]["steps"] == 6
    json.dumps(report)  # JSON-ready: no tensors, no NaN


def test_the_maps_of_a_faithful_method_beat_the_random_control() -> None:
    torch.manual_seed(0)
    x = 0.2 * torch.rand(4, 3, 16, 16)
    x[:, :, 5:11, 5:11] += 0.8  # a bright centre: imputing it from its dark surroundings
    report = run_check(Spot(), x, ["gradient"], config=FAST)
    g, r = report["methods"]["gradient"], report["controls"]["random"]
    # the gradient is non-zero only around the centre the model reads
    assert g["insertion_minus_deletion"] > r["insertion_minus_deletion"] + 0.1
    assert g["road_lerf_minus_morf"] > r["road_lerf_minus_morf"] + 0.1


def test_a_method_that_cannot_run_is_reported_not_fatal() -> None:
    flat = nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 3))  # no spatial layer for a CAM
    report = run_check(flat, torch.rand(2, 3, 8, 8), ["gradient", "gradcam"], config=FAST)
    cam = report["methods"]["gradcam"]
    assert cam["trusted"] is False and "could not run on this model" in cam["verdict"]
    assert cam["deletion_auc"] is None and "spatial" in cam["error"]
    assert report["methods"]["gradient"]["deletion_auc"] is not None
    assert "could not run" in render(report)


def entry(full: float, mean: float, gap: float, road: float, sens: float = 0.1) -> dict:
    return {
        "control": False,
        "randomization_similarity": full,
        "randomization_mean": mean,
        "randomization_top": mean,
        "insertion_minus_deletion": gap,
        "road_lerf_minus_morf": road,
        "max_sensitivity": sens,
        "verdict": "",
        "trusted": False,
    }


def test_verdicts_follow_the_rules() -> None:
    random = entry(0.0, 0.0, 0.05, 0.0)
    cfg = CheckConfig()
    stuck = entry(0.9, 0.95, 0.4, 0.3)
    judge(stuck, "guided_backprop", random, cfg)
    assert not stuck["trusted"]
    assert "barely change when the model's weights are randomized" in stuck["verdict"]
    assert stuck["verdict"].startswith("guided_backprop:")
    # low once fully random, but unchanged over most of the cascade: still not trusted
    late = entry(0.1, 0.6, 0.4, 0.3)
    judge(late, "m", random, cfg)
    assert not late["trusted"] and "0.60 on average over the cascade" in late["verdict"]
    unfaithful = entry(0.1, 0.2, 0.07, 0.05)  # 0.02 and 0.05 above random: 0.035 < 0.05
    judge(unfaithful, "m", random, cfg)
    assert not unfaithful["trusted"]
    assert "no more than a random ranking" in unfaithful["verdict"]
    one_sided = entry(0.1, 0.2, 0.4, -0.1)  # far better on deletion/insertion, worse on ROAD
    judge(one_sided, "m", random, cfg)
    assert not one_sided["trusted"]
    roady = entry(0.1, 0.2, 0.05, 0.16)  # equal to random on deletion/insertion, ROAD +0.16
    judge(roady, "m", random, cfg)
    assert roady["trusted"]
    good = entry(0.1, 0.2, 0.3, 0.2, sens=2.0)
    judge(good, "m", random, cfg)
    assert good["trusted"] and "usable for this model" in good["verdict"]
    assert "max-sensitivity 2.00" in good["verdict"]
    missing = entry(0.1, 0.2, 0.3, 0.2)
    missing["insertion_minus_deletion"] = None
    judge(missing, "m", random, cfg)
    assert not missing["trusted"] and "no number" in missing["verdict"]


def test_html_report_is_self_contained() -> None:
    torch.manual_seed(0)
    report = run_check(Spot(), torch.rand(2, 3, 16, 16), ["gradient"], config=FAST)
    page = render(report)
    assert page.count("data:image/png;base64,") == 2  # overview + one method figure
    assert not re.search(r"(src|href)=['\"]?(https?:|//)", page)
    assert "data-method='gradient'" in page and "random" in page and "constant" in page
    assert units(["gradient"]) == 3 * 7


def write_images(folder: Path, count: int, size: int = 20) -> None:
    rng = np.random.default_rng(0)
    for k in range(count):
        cls = folder / f"class{k % 2}"
        cls.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 255, size=(size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(cls / f"img{k}.png")


@pytest.fixture
def scripted(tmp_path: Path) -> Path:
    path = tmp_path / "spot.pt"
    torch.jit.script(Spot().eval()).save(str(path))
    return path


def test_cli_writes_report_json_and_html(tmp_path: Path, scripted: Path) -> None:
    data = tmp_path / "data"
    write_images(data, 5)
    out = tmp_path / "out"
    args = [
        "check",
        "--model",
        str(scripted),
        "--data",
        str(data),
        "--samples",
        "3",
        "--method",
        "gradient",
        "--method",
        "integrated_gradients:steps=4",
        "--out",
        str(out),
        "--device",
        "cpu",
        "--preprocess",
        "unit:size=16,resize=16",
        "--steps",
        "4",
        "--layers",
        "0",
        "--json",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "report.json").read_text())
    assert set(report["methods"]) == {"gradient", "integrated_gradients:steps=4"}
    assert report["samples"] == 3 and len(report["images"]) == 3
    assert report["config"]["layers"] is None  # one stage per layer: conv, fc
    assert report["settings"]["channels_last"] is False  # TorchScript keeps its format
    assert report["methods"]["gradient"]["randomization"]["layers"] == ["fc", "conv"]
    assert (out / "report.html").read_text().startswith("<!DOCTYPE html>")
    assert json.loads(result.stdout[result.stdout.index("{") :])["model"] == str(scripted)


def test_cli_reads_a_flat_folder_and_reports_user_errors(tmp_path: Path, scripted: Path) -> None:
    flat = tmp_path / "flat"
    flat.mkdir()
    Image.fromarray(np.zeros((16, 16, 3), dtype=np.uint8)).save(flat / "a.png")
    base = [
        "check",
        "--model",
        str(scripted),
        "--data",
        str(flat),
        "--samples",
        "1",
        "--out",
        str(tmp_path / "o"),
        "--preprocess",
        "unit:size=16,resize=16",
        "--steps",
        "2",
        "--layers",
        "1",
    ]
    ok = CliRunner().invoke(app, [*base, "--method", "gradient", "--contiguous"])
    assert ok.exit_code == 0, ok.output
    bad = CliRunner().invoke(app, [*base, "--method", "no_such_method"])
    assert bad.exit_code == 2 and "unknown method" in bad.output


def test_bootstrap_interval_matches_the_normal_approximation() -> None:
    from salience.check.intervals import interval, resample_indices

    values = torch.randn(400, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    lo, hi = interval(values, resample_indices(400, 4000, 0), 0.95)  # type: ignore[misc]
    mean, se = float(values.mean()), float(values.std(correction=0)) / 400**0.5
    assert abs((lo + hi) / 2 - mean) < 0.1 * se
    assert abs((hi - lo) / 2 - 1.96 * se) < 0.1 * 1.96 * se  # percentile ~ mean +- 1.96 se
    same = torch.full((5,), 0.3, dtype=torch.float64)
    assert interval(same, resample_indices(5, 100, 0), 0.95) == (0.3, 0.3)
    assert interval(torch.tensor([0.3, math.nan]), resample_indices(2, 100, 0), 0.95) is None


def test_an_interval_across_the_threshold_is_not_enough_evidence() -> None:
    random = entry(0.0, 0.0, 0.05, 0.0)
    unsure = entry(0.1, 0.2, 0.3, 0.2)  # means pass, but the margin's interval straddles 0.05
    unsure["intervals"] = {
        "randomization_similarity": [0.05, 0.15],
        "randomization_mean": [0.1, 0.3],
        "faithfulness_over_random": [-0.02, 0.4],
        "insertion_minus_deletion_over_random": [0.1, 0.4],
        "road_over_random": [0.0, 0.3],
    }
    judge(unsure, "m", random, CheckConfig(), samples=8)
    assert not unsure["trusted"] and unsure["status"] == "not enough evidence"
    assert "over 8 images" in unsure["verdict"] and "--samples" in unsure["verdict"]
    clear = {**unsure, "intervals": {**unsure["intervals"], "faithfulness_over_random": [0.1, 0.4]}}
    judge(clear, "m", random, CheckConfig(), samples=8)
    assert clear["trusted"] and "on 8 images" in clear["verdict"]
    judge(clear, "m", random, CheckConfig(), samples=2)  # too few for any interval
    assert not clear["trusted"] and "2 images are too few" in clear["verdict"]


def test_one_image_never_yields_usable_and_methods_are_ranked() -> None:
    torch.manual_seed(0)
    x = 0.2 * torch.rand(1, 3, 16, 16)
    x[:, :, 5:11, 5:11] += 0.8
    seen: list[list[str]] = []
    report = run_check(
        Spot(),
        x,
        ["gradient", "gradcam"],
        config=FAST,
        on_method=lambda r: seen.append([*r["controls"], *r["methods"]]),
    )
    assert seen[0] == ["random"] and len(seen) == 4  # random first, then saved per method
    for e in report["methods"].values():
        assert e["status"] != "trusted" and "usable" not in e["verdict"]
        assert "1 images" in e["verdict"] or "do not" in e["verdict"]
    assert sorted(report["ranking"]) == ["gradcam", "gradient"]
    assert [report["methods"][n]["rank"] for n in report["ranking"]] == [1, 2]
    assert (
        "use" not in report["recommendation"].split(";")[0]
        or "no method" in report["recommendation"]
    )


def test_rank_puts_trusted_methods_first_by_margin() -> None:
    from salience.check import rank

    methods = {
        "a": {"status": "untrusted", "faithfulness_over_random": 0.5},
        "b": {"status": "trusted", "faithfulness_over_random": 0.1},
        "c": {"status": "trusted", "faithfulness_over_random": 0.3},
        "d": {"status": "not enough evidence", "faithfulness_over_random": 0.9},
        "e": {"error": "no layer", "faithfulness_over_random": None},
    }
    order, advice = rank(methods)  # type: ignore[arg-type]
    assert order == ["c", "b", "d", "a", "e"] and advice == "for this model, use c (then b)"


def test_the_maps_are_explained_once_for_randomization_and_sensitivity() -> None:
    from salience.metrics import max_sensitivity, model_randomization

    calls: list[int] = []

    def method(model: nn.Module, x: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        calls.append(x.shape[0])
        v = x.detach().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(model(v)[:, 0].sum(), v)
        return grad.sum(1)

    torch.manual_seed(0)
    x, model = torch.rand(2, 3, 16, 16), Spot()
    maps = method(model, x, torch.zeros(2, dtype=torch.long))
    runs: list[tuple[Callable[..., Any], dict[str, Any]]] = [
        (model_randomization, {"layers": 2}),
        (max_sensitivity, {"samples": 2}),
    ]
    for metric, kw in runs:
        calls.clear()
        fresh = metric(model, x, method, 0, **kw)
        again = len(calls)
        calls.clear()
        reused = metric(model, x, method, 0, saliency=maps, **kw)
        assert len(calls) == again - 1  # the trained model's maps are not explained again
        assert torch.allclose(fresh.scores, reused.scores) and bool(fresh.scores.isfinite().all())


def test_the_estimate_scales_one_image_timings_by_the_batch_speed_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import salience.check.run as check_run

    x = torch.rand(4, 3, 16, 16)
    monkeypatch.setattr(check_run, "warm_up", lambda *a, **k: 0.5)  # seconds for one image

    def estimate(per_image_in_batch: float) -> dict[tuple[str, str], float]:
        def forward(_model: nn.Module, rows: torch.Tensor) -> float:
            return 0.1 if rows.shape[0] == 1 else per_image_in_batch * rows.shape[0]

        monkeypatch.setattr(check_run, "_forward_seconds", forward)
        return check_run.estimate_check(Spot(), x, ["gradient"], FAST).seconds

    alone, batched = estimate(0.1), estimate(0.025)  # batching: 4x faster per image
    assert set(alone) == set(batched) and ("gradient", "explain") in alone
    assert alone[("gradient", "explain")] == pytest.approx(0.5 * 4)
    for key, seconds in alone.items():
        assert batched[key] == pytest.approx(seconds / 4)
    assert estimate(0.5) == pytest.approx(alone)  # never scaled up
