"""salience cost and the model settings: bf16, compile, int8 and pruned models run and their
fidelity numbers are computed (checked against scipy), the user's model is never changed, the
recommendation picks the cheapest acceptable setting, and the command runs end to end."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.stats import spearmanr
from torch import nn
from typer.testing import CliRunner

from salience._guard import hook_count
from salience.cli import app
from salience.cost import CostConfig, cost_knob, forward_only, measure_cost, recommend
from salience.cost.fidelity import top_mask
from salience.cost.prune import parameter_count, pruned
from salience.cost.quantize import int8_dynamic, int8_static
from salience.cost.recommend import frontier
from salience.errors import SalienceError
from salience.methods import build_method, list_methods
from salience.models.settings import ModelSettings, SettingsView, apply_settings
from tests.conftest import TinyCNN


@pytest.fixture
def cnn() -> nn.Module:
    return TinyCNN().float().eval()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(2, 3, 24, 24)


def _scipy_spearman(a: torch.Tensor, b: torch.Tensor) -> float:
    rhos = [spearmanr(p.abs().flatten(), q.abs().flatten())[0] for p, q in zip(a, b, strict=True)]
    return float(np.mean(rhos))


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def _same_state(model: nn.Module, before: dict[str, torch.Tensor]) -> bool:
    after = model.state_dict()
    return after.keys() == before.keys() and all(torch.equal(after[k], before[k]) for k in before)


def test_bf16_fidelity_is_computed(cnn: nn.Module, images: torch.Tensor) -> None:
    before = _state(cnn)
    report = measure_cost(
        cnn, images, {"integrated_gradients": {"steps": 8}}, config=CostConfig(kinds=("precision",))
    )
    rows = report["methods"]["integrated_gradients"]
    assert set(rows) == {"reference", "bf16"}
    assert rows["reference"]["spearman"] == pytest.approx(1.0, abs=1e-12)
    assert rows["reference"]["topk_iou"] == 1.0 and rows["reference"]["deletion_delta"] == 0.0
    # independent reference: the same maps recomputed here, ranked by scipy
    target = cnn(images).argmax(1)
    method = build_method("integrated_gradients", steps=8)
    ref = method.explain(cnn, images, target)
    cheap = method.explain(apply_settings(cnn, ModelSettings(precision="bf16")), images, target)
    assert rows["bf16"]["spearman"] == pytest.approx(_scipy_spearman(ref, cheap), abs=1e-6)
    assert 0.9 < rows["bf16"]["spearman"] < 1.0  # bf16 rounding moves the ranks a little
    assert rows["bf16"]["ms_per_image"] > 0 and rows["bf16"]["peak_mb"] is not None
    assert _same_state(cnn, before) and not any(isinstance(m, SettingsView) for m in cnn.modules())


def test_settings_view_shares_names_and_leaves_the_model(cnn: nn.Module) -> None:
    view = apply_settings(cnn, ModelSettings(precision="bf16"))
    assert [n for n, _ in view.named_modules()] == [n for n, _ in cnn.named_modules()]
    assert view.state_dict().keys() == cnn.state_dict().keys()
    x = torch.rand(1, 3, 8, 8)
    out = view(x)
    assert out.dtype == torch.float32 and not torch.equal(out, cnn(x))  # bf16 rounding
    assert torch.allclose(out, cnn(x), atol=0.05)
    assert apply_settings(cnn, ModelSettings()) is cnn  # the defaults change nothing


def test_settings_view_leaves_mode_flags_and_hooks(cnn: nn.Module) -> None:
    cnn.train()
    view = apply_settings(cnn, ModelSettings(precision="bf16"))
    hooks = hook_count(cnn)
    build_method("gradcam").explain(view, torch.rand(2, 3, 8, 8))
    assert cnn.training and all(m.training for m in cnn.modules())
    assert all(p.requires_grad for p in cnn.parameters()) and hook_count(cnn) == hooks


def test_fp16_on_cpu_and_a_bad_compile_backend_are_one_line(cnn: nn.Module) -> None:
    with pytest.raises(SalienceError, match="fp16 needs a CUDA device"):
        apply_settings(cnn, ModelSettings(precision="fp16"))
    with pytest.raises(SalienceError, match="run without --compile"):
        apply_settings(cnn, ModelSettings(compile=True, compile_backend="no-such-backend"))


def test_compile_path_runs_and_reports_warmup(cnn: nn.Module, images: torch.Tensor) -> None:
    """The eager backend goes through dynamo's tracing (fast); maps must equal the reference."""
    report = measure_cost(
        cnn, images, {"gradcam": {}}, config=CostConfig(kinds=("compile",), compile_backend="eager")
    )
    row = report["methods"]["gradcam"]["compile"]
    assert row["warmup_s"] > 0 and row["ms_per_image"] > 0
    assert row["spearman"] == pytest.approx(1.0, abs=1e-9) and row["topk_iou"] == 1.0
    assert not hasattr(cnn, "_compiled_call_impl") or cnn._compiled_call_impl is None


