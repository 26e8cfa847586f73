"""Channels-last (NHWC) models: every method gives the maps of the NCHW model, up to rounding,
and the CLI option reaches the model and the run's provenance."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.audit_helpers import make_folder
from test_audit_cli import cli_args
from test_methods_common import params
from typer.testing import CliRunner

import salience
from salience.cli import app
from salience.models import load_model, memory_format
from salience.models.settings import channels_last_pays
from salience.store import Run


@pytest.mark.parametrize("name", salience.list_methods())
def test_every_method_matches_the_nchw_model(name: str, resnet18: torch.nn.Module) -> None:
    reason = salience.get_method(name).unsupported(resnet18)
    if reason is not None:  # e.g. attention methods on a CNN; refused in test_methods_common
        pytest.skip(reason)
    nhwc = copy.deepcopy(resnet18).to(memory_format=torch.channels_last)
    assert memory_format(nhwc) == "channels_last" and memory_format(resnet18) == "contiguous"
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    kw = {**params(name), "samples": 64} if name == "kernel_shap" else params(name)
    ref = salience.explain(resnet18, x, [1, 2], name, **kw)
    x_nhwc = x.contiguous(memory_format=torch.channels_last)
    got = salience.explain(nhwc, x_nhwc, [1, 2], name, **kw)
    assert float((got - ref).norm() / ref.norm().clamp_min(1e-12)) < 1e-3  # relative L2
    assert memory_format(nhwc) == "channels_last"  # left as it was


def test_load_model_option() -> None:
    assert memory_format(load_model("torchvision:resnet18").module) == "contiguous"
    loaded = load_model("torchvision:resnet18", channels_last=True)
    assert memory_format(loaded.module) == "channels_last"
    assert loaded.module.conv1.weight.stride()[1] == 1  # NHWC: channels are adjacent


def test_auto_picks_channels_last_for_convolutions_on_a_cpu() -> None:
    loaded = load_model("torchvision:resnet18", device="cpu", channels_last=None)
    assert loaded.settings.channels_last and memory_format(loaded.module) == "channels_last"
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not channels_last_pays(loaded.module, cuda)  # decided by the device type alone
    mlp = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    assert not channels_last_pays(mlp, cpu)
    assert not channels_last_pays(torch.jit.script(loaded.module), cpu)


def test_audit_option_changes_only_rounding(tmp_path: Path) -> None:
    make_folder(tmp_path / "data", per_class=2)
    maps = {}
    for flag in ([], ["--channels-last"]):
        run_dir = tmp_path / "run"
        args = cli_args(tmp_path, "--method", "gradcam", "--map-size", "8", *flag)
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        run = Run.open(run_dir)
        expected = "channels_last" if flag else "contiguous"
        assert json.loads((run_dir / "run.json").read_text())["model"]["memory_format"] == expected
        ids = run.samples()["sample_id"].tolist()
        maps[expected] = run.saliencies(ids, "gradcam").astype(np.float32)
        run_dir.rename(tmp_path / f"run-{expected}")
    error = np.abs(maps["channels_last"] - maps["contiguous"]).max()
    assert error <= 2e-3 * np.abs(maps["contiguous"]).max()  # float16 storage
