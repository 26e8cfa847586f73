"""load_image: every kind of file becomes 8-bit RGB or one clear SalienceError."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from salience.errors import ImageTooLargeError, SalienceError
from salience.images import is_image_file, load_image
from salience.models.preprocess import Preprocess, parse_preprocess


def _photo(h: int = 48, w: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([xx * 255 // w, yy * 255 // h, np.full_like(xx, 90)], -1).astype(np.uint8)


def _one_line(info: pytest.ExceptionInfo[SalienceError]) -> str:
    message = str(info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def test_rgb_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    Image.fromarray(_photo()).save(path)
    img = load_image(path)
    assert img.mode == "RGB" and img.size == (64, 48)
    assert np.array_equal(np.asarray(img), _photo())


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200  # red hidden under alpha = 0 must not leak through
    rgba[:2, :, 3] = 255
    rgba[2:, :, 3] = 0
    rgba[0, 0] = (0, 0, 255, 128)  # half-transparent blue over white
    path = tmp_path / "a.png"
    Image.fromarray(rgba, "RGBA").save(path)
    out = np.asarray(load_image(path)).astype(int)
    assert (out[2:] == 255).all()
    assert (out[1, :] == (200, 0, 0)).all()
    assert np.abs(out[0, 0] - (127, 127, 255)).max() <= 1


def test_palette_with_transparency_and_la(tmp_path: Path) -> None:
    pal = Image.new("P", (3, 3), 0)
    pal.putpalette([10, 20, 30, 250, 0, 0] + [0] * 762)
    pal.putpixel((1, 1), 1)
    path = tmp_path / "p.png"
    pal.save(path, transparency=0)
    out = np.asarray(load_image(path))
    assert tuple(out[0, 0]) == (255, 255, 255) and tuple(out[1, 1]) == (250, 0, 0)
    la = Image.fromarray(
        np.stack([np.full((2, 2), 40), np.full((2, 2), 255)], -1).astype(np.uint8), "LA"
    )
    la.save(tmp_path / "la.png")
    assert (np.asarray(load_image(tmp_path / "la.png")) == 40).all()


def test_grayscale_16bit_and_float(tmp_path: Path) -> None:
    g16 = (np.arange(4 * 4).reshape(4, 4) * 4369).astype(np.uint16)  # 0..65535
    path = tmp_path / "g16.png"
    Image.fromarray(g16).save(path)
    out = np.asarray(load_image(path))
    assert out.shape == (4, 4, 3) and out.dtype == np.uint8
    assert out[0, 0, 0] == 0 and out[-1, -1, 0] == 255
    assert np.array_equal(out[..., 0], np.round(g16 / 257).astype(np.uint8))
    f32 = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    Image.fromarray(f32, "F").save(tmp_path / "f.tiff")
    outf = np.asarray(load_image(tmp_path / "f.tiff"))
    assert outf[0, 0, 0] == 0 and outf[-1, -1, 1] == 255
    Image.fromarray(np.full((3, 3), 77, np.uint8), "L").save(tmp_path / "l.png")
    assert (np.asarray(load_image(tmp_path / "l.png")) == 77).all()


def test_cmyk_jpeg(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (8, 8), (0, 255, 255, 0))  # pure red in CMYK
    path = tmp_path / "c.jpg"
    cmyk.save(path, quality=95)
    out = np.asarray(load_image(path)).astype(int)
    assert out.shape == (8, 8, 3)
    assert out[..., 0].mean() > 200 and out[..., 1].mean() < 40 and out[..., 2].mean() < 40


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    img = Image.fromarray(_photo(20, 40))
    exif = img.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    path = tmp_path / "o.jpg"
    img.save(path, exif=exif.tobytes())
    assert load_image(path).size == (20, 40)


def test_first_frame_of_animation(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (5, 5), c) for c in ((255, 0, 0), (0, 0, 255))]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:])
    out = np.asarray(load_image(path)).astype(int)
    assert out[..., 0].mean() > 200 and out[..., 2].mean() < 50


def test_missing_empty_folder_and_non_images(tmp_path: Path) -> None:
    with pytest.raises(SalienceError, match="image not found") as info:
        load_image(tmp_path / "nope.jpg")
    _one_line(info)
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(SalienceError, match="empty"):
        load_image(tmp_path / "empty.jpg")
    with pytest.raises(SalienceError, match="is a folder"):
        load_image(tmp_path)
    (tmp_path / "notes.jpg").write_text("hello, not a picture")
    with pytest.raises(SalienceError, match="not an image Pillow can read") as info:
        load_image(tmp_path / "notes.jpg")
    _one_line(info)


def test_truncated_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(rng.integers(0, 256, (128, 128, 3), dtype=np.uint8))
    for fmt in ("JPEG", "PNG"):
        buf = io.BytesIO()
        noisy.save(buf, fmt)
        path = tmp_path / f"cut.{fmt.lower()}"
        path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
        with pytest.raises(SalienceError, match="truncated or corrupt") as info:
            load_image(path)
        _one_line(info)


def test_huge_images_are_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "big.png"
    Image.new("RGB", (300, 200)).save(path)
    with pytest.raises(SalienceError, match="300x200 = 60,000 pixels, above the limit of 10,000"):
        load_image(path, max_pixels=10_000)
    assert load_image(path, max_pixels=None).size == (300, 200)


def test_draft_decodes_big_jpegs_smaller(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    Image.fromarray(np.zeros((800, 1200, 3), np.uint8)).save(path)
    assert load_image(path, draft_size=224).size == (600, 400)  # 1/2 scale; 1/4 would be < 224
    assert load_image(path, draft_size=500).size == (1200, 800)
    png = tmp_path / "big.png"
    Image.open(path).save(png)
    assert load_image(png, draft_size=224).size == (1200, 800)  # only JPEG drafts


def test_is_image_file() -> None:
    assert is_image_file("a/B.JPEG") and is_image_file("x.png")
    assert not is_image_file("labels.csv")


def test_extreme_aspect_ratio_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    Image.new("L", (1, 20000), 128).save(path, optimize=True)
    assert path.stat().st_size < 400
    with pytest.raises(ImageTooLargeError, match="1x20000, an aspect ratio of 20,000:1") as info:
        load_image(path)
    assert "above the limit of 64:1" in _one_line(info)
    assert load_image(path, max_aspect=None).size == (1, 20000)
    Image.new("RGB", (64, 1)).save(tmp_path / "edge.png")
    assert load_image(tmp_path / "edge.png").size == (64, 1)  # 64:1 is still accepted
    Image.new("RGB", (65, 1)).save(tmp_path / "over.png")
    with pytest.raises(ImageTooLargeError, match="65x1"):
        load_image(tmp_path / "over.png")


def test_preprocess_caps_the_resized_side() -> None:
    tall = Image.new("RGB", (1, 100), (255, 0, 0))
    with pytest.raises(ImageTooLargeError, match="would be 256x25600, above the limit of 16384"):
        Preprocess().view(tall)
    with pytest.raises(ImageTooLargeError):
        Preprocess()(tall)
    wide = parse_preprocess("imagenet:max_side=30000")
    assert wide.view(tall).size == (224, 224) and wide.describe()["max_side"] == 30000
    assert Preprocess(resize=None).view(tall).size == (224, 224)  # straight to size: no cap
    with pytest.raises(SalienceError, match="max_side=100 is below"):
        parse_preprocess("imagenet:max_side=100")


def test_all_nan_float_image_is_refused_and_nan_pixels_become_black(tmp_path: Path) -> None:
    Image.fromarray(np.full((4, 4), np.nan, np.float32), "F").save(tmp_path / "nan.tiff")
    with pytest.raises(SalienceError, match=r"nan\.tiff: no finite pixels") as info:
        load_image(tmp_path / "nan.tiff")
    _one_line(info)
    part = np.full((2, 2), 0.5, np.float32)
    part[0, 0] = np.nan
    part[1, 1] = np.inf
    Image.fromarray(part, "F").save(tmp_path / "part.tiff")
    out = np.asarray(load_image(tmp_path / "part.tiff"))[..., 0]
    assert out.tolist() == [[0, 128], [128, 255]]


def test_links_and_permissions_say_what_is_wrong(tmp_path: Path) -> None:
    os.symlink("gone.png", tmp_path / "dangling.png")
    with pytest.raises(SalienceError, match=r"symbolic link to 'gone\.png', which does not exist"):
        load_image(tmp_path / "dangling.png")
    os.symlink("loop.png", tmp_path / "loop.png")
    with pytest.raises(SalienceError, match="symlink loop"):
        load_image(tmp_path / "loop.png")
    Image.new("RGB", (2, 2)).save(tmp_path / "secret.png")
    os.chmod(tmp_path / "secret.png", 0)
    if os.geteuid() == 0:  # root reads any file
        assert load_image(tmp_path / "secret.png").size == (2, 2)
    else:
        with pytest.raises(SalienceError, match="permission denied"):
            load_image(tmp_path / "secret.png")
