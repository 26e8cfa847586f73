"""Where a model's weights come from: given, the local pretrained caches, or (loudly) random;
and .pt files that are not TorchScript get told what to do."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
import torchvision
from typer.testing import CliRunner

import salience
from salience.cli import app
from salience.errors import SalienceError
from salience.models.pretrained import RandomWeightsWarning, hub_checkpoint


def _perturbed_resnet18() -> dict[str, torch.Tensor]:
    state = torchvision.models.resnet18().state_dict()
    state["fc.bias"] = torch.arange(1000, dtype=torch.float32)
    return state


def test_torchvision_uses_the_local_hub_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url = torchvision.models.get_model_weights("resnet18").DEFAULT.url  # type: ignore[attr-defined]
    target = hub_checkpoint(url)
    assert target.parent == tmp_path / "hub" / "checkpoints"
    target.parent.mkdir(parents=True)
    torch.save(_perturbed_resnet18(), target)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomWeightsWarning)
        loaded = salience.load_model("torchvision:resnet18")
    assert loaded.weights_origin == "cache" and not loaded.random_weights
    assert loaded.weights_path == target and loaded.weights_sha256 is not None
    assert torch.equal(loaded.module.fc.bias, torch.arange(1000, dtype=torch.float32))
    assert loaded.describe()["weights_origin"] == "cache"


def test_random_weights_are_announced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.warns(RandomWeightsWarning, match=r"RANDOM weights .*hub cache"):
        loaded = salience.load_model("torchvision:resnet18")
    assert loaded.random_weights
    assert "weights=random" in repr(loaded)


def test_the_cli_prints_the_warning_as_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (40, 30), (200, 10, 10)).save(image)
    out = str(tmp_path / "out")
    args = ["explain", str(image), "-m", "torchvision:resnet18", "--method", "gradient", "-o", out]
    res = CliRunner().invoke(app, args, env={"COLUMNS": "400"})
    assert res.exit_code == 0, res.output
    warned = [line for line in res.output.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1 and "RANDOM weights" in warned[0]


def test_timm_uses_the_local_hugging_face_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    timm = pytest.importorskip("timm")
    safetensors_torch = pytest.importorskip("safetensors.torch")
    import huggingface_hub.constants

    model = timm.create_model("resnet18", pretrained=False)
    hub_id = model.pretrained_cfg["hf_hub_id"]
    repo = tmp_path / ("models--" + hub_id.replace("/", "--"))
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("abc123")
    snapshot = repo / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["fc.bias"] = torch.full((1000,), 0.5)
    safetensors_torch.save_file(state, str(snapshot / "model.safetensors"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with warnings.catch_warnings():
        warnings.simplefilter("error", RandomWeightsWarning)
        loaded = salience.load_model("timm:resnet18")
    assert loaded.weights_origin == "cache"
    assert torch.equal(loaded.module.fc.bias, torch.full((1000,), 0.5))


def test_repr_is_one_short_line() -> None:
    loaded = salience.load_model("efficientnet_lite0")
    text = repr(loaded)
    assert "\n" not in text and len(text) < 200
    assert "1000 classes" in text and "builtin" not in text  # the packaged file is named
    assert "efficientnet-lite0-57934424.pth" in text
    assert loaded.weights_origin == "builtin"


def test_pt_files_that_are_not_torchscript(tmp_path: Path) -> None:
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    state, whole, script = tmp_path / "sd.pt", tmp_path / "whole.pt", tmp_path / "ts.pt"
    torch.save(net.state_dict(), state)
    torch.save(net, whole)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.script(net).save(str(script))
    with pytest.raises(SalienceError, match=r"is a state dict, not TorchScript.*--weights"):
        salience.load_model(str(state))
    with pytest.raises(SalienceError, match=r"whole pickled model .*state_dict\(\)"):
        salience.load_model(str(whole))
    loaded = salience.load_model(str(script), preprocess="unit:size=2,resize=2")
    assert loaded.weights_origin == "archive"