@pytest.mark.slow
def test_compile_inductor(cnn: nn.Module, images: torch.Tensor) -> None:
    """Inductor generates and compiles C++ (tens of seconds on a loaded 2-core machine)."""
    report = measure_cost(cnn, images, {"gradcam": {}}, config=CostConfig(kinds=("compile",)))
    row = report["methods"]["gradcam"]["compile"]
    assert "error" not in row and row["spearman"] > 0.99


def test_int8_for_forward_only_methods(cnn: nn.Module, images: torch.Tensor) -> None:
    before = _state(cnn)
    params = {"occlusion": {"window": 8, "stride": 8}, "gradcam": {}}
    report = measure_cost(cnn, images, params, config=CostConfig(kinds=("int8",)))
    occ, cam = report["methods"]["occlusion"], report["methods"]["gradcam"]
    assert set(cam) == {"reference"}  # gradients need a float model
    assert {"int8_dynamic", "int8_static"} <= set(occ)
    target = cnn(images).argmax(1)
    method = build_method("occlusion", window=8, stride=8)
    ref = method.explain(cnn, images, target)
    dyn = method.explain(int8_dynamic(cnn), images, target)
    assert occ["int8_dynamic"]["spearman"] == pytest.approx(_scipy_spearman(ref, dyn), abs=1e-6)
    for name in ("int8_dynamic", "int8_static"):
        assert -1 <= occ[name]["spearman"] <= 1 and 0 <= occ[name]["topk_iou"] <= 1
    assert _same_state(cnn, before)


def test_int8_static_keeps_the_cam_layer_float(cnn: nn.Module, images: torch.Tensor) -> None:
    q = int8_static(cnn, images, keep_float="conv2")
    kinds = {type(m).__module__ for m in q.modules()}
    assert any("quantized" in k for k in kinds)  # conv1 and fc are int8
    layer = q.get_submodule("conv2")  # the CAM layer is not (FX fuses its ReLU into it)
    assert "quantized" not in type(layer).__module__
    assert all(p.dtype == torch.float32 for p in layer.parameters())
    maps = build_method("scorecam", layer="conv2").explain(q, images, 0)
    assert torch.isfinite(maps).all() and maps.abs().sum() > 0


def test_pruning_removes_channels_and_leaves_the_model(cnn: nn.Module) -> None:
    before, count = _state(cnn), parameter_count(cnn)
    x = torch.rand(1, 3, 16, 16)
    small = pruned(cnn, 0.5, x)
    # conv1 6 -> 3, conv2 8 -> 4 channels; the 5-class output layer keeps its outputs
    conv1, conv2, fc = (small.get_submodule(n) for n in ("conv1", "conv2", "fc"))
    assert isinstance(conv1, nn.Conv2d) and isinstance(conv2, nn.Conv2d)
    assert isinstance(fc, nn.Linear)
    assert (conv1.out_channels, conv2.out_channels, fc.out_features) == (3, 4, 5)
    expected = (3 * 3 * 3 * 3 + 3) + (4 * 3 * 3 * 3 + 4) + (5 * 4 + 5)
    assert parameter_count(small) == expected < count
    assert parameter_count(cnn) == count and _same_state(cnn, before)
    assert small(x).shape == (1, 5)


def test_knobs_and_forward_only_come_from_the_registry() -> None:
    assert cost_knob("integrated_gradients") == "steps"
    assert cost_knob("rise") == "masks" and cost_knob("smoothgrad") == "samples"
    assert cost_knob("gradcam") is None
    assert {"occlusion", "rise", "kernel_shap", "scorecam", "ablationcam", "eigencam"} <= {
        n for n in list_methods() if forward_only(n)
    }
    assert not forward_only("gradcam") and not forward_only("random")


