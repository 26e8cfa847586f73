"""End-to-end audits on generated image folders with a tiny CNN."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from helpers.audit_helpers import CLASSES, TinyModel, TinyNet, make_folder, region_mask

import salience
from salience.audit import audit
from salience.audit.attribute import attribute, resize_maps
from salience.errors import SalienceError
from salience.images import load_image
from salience.methods import build_method
from salience.store import Run, RunLock, SampleFilter


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return make_folder(tmp_path / "data", per_class=3)


def test_rows_predictions_and_maps_match_the_engine(folder: Path, tmp_path: Path) -> None:
    model = TinyModel()
    summary = audit(
        model,
        folder,
        tmp_path / "run",
        ["gradcam", "gradient"],
        batch_size=4,
        shard_size=4,
        map_size="6x8",
    )
    run = Run.open(tmp_path / "run")
    df = run.samples()
    assert len(df) == 9 and df.error.isna().all() and run.status == "complete"
    assert df.label.tolist() == [c for c in CLASSES for _ in range(3)]
    assert run.manifest["mask_frame"] == "preprocess" and run.regions == [
        "background",
        "head",
        "uniform",
    ]
    x = torch.stack([model.preprocess(load_image(folder / p)) for p in df.path])
    with torch.no_grad():
        logits = model.module(x).double()
    prob = logits.softmax(1)
    np.testing.assert_array_equal(df.pred_index, logits.argmax(1).numpy())
    np.testing.assert_allclose(df.confidence, prob.max(1).values.numpy(), rtol=1e-6)
    labels = torch.tensor(df.label_index.tolist())
    ce = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    np.testing.assert_allclose(df.loss, ce.numpy(), rtol=1e-6)
    assert [list(t) for t in df.topk_index] == logits.argsort(1, descending=True).tolist()
    for method in ("gradcam", "gradient"):
        ref = resize_maps(salience.explain(model.module, x, None, method), (6, 8))
        stored = run.saliencies(df.sample_id.tolist(), method)
        np.testing.assert_allclose(stored, ref.numpy().astype(np.float16), rtol=1e-3, atol=1e-6)
    assert summary["accuracy"] == pytest.approx(float(df.correct.mean()))
    assert json.loads((tmp_path / "run" / "summary.json").read_text()) == summary
    assert set(summary["outside_masks"]) == {"gradcam", "gradient"}
    m = run.manifest
    assert m["model"]["spec"] == "tests:TinyNet" and len(m["model"]["state_sha256"]) == 64
    assert m["dataset"]["manifest_sha256"] and m["torch"] == torch.__version__
    assert m["methods"]["gradcam"]["relu"] is True and m["map_size"] == [6, 8]
    sid = df.sample_id[4]
    np.testing.assert_array_equal(run.mask(sid), region_mask())
    assert run.view_image(sid).size == (16, 16)


def test_batch_size_does_not_change_results(folder: Path, tmp_path: Path) -> None:
    audit(TinyModel(), folder, tmp_path / "a", ["gradcam"], batch_size=1, shard_size=5)
    audit(TinyModel(), folder, tmp_path / "b", ["gradcam"], batch_size=7, shard_size=2)
    a, b = Run.open(tmp_path / "a"), Run.open(tmp_path / "b")
    cols = ["sample_id", "label", "pred", "confidence", "loss", "correct"]
    pd.testing.assert_frame_equal(a.samples(cols), b.samples(cols), rtol=1e-5)
    ids = a.samples(["sample_id"]).sample_id.tolist()
    np.testing.assert_allclose(
        a.saliencies(ids, "gradcam"), b.saliencies(ids, "gradcam"), rtol=2e-3, atol=1e-5
    )
    sa, sb = a.stats("gradcam"), b.stats("gradcam")
    pd.testing.assert_frame_equal(
        sa.drop(columns="si_pattern"), sb.drop(columns="si_pattern"), rtol=1e-3, atol=1e-4
    )


def test_logit_tap_saves_the_prediction_forward() -> None:
    model = TinyNet()
    x = torch.randn(5, 3, 16, 16)
    attribute(model, x, {"gradcam": build_method("gradcam")}, (4, 4))  # layer/size probes, cached
    calls = []
    handle = model.register_forward_hook(lambda *_: calls.append(1))
    out = attribute(model, x, {"gradcam": build_method("gradcam")}, (4, 4))
    handle.remove()
    assert len(calls) == 1  # the Grad-CAM pass alone: no separate forward for predictions
    with torch.no_grad():
        torch.testing.assert_close(out.logits, model(x))
    # a second method explains the same (predicted) class
    out2 = attribute(
        model,
        x,
        {"gradient": build_method("gradient"), "gradcam": build_method("gradcam")},
        (16, 16),
    )
    ref = salience.explain(model, x, out.logits.argmax(1), "gradcam")
    assert out2.maps["gradcam"] is not None
    torch.testing.assert_close(out2.maps["gradcam"], ref)


def test_resume_of_a_finished_run_recomputes_nothing(folder: Path, tmp_path: Path) -> None:
    audit(TinyModel(), folder, tmp_path / "run", ["gradcam"], shard_size=4)
    before = Run.open(tmp_path / "run").samples()
    slow = TinyModel(module=TinyNet(delay=5.0))  # same weights; would take minutes if rerun
    audit(slow, folder, tmp_path / "run", ["gradcam"], shard_size=4)
    pd.testing.assert_frame_equal(Run.open(tmp_path / "run").samples(), before)
    with pytest.raises(SalienceError, match="different methods"):
        audit(TinyModel(), folder, tmp_path / "run", ["gradient"], shard_size=4)
    other = TinyNet()
    with torch.no_grad():
        other.fc.bias.add_(1.0)
    with pytest.raises(SalienceError, match="different model"):
        audit(TinyModel(module=other), folder, tmp_path / "run", ["gradcam"], shard_size=4)


def test_second_writer_and_foreign_folders_are_refused(folder: Path, tmp_path: Path) -> None:
    with RunLock(tmp_path / "run"), pytest.raises(SalienceError, match="another audit"):
        audit(TinyModel(), folder, tmp_path / "run", ["gradcam"])
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(SalienceError, match="not empty"):
        audit(TinyModel(), folder, tmp_path / "other", ["gradcam"])


def test_class_count_mismatch_and_duplicates(folder: Path, tmp_path: Path) -> None:
    with pytest.raises(SalienceError, match="3 outputs but the run has 4 classes"):
        audit(TinyModel(), folder, tmp_path / "a", ["gradcam"], class_names=[*CLASSES, "x"])
    run_status = Run.open(tmp_path / "a").status
    assert run_status == "failed"
    with pytest.raises(SalienceError, match="given twice"):
        audit(TinyModel(), folder, tmp_path / "b", ["gradcam", "gradcam:relu=False"])


def test_masks_follow_the_crop_and_regions_shares(tmp_path: Path) -> None:
    # a 32x16 image center-cropped to 16x16: the left and right quarters leave the frame
    from PIL import Image

    from salience.models.preprocess import Preprocess

    root = tmp_path / "data" / "ant"
    root.mkdir(parents=True)
    Image.new("RGB", (32, 16), (90, 120, 200)).save(root / "a.png")
    mask = np.zeros((16, 32), np.uint8)
    mask[:, :8] = 1  # "head": only outside the crop
    mask[:, 12:20] = 2  # "uniform": the middle half of the crop
    Image.fromarray(mask).save(root / "a.mask.png")
    (tmp_path / "data" / "regions.json").write_text(json.dumps({"1": "head", "2": "uniform"}))
    model = TinyModel(
        preprocess=Preprocess(size=16, resize=16, mean=(0.5,) * 3, std=(0.5,) * 3),
        class_names=["ant", "bee", "cat"],
    )
    audit(model, tmp_path / "data", tmp_path / "run", ["constant"], map_size=16)
    st = Run.open(tmp_path / "run").stats("constant").iloc[0]
    assert st.share_head == 0.0 and st.share_uniform == pytest.approx(0.5)
    assert st.density_uniform == pytest.approx(1.0) and np.isnan(st.density_head)


def test_manifest_metadata_unknown_labels_and_outside_paths(folder: Path, tmp_path: Path) -> None:
    rows = [
        {"path": "ant/0000.png", "label": "ant", "split": "test", "site": "north"},
        {"path": "bee/0000.png", "label": "wasp", "split": "test", "site": "south"},
        {"path": "cat/0000.png", "label": "2", "split": "train", "site": "north"},
        {"path": "../outside.png", "label": "ant", "split": "test", "site": "north"},
    ]
    pd.DataFrame(rows).to_csv(folder / "list.csv", index=False)
    summary = audit(TinyModel(), folder / "list.csv", tmp_path / "run", ["gradcam"])
    run = Run.open(tmp_path / "run")
    df = run.samples().set_index("path")
    assert df.loc["ant/0000.png", "meta_site"] == "north" and df.loc["ant/0000.png", "split"] == (
        "test"
    )
    wasp = df.loc["bee/0000.png"]
    assert wasp.label == "wasp" and pd.isna(wasp.label_index) and pd.isna(wasp.correct)
    assert wasp.pred is not None and wasp.warning.startswith("unknown label")
    assert df.loc["cat/0000.png", "label"] == "cat"  # a class index works as a label
    assert df.loc["../outside.png", "error"].startswith("outside root")
    assert summary["skipped"] == {"total": 1, "reasons": {"outside root": 1}}
    assert summary["warnings"] == {"unknown label": 1}
    _, n = run.query(SampleFilter(meta={"site": "north"}, split="test"))
    assert n == 2


def test_non_finite_outputs_and_maps_are_recorded(folder: Path, tmp_path: Path) -> None:
    class NanNet(TinyNet):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = super().forward(x)
            bad = x.flatten(1).amin(1) > 10  # only the all-white image (see below)
            scale = torch.where(bad, float("nan"), 1.0)[:, None]
            return out * scale  # NaN logits, and NaN gradients too

    from PIL import Image

    Image.new("RGB", (20, 16), (255, 255, 255)).save(folder / "ant" / "white.png")
    model = TinyModel(module=NanNet())
    model.preprocess = type(model.preprocess)(size=16, resize=16, mean=(0.5,) * 3, std=(0.04,) * 3)
    audit(model, folder, tmp_path / "run", ["gradient"], batch_size=16)
    run = Run.open(tmp_path / "run")
    df = run.samples().set_index("path")
    assert df.loc["ant/white.png", "error"].startswith("non-finite output")
    assert pd.isna(df.loc["ant/white.png", "pred"])
    st = run.stats("gradient").set_index("sample_id")
    assert st.loc[df.loc["ant/white.png", "sample_id"], "error"].startswith("non-finite map")
    assert st.error.notna().sum() == 1
    with pytest.raises(SalienceError, match="has no gradient map"):
        run.saliency(df.loc["ant/white.png", "sample_id"], "gradient")
