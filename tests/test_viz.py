"""Visualisation: numeric checks of scaling, colours and blending; grids render and save."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from salience.errors import SalienceError
from salience.viz import (
    DIVERGING,
    SEQUENTIAL,
    Column,
    as_picture,
    colorize,
    heatmap,
    lut,
    overlay,
    resize_map,
    save_grid,
    save_png,
    scale,
)


def _photo(h: int = 32, w: int = 32) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_lookup_tables_match_matplotlib() -> None:
    from matplotlib import colormaps

    for name in (SEQUENTIAL, DIVERGING):
        table = lut(name)
        assert table.shape == (257, 3) and table.dtype == np.uint8
        for t in (0.0, 0.5, 1.0):
            expected = np.round(np.array(colormaps[name](t)[:3]) * 255)
            assert np.abs(table[round(t * 256)] - expected).max() <= 1
    with pytest.raises(SalienceError, match="unknown colormap"):
        lut("no-such-map")


def test_overlay_max_pixel_gets_the_top_colour() -> None:
    photo = _photo()
    sal = np.zeros((32, 32), np.float32)
    sal[5, 7] = 3.0
    opaque = overlay(photo, sal, alpha=1.0, percentile=100)
    assert tuple(opaque[5, 7]) == tuple(lut(SEQUENTIAL)[-1])
    assert np.array_equal(opaque[0, 0], photo[0, 0])  # zero saliency: the photo shows through
    half = overlay(photo, sal, alpha=0.5, percentile=100)
    expected = np.round(0.5 * photo[5, 7].astype(float) + 0.5 * lut(SEQUENTIAL)[-1])
    assert np.abs(half[5, 7].astype(float) - expected).max() <= 1
    constant = overlay(photo, sal, alpha=0.5, percentile=100, opacity="constant")
    bottom = np.round(0.5 * photo[0, 0].astype(float) + 0.5 * lut(SEQUENTIAL)[0])
    assert np.abs(constant[0, 0].astype(float) - bottom).max() <= 1


def test_diverging_centre_is_neutral_and_symmetric() -> None:
    sal = np.array([[-2.0, 0.0, 2.0]], np.float32)
    values = scale(sal, signed=True, percentile=100)
    assert values.tolist() == [[-1.0, 0.0, 1.0]]
    colours = colorize(values, signed=True)
    centre = colours[0, 1].astype(int)
    assert tuple(colours[0, 1]) == tuple(lut(DIVERGING)[128])
    assert centre.min() > 220 and centre.max() - centre.min() < 12  # near-white grey
    assert tuple(colours[0, 0]) == tuple(lut(DIVERGING)[0])  # blue end
    assert tuple(colours[0, 2]) == tuple(lut(DIVERGING)[-1])  # red end
    assert colours[0, 0, 2] > colours[0, 0, 0] and colours[0, 2, 0] > colours[0, 2, 2]


def test_percentile_clipping_resists_outliers() -> None:
    sal = np.linspace(0.0, 1.0, 10_000, dtype=np.float32).reshape(100, 100)
    sal[0, 0] = 1e6
    clipped = scale(sal, signed=False, percentile=99.0)
    assert clipped.max() == 1.0 and clipped[0, 0] == 1.0
    assert np.isclose(np.median(clipped), 0.5 / np.percentile(sal, 99.0), atol=1e-3)
    raw = scale(sal, signed=False, percentile=100.0)
    assert np.median(raw) < 1e-5  # without clipping one pixel washes out the map
    assert (scale(-sal, signed=False) == 0).all()  # unsigned display keeps positive evidence
    with pytest.raises(SalienceError, match="percentile"):
        scale(sal, signed=False, percentile=0)


def test_degenerate_maps_do_not_produce_nan() -> None:
    assert (scale(np.zeros((4, 4)), signed=True) == 0).all()
    bad = np.array([[np.nan, 1.0], [np.inf, 0.5]])
    values = scale(bad, signed=False, percentile=100)
    assert np.isfinite(values).all() and values[0, 1] == 1.0 and values[0, 0] == 0.0
    assert heatmap(np.zeros((3, 3))).shape == (3, 3, 3)


def test_signed_background_is_a_light_grayscale() -> None:
    photo = np.zeros((4, 4, 3), np.uint8)
    photo[..., 0] = 200
    out = overlay(photo, np.zeros((4, 4)), signed=True)
    grey = round(0.6 * 200 * 0.299 + 0.4 * 255)
    assert (np.abs(out.astype(int) - grey) <= 1).all()
    assert np.array_equal(overlay(photo, np.zeros((4, 4)), signed=True, background="color"), photo)


def test_map_is_resized_to_the_image_and_inputs_are_flexible() -> None:
    coarse = torch.tensor([[[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]]])  # [1, 2, 3] tensor, e.g. a CAM
    out = overlay(Image.fromarray(_photo(16, 24)), coarse)
    assert out.shape == (16, 24, 3)
    with pytest.raises(SalienceError, match="would be stretched"):
        overlay(Image.fromarray(_photo(16, 24)), coarse[:, :, :2])  # a square map, wide photo
    assert np.allclose(resize_map(np.full((7, 7), 0.25, np.float32), (224, 224)), 0.25)
    chw = torch.rand(3, 8, 8)
    assert np.array_equal(as_picture(chw), (chw.permute(1, 2, 0).numpy() * 255).round())
    with pytest.raises(SalienceError, match="one saliency map"):
        overlay(_photo(), np.zeros((2, 4, 4)))
    with pytest.raises(SalienceError, match="alpha"):
        overlay(_photo(), np.zeros((4, 4)), alpha=2)


def test_save_png_round_trip(tmp_path: Path) -> None:
    pic = _photo()
    path = save_png(tmp_path / "sub" / "a.png", pic)
    assert np.array_equal(np.asarray(Image.open(path)), pic)
    assert not list(path.parent.glob(".*tmp"))


def test_grid_renders_images_by_methods(out_dir: Path) -> None:
    yy, xx = np.mgrid[0:64, 0:64]
    images = [_photo(64, 64), np.full((64, 64, 3), 180, np.uint8)]
    blob = np.exp(-((yy - 20) ** 2 + (xx - 40) ** 2) / 60.0)
    signed = np.sin(xx / 6.0) * np.cos(yy / 9.0)
    path = save_grid(
        out_dir / "grid.png",
        images,
        [Column("blob", [blob, blob[::-1]]), Column("signed", [signed, -signed], signed=True)],
        row_titles=["noise", "grey"],
    )
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape[1] > 3 * 150 and img.shape[0] > 2 * 150
    assert img.std() > 20  # not blank
    with pytest.raises(SalienceError, match="2 maps for 1 images"):
        save_grid(out_dir / "x.png", images[:1], [Column("blob", [blob, blob])])
