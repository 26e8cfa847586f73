"""``hf:PATH``: tiny random ViT and ConvNeXt classifiers saved with ``save_pretrained`` load
with the image processor's preprocessing, ``id2label`` names, the model's own logits, and
their CAM / attention layers; hostile folders fail in one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import salience
from salience.cli import app
from salience.errors import SalienceError

transformers = pytest.importorskip("transformers")

LABELS = {0: "cat", 1: "dog", 2: "fox"}


def _save(folder: Path, model: Any, processor: Any) -> str:
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return f"hf:{folder}"


@pytest.fixture(scope="module")
def vit(tmp_path_factory: pytest.TempPathFactory) -> str:
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        image_size=32, patch_size=8, num_hidden_layers=2, num_attention_heads=2, hidden_size=16,
        intermediate_size=32, id2label=LABELS, label2id={v: k for k, v in LABELS.items()},
    )  # fmt: skip
    processor = transformers.ViTImageProcessor(size={"height": 32, "width": 32}, resample=3)
    folder = tmp_path_factory.mktemp("vit")
    return _save(folder, transformers.ViTForImageClassification(config), processor)


@pytest.fixture(scope="module")
def convnext(tmp_path_factory: pytest.TempPathFactory) -> str:
    torch.manual_seed(0)
    config = transformers.ConvNextConfig(
        hidden_sizes=[8, 16], depths=[1, 1], num_stages=2, id2label=LABELS,
        label2id={v: k for k, v in LABELS.items()},
    )  # fmt: skip
    processor = transformers.ConvNextImageProcessor(size={"shortest_edge": 48}, crop_pct=0.75)
    folder = tmp_path_factory.mktemp("convnext")
    return _save(folder, transformers.ConvNextForImageClassification(config), processor)


def _photo() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (50, 70, 3), dtype=np.uint8))


@pytest.mark.parametrize("which", ["vit", "convnext"])
def test_loads_like_transformers(which: str, request: pytest.FixtureRequest) -> None:
    spec: str = request.getfixturevalue(which)
    folder = spec[3:]
    loaded = salience.load_model(spec, device="cpu")
    assert loaded.class_names == ["cat", "dog", "fox"] and loaded.num_classes == 3
    assert loaded.weights_path is not None and loaded.weights_path.name == "model.safetensors"
    processor = transformers.AutoImageProcessor.from_pretrained(folder, backend="pil")
    expected = processor(_photo(), return_tensors="pt")["pixel_values"]
    x = loaded.preprocess(_photo()).unsqueeze(0)
    assert x.shape == expected.shape
    assert torch.allclose(x, expected, atol=1e-5), (x - expected).abs().max()
    reference = transformers.AutoModelForImageClassification.from_pretrained(folder).eval()
    with torch.no_grad():
        logits = loaded.module(x)
        assert isinstance(logits, torch.Tensor)
        assert torch.allclose(logits, reference(pixel_values=x).logits, atol=1e-6)


def test_methods_find_their_layers(vit: str, convnext: str) -> None:
    cnn = salience.load_model(convnext, device="cpu")
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    assert cnn.cam_layer is None  # found automatically: the last stage's [N, C, h, w] output
    cam = salience.explain(cnn, x, "dog", "gradcam")
    assert cam.shape == (2, 48, 48) and cam.abs().sum() > 0
    with pytest.raises(SalienceError, match="needs a transformer with attention blocks"):
        salience.explain(cnn, x, 0, "chefer")
    vit_model = salience.load_model(vit, device="cpu")
    assert vit_model.cam_layer == "model.vit.layers.1.layernorm_before"
    x = x[..., :32, :32]
    for method in ("attention_rollout", "chefer", "gradcam"):
        maps = salience.explain(vit_model, x, "fox", method)
        assert maps.shape == (2, 32, 32) and maps.std() > 0


def test_hostile_folders_fail_in_one_line(tmp_path: Path, vit: str) -> None:
    cases = {
        f"hf:{tmp_path / 'missing'}": "model folder not found",
        "hf:nobody/not-cached-here": "salience never downloads models",
        f"hf:{tmp_path}": "has no config.json",
    }
    text = tmp_path / "bert"
    text.mkdir()
    bert = transformers.BertConfig(
        hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8,
        vocab_size=10,
    )  # fmt: skip
    transformers.BertModel(bert).save_pretrained(text)
    cases[f"hf:{text}"] = "'bert' model, not an image classifier"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text(Path(vit[3:], "config.json").read_text())
    (broken / "model.safetensors").write_bytes(b"not safetensors")
    cases[f"hf:{broken}"] = "cannot load the model"
    for spec, message in cases.items():
        with pytest.raises(SalienceError, match=message) as err:
            salience.load_model(spec, device="cpu")
        assert "\n" not in str(err.value)
    with pytest.raises(SalienceError, match="drop --weights"):
        salience.load_model(vit, weights=Path(vit[3:], "model.safetensors"), device="cpu")


def test_explain_cli_on_an_image(vit: str, tmp_path: Path) -> None:
    photo = tmp_path / "a.png"
    _photo().save(photo)
    out = tmp_path / "out"
    args = ["explain", str(photo), "--model", vit, "--method", "chefer", "--method",
            "attention_rollout", "--out", str(out), "--device", "cpu", "--json"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads((out / "explain.json").read_text())
    assert report["images"][0]["top5"][0]["name"] in LABELS.values()
    saved = np.load(out / report["images"][0]["maps"]["chefer"]["npy"])
    loaded = salience.load_model(vit, device="cpu")
    x = loaded.preprocess(Image.open(photo)).unsqueeze(0)
    expected = salience.explain(loaded, x, None, "chefer")[0].numpy()
    np.testing.assert_allclose(saved, expected, rtol=1e-5, atol=1e-7)
