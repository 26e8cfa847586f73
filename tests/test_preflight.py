"""Methods are checked on one image before a long job: a method that cannot run on the model
fails in seconds with its reason, before any image is read or any run file written."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from typer.testing import CliRunner

import salience
from salience.audit import audit
from salience.cli import app
from salience.errors import SalienceError, UnsupportedModelError
from salience.methods import build_method
from salience.methods.preflight import preflight


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 3),
    ).eval()


def _folder(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (tmp_path / "data" / label).mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "data" / label / f"{i}.png")
    return tmp_path / "data"


def test_preflight_names_the_method_that_cannot_run() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.script(_net())
    x = torch.rand(1, 3, 16, 16)
    preflight(scripted, {"gradient": build_method("gradient")}, x)  # hooks not needed
    with pytest.raises(UnsupportedModelError, match=r"^gradcam cannot run on this model: CAM"):
        preflight(scripted, {"gradcam": build_method("gradcam")}, x)


def test_preflight_reports_a_method_failing_inside_the_model() -> None:
    class Picky(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if x.shape[0] > 1:
                raise RuntimeError("batch too large\nsecond line")
            return x.mean((2, 3))

    method = {"occlusion": build_method("occlusion", window=8, stride=8)}
    with pytest.raises(SalienceError, match=r"occlusion failed on a test image .*too large\)"):
        preflight(Picky(), method, torch.rand(2, 3, 16, 16))


def test_audit_of_torchscript_with_gradcam_fails_before_the_run(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(_net()).save(str(tmp_path / "model.pt"))
    data, run = _folder(tmp_path), tmp_path / "run"
    loaded = salience.load_model(str(tmp_path / "model.pt"), preprocess="unit:size=16,resize=16")
    with pytest.raises(UnsupportedModelError, match=r"gradcam cannot run.*FILE\.py:factory"):
        audit(loaded, data, run, ["gradient", "gradcam"], device="cpu", workers=0)
    assert not run.exists()
    args = ["audit", "-m", str(tmp_path / "model.pt"), "-d", str(data), "-o", str(run)]
    res = CliRunner().invoke(app, [*args, "--preprocess", "unit:size=16,resize=16"])
    assert res.exit_code == 2
    assert res.stderr.strip().startswith("error: gradcam cannot run on this model")
    assert not run.exists()
