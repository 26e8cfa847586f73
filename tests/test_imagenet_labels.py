"""ImageNet folders named by WordNet id are mapped to the model's class names."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers.imagenet import IMAGENET_SAMPLES

import salience
from salience.audit import audit
from salience.audit.plan import map_labels
from salience.data.dataset import Item
from salience.models import imagenet_classes, imagenet_wnids

SHARED = IMAGENET_SAMPLES


def test_wnids_are_the_sorted_synsets_in_class_order() -> None:
    wnids = imagenet_wnids()
    assert len(wnids) == 1000 and sorted(wnids) == list(wnids)
    assert wnids["n01440764"] == 0 and imagenet_classes()[0] == "tench"
    assert wnids["n02391049"] == imagenet_classes().index("zebra")


def test_map_labels_by_wnid_only_for_imagenet_classes() -> None:
    items = [Item("a.png", "n02391049"), Item("b.png", "zebra"), Item("c.png", "n99999999")]
    index, labels, warnings = map_labels(items, imagenet_classes())
    zebra = imagenet_classes().index("zebra")
    assert index[:2] == [zebra, zebra] and labels[0] == "zebra"
    assert index[2] is None and warnings[2] is not None
    index, _, warnings = map_labels(items[:1], ["cat", "dog"])
    assert index == [None]
    assert warnings[0] is not None and "WordNet id" in warnings[0] and "--classes" in warnings[0]


@pytest.mark.skipif(not SHARED.is_dir(), reason="shared ImageNet samples not present")
def test_audit_of_a_wnid_folder_with_efficientnet(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for name in sorted(p.name for p in SHARED.iterdir() if p.suffix.lower() == ".jpeg")[:3]:
        wnid = name.split("_")[0]
        (data / wnid).mkdir(parents=True)
        shutil.copy(SHARED / name, data / wnid / name)
    loaded = salience.load_model("efficientnet_lite0")
    summary = audit(loaded, data, tmp_path / "run", ["gradcam"], device="cpu", workers=0)
    samples = salience.Run.open(tmp_path / "run").samples()
    assert set(samples["label"]) <= set(imagenet_classes())
    assert samples["label"].notna().all() and summary["predicted"] == 3
    assert samples["correct"].sum() >= 2  # EfficientNet-Lite0 knows these photos
