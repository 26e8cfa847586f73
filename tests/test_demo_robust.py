"""The demo's v3: PGD adversarial fine-tuning and the robustness summary (fast checks), and the
opt-in ``salience demo --adversarial`` end to end (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

pytest.importorskip("torchattacks")

from salience.cli import app
from salience.data.demo import generate
from salience.demo.model import ProfessionNet
from salience.demo.pipeline import SIZES, DemoConfig
from salience.demo.robust import RobustConfig, adversarial_finetune, robustness

FAST = RobustConfig(epochs=1, steps=2, batch_size=16, eval_images=16, eval_steps=3)


def _data() -> tuple[np.ndarray, np.ndarray]:
    data = generate(32, seed=1, size=32)
    return data.images, data.labels


def _finetuned(seed: int) -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    model = ProfessionNet(width=4)
    images, labels = _data()
    adversarial_finetune(model, images, labels, RobustConfig(**{**FAST.__dict__, "seed": seed}))
    assert not model.training
    return model.state_dict()


def test_adversarial_finetuning_trains_and_is_repeatable() -> None:
    torch.manual_seed(0)
    before = ProfessionNet(width=4).state_dict()
    a, b, c = _finetuned(0), _finetuned(0), _finetuned(1)
    assert any(not torch.equal(a[k], before[k]) for k in a)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_robustness_reports_both_budgets_and_attacks_only_lower_accuracy() -> None:
    torch.manual_seed(0)
    images, labels = _data()
    r = robustness(ProfessionNet(width=4), images, labels, FAST)
    assert r["images"] == 16 and list(r["attacked_accuracy"]) == ["2/255", "8/255"]  # type: ignore[call-overload]
    acc = r["attacked_accuracy"]
    assert isinstance(acc, dict) and all(v <= r["clean_accuracy"] for v in acc.values())


@pytest.mark.slow
def test_demo_adversarial_adds_a_more_robust_v3(tmp_path: Path) -> None:
    config = DemoConfig(size=48, train_v1=1000, train_v2=1000, test=240, epochs=6, contrast=0.3)
    out = tmp_path / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(SIZES, "small", config)
        args = ["demo", "--size", "small", "--out", str(out), "--adversarial", "--no-serve"]
        res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    payload = json.loads((out / "demo.json").read_text())
    r = payload["robustness"]
    assert set(r) == {"v1", "v2", "v3"} and "v3" in payload
    assert r["v3"]["attacked_accuracy"]["2/255"] > r["v2"]["attacked_accuracy"]["2/255"]
    assert (out / "report-v3.html").is_file()