def _row(ms: float, rho: float, iou: float = 1.0) -> dict[str, Any]:
    return {"ms_per_image": ms, "spearman": rho, "topk_iou": iou}


def test_recommendation_is_the_cheapest_acceptable_setting() -> None:
    table = {
        "reference": _row(100, 1.0),
        "bf16": _row(60, 0.95),
        "steps=8": _row(20, 0.85),
        "int8": _row(50, 0.97, iou=0.5),
        "broken": {"ms_per_image": None, "spearman": None, "topk_iou": None, "error": "x"},
    }
    assert recommend(table, 0.9) == "int8"
    assert recommend(table, 0.9, min_topk_iou=0.8) == "bf16"
    assert recommend(table, 0.8) == "steps=8"
    assert recommend(table, 0.99) == "reference"
    assert recommend({"broken": table["broken"]}, 0.5) is None
    assert frontier(table) == ["steps=8", "int8", "reference"]


def test_top_mask_takes_the_largest_magnitudes() -> None:
    m = torch.tensor([[[0.1, -5.0], [3.0, 0.2]]])
    assert top_mask(m, 0.5).tolist() == [[[False, True], [True, False]]]


FACTORY = """
import torch
from torch import nn

def tiny():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    )
"""


@pytest.fixture
def tiny_files(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "tiny_model.py").write_text(FACTORY)
    data = tmp_path / "images"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        pixels = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(data / f"img{i}.png")
    return tmp_path / "tiny_model.py", data


def test_cost_command_end_to_end(tiny_files: tuple[Path, Path], tmp_path: Path) -> None:
    model, data = tiny_files
    out = tmp_path / "out"
    args = ["cost", "--model", f"{model}:tiny", "--data", str(data), "--samples", "2"]
    args += ["--preprocess", "unit:size=16", "--method", "integrated_gradients:steps=4"]
    args += ["--method", "occlusion:window=8,stride=8", "--compile-backend", "eager"]
    args += ["--ratios", "0.5", "--out", str(out), "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "cost.json").read_text())
    assert set(report["methods"]) == {"integrated_gradients", "occlusion"}
    ig = report["methods"]["integrated_gradients"]
    assert {"reference", "bf16", "compile", "pruned_0.5", "steps=2", "steps=1"} <= set(ig)
    assert "int8_static" in report["methods"]["occlusion"]
    for rows in report["methods"].values():
        for row in rows.values():
            keys = ("ms_per_image", "peak_mb", "spearman", "topk_iou", "deletion_delta")
            assert set(keys) <= set(row)
    for name, best in report["recommended"].items():
        assert best in report["methods"][name]
    assert report["parameters"]["pruned_0.5"] < report["parameters"]["reference"]
    assert ig["reference"]["agreement"] == 1.0 and 0 <= ig["pruned_0.5"]["agreement"] <= 1
    page = (out / "cost.html").read_text()
    assert "Content-Security-Policy" in page and "<script" not in page and "<svg" in page


def test_cost_command_refuses_an_unknown_kind(
    tiny_files: tuple[Path, Path], tmp_path: Path
) -> None:
    model, data = tiny_files
    args = ["cost", "--model", f"{model}:tiny", "--data", str(data), "--skip", "quantum"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "unknown --skip quantum" in result.output


def test_explain_precision_flags(tiny_files: tuple[Path, Path], tmp_path: Path) -> None:
    model, data = tiny_files
    base = ["explain", str(data / "img0.png"), "--model", f"{model}:tiny", "--method", "gradcam"]
    base += ["--preprocess", "unit:size=24", "--out", str(tmp_path / "e"), "--json"]
    ok = CliRunner().invoke(app, [*base, "--precision", "bf16"])
    assert ok.exit_code == 0, ok.output
    bad = CliRunner().invoke(app, [*base, "--precision", "fp16", "--device", "cpu"])
    assert bad.exit_code == 2 and "fp16 needs a CUDA device" in bad.output


def test_user_model_copy_unchanged_by_cost(cnn: nn.Module, images: torch.Tensor) -> None:
    twin = copy.deepcopy(cnn)
    config = CostConfig(kinds=("pruned",), ratios=(0.5,))
    measure_cost(cnn, images, {"gradcam": {}}, config=config)
    assert all(torch.equal(a, b) for a, b in zip(cnn.parameters(), twin.parameters(), strict=True))
    assert all(p.requires_grad for p in cnn.parameters())
