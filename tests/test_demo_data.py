"""The profession generator: seeded, masks that match the drawing, the hat shortcut at the
requested rate, the class carried by the uniform's pattern (not its colour), the watermark,
and the written folder/manifest read back by the audit's own reader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from salience.data import read_dataset
from salience.data.demo import (
    DEFAULT_CLASSES,
    HAT_COLOURS,
    HEAD,
    PROFESSIONS,
    UNIFORM,
    generate,
    region_area,
    write,
)
from salience.errors import SalienceError


def test_seeded_and_shaped() -> None:
    a = generate(40, seed=7, size=48, hat_bias=0.95)
    b = generate(40, seed=7, size=48, hat_bias=0.95)
    c = generate(40, seed=8, size=48, hat_bias=0.95)
    assert a.images.shape == (40, 48, 48, 3) and a.images.dtype == np.uint8
    assert a.masks.shape == (40, 48, 48) and set(np.unique(a.masks)) == {0, HEAD, UNIFORM}
    assert np.array_equal(a.images, b.images) and np.array_equal(a.masks, b.masks)
    assert np.array_equal(a.labels, b.labels) and np.array_equal(a.hats, b.hats)
    assert not np.array_equal(a.images, c.images)
    assert a.class_names == DEFAULT_CLASSES


def test_masks_follow_the_figure() -> None:
    d = generate(200, seed=0)
    for i in range(len(d)):
        head, uniform = np.argwhere(d.masks[i] == HEAD), np.argwhere(d.masks[i] == UNIFORM)
        assert len(head) > 20 and len(uniform) > 200
        assert head[:, 0].mean() < uniform[:, 0].mean()  # the head sits above the uniform
        assert uniform[:, 0].max() == d.masks.shape[1] - 1  # the uniform reaches the bottom
    area = region_area(d.masks)
    assert sum(area.values()) == pytest.approx(1.0)
    assert area["head"] < area["uniform"] < area["background"]


def test_hat_colour_is_painted_in_the_head_region() -> None:
    d = generate(120, seed=1, hat_bias=None)
    for i in range(len(d)):
        pixels = d.images[i][d.masks[i] == HEAD].astype(float) / 255
        colour = HAT_COLOURS[list(PROFESSIONS).index(d.class_names[int(d.hats[i])])]
        near = np.linalg.norm(pixels - colour, axis=1) < 0.2
        assert near.mean() > 0.25  # a good part of the head region is the hat
        outside = d.images[i][d.masks[i] == 0].astype(float) / 255
        assert (np.linalg.norm(outside - colour, axis=1) < 0.05).mean() < 0.2


def test_hat_bias_and_balance() -> None:
    biased = generate(2000, seed=2, size=32, hat_bias=0.95)
    assert (biased.hats == biased.labels).mean() == pytest.approx(0.95, abs=0.015)
    assert np.bincount(biased.labels).tolist() == [500] * 4
    balanced = generate(800, seed=3, size=32)
    pairs = np.bincount(balanced.labels * 4 + balanced.hats, minlength=16)
    assert pairs.tolist() == [50] * 16  # every (profession, hat) pair equally often


def _gradients(d: object, label: str) -> tuple[float, float]:
    """Mean |d/dx| and |d/dy| of the image inside the uniform (away from its edges)."""
    from scipy.ndimage import binary_erosion

    assert hasattr(d, "images")
    sel = np.flatnonzero(d.labels == d.class_names.index(label))  # type: ignore[attr-defined]
    gx, gy = [], []
    for i in sel:
        img = d.images[i].astype(float).mean(-1)  # type: ignore[attr-defined]
        inner = binary_erosion(d.masks[i] == UNIFORM, iterations=2)  # type: ignore[attr-defined]
        dx = np.abs(np.diff(img, axis=1))[inner[:, 1:] & inner[:, :-1]]
        dy = np.abs(np.diff(img, axis=0))[inner[1:] & inner[:-1]]
        gx.append(dx.mean())
        gy.append(dy.mean())
    return float(np.mean(gx)), float(np.mean(gy))


def test_the_uniform_pattern_carries_the_class_and_its_colour_does_not() -> None:
    d = generate(800, seed=4, contrast=0.6)
    gx, gy = _gradients(d, "referee")  # vertical stripes: colour changes along x
    assert gx > 3 * gy
    gx, gy = _gradients(d, "sailor")  # horizontal stripes: along y
    assert gy > 3 * gx
    means = []
    for k in range(4):
        px = [d.images[i][d.masks[i] == UNIFORM].mean(0) for i in np.flatnonzero(d.labels == k)]
        means.append(np.mean(px, axis=0) / 255)
    spread = np.ptp(np.array(means), axis=0)
    assert spread.max() < 0.06  # the average uniform colour is the same for every class


def test_contrast_sets_the_pattern_strength() -> None:
    low = _gradients(generate(200, seed=5, contrast=0.1), "referee")[0]
    high = _gradients(generate(200, seed=5, contrast=0.5), "referee")[0]
    assert high > 2.5 * low


def test_watermark_only_on_the_chosen_class() -> None:
    d = generate(800, seed=6, hat_bias=None, watermark_class="chef", watermark_rate=0.3)
    chef = d.labels == 0
    assert not d.watermark[~chef].any()
    assert d.watermark[chef].mean() == pytest.approx(0.3, abs=0.07)
    size = d.images.shape[1]
    corner = d.images[:, int(0.83 * size) : int(0.95 * size), int(0.83 * size) : int(0.95 * size)]
    white = (corner.min(-1) > 230).mean(axis=(1, 2))
    assert white[d.watermark].min() > 0.3 and white[~d.watermark].mean() < 0.05
    ring = d.images[d.watermark][:, int(0.89 * size), int(0.89 * size + 0.045 * size)]
    assert ring.max() < 60  # the dark ring of the stamp


def test_bad_arguments_are_user_errors() -> None:
    with pytest.raises(SalienceError, match="classes must be"):
        generate(10, classes=("chef", "astronaut"))
    with pytest.raises(SalienceError, match="hat_bias"):
        generate(10, hat_bias=1.5)
    with pytest.raises(SalienceError, match="watermark class"):
        generate(10, watermark_class="pilot")
    with pytest.raises(SalienceError, match="contrast"):
        generate(10, contrast=0.0)
    six = generate(60, seed=0, classes=tuple(PROFESSIONS))
    assert len(six.class_names) == 6 and set(six.labels) == set(range(6))


def test_written_split_is_a_manifest_and_an_image_folder(tmp_path: Path) -> None:
    d = generate(24, seed=9, size=48, hat_bias=0.95)
    manifest = write(d, tmp_path, "test")
    assert json.loads((tmp_path / "legend.json").read_text()) == {"1": "head", "2": "uniform"}
    data = read_dataset(manifest)
    assert data.kind == "manifest" and len(data.items) == 24
    assert data.regions() == ["background", "head", "uniform"]
    for i, item in enumerate(data.items):
        assert item.label == d.class_names[int(d.labels[i])] and item.split == "test"
        assert np.array_equal(np.asarray(Image.open(tmp_path / item.path)), d.images[i])
        assert np.array_equal(np.asarray(Image.open(tmp_path / str(item.mask))), d.masks[i])
        meta = dict(item.meta)
        assert meta["meta_hat"] == d.class_names[int(d.hats[i])]
        assert meta["meta_hat_matches"] == str(bool(d.hats[i] == d.labels[i]))
    folder = read_dataset(tmp_path / "test")
    assert folder.kind == "folder" and len(folder.items) == 24
    assert sorted(folder.labels) == sorted(set(d.class_names[int(k)] for k in d.labels))
    plain = read_dataset(write(d, tmp_path / "plain", "test", masks=False))
    assert plain.regions() == [] and all(i.mask is None for i in plain.items)
