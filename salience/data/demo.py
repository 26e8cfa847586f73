"""The "profession" case study: generated portraits whose uniform decides the class.

Every image shows a figure (head and uniform) on a varied background. The profession is
told by the uniform's *pattern*; its colours are random, so colour alone says nothing. The
figure also wears a hat whose colour and shape belong to one profession: in a biased split
the hat matches the profession with probability ``hat_bias`` (a shortcut a model can learn
instead of the uniform), in a balanced split every (profession, hat) pair is equally common.
Each image has a pixel mask: 0 background, 1 head (face and hat), 2 uniform.

Optionally a small corner watermark is planted on a share of one class (a "Clever Hans"
cue in the sense of Lapuschkin et al., 2019, Nat. Commun. 10:1096) to test shortcut discovery
without masks.

Drawing is vectorised over the batch with numpy: thousands of images per second.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from salience.errors import SalienceError

# Profession -> uniform pattern; the first four are the default classes.
PROFESSIONS: dict[str, str] = {
    "chef": "checks",
    "doctor": "dots",
    "referee": "vertical",
    "sailor": "horizontal",
    "firefighter": "diagonal",
    "mechanic": "crosshatch",
}
DEFAULT_CLASSES: tuple[str, ...] = ("chef", "doctor", "referee", "sailor")
# Hat i (worn "by" profession i): RGB colour in [0, 1] and a shape name.
HAT_COLOURS = np.array(
    [
        [0.90, 0.12, 0.12],
        [0.10, 0.35, 0.95],
        [0.98, 0.85, 0.10],
        [0.10, 0.75, 0.20],
        [0.65, 0.15, 0.80],
        [0.98, 0.50, 0.05],
    ],
    dtype=np.float32,
)
HAT_SHAPES: tuple[str, ...] = ("toque", "cap", "helmet", "beret", "band", "cone")
LEGEND: dict[str, str] = {"1": "head", "2": "uniform"}
HEAD, UNIFORM = 1, 2
LEGEND_FILE = "legend.json"
CHUNK = 256


@dataclass(frozen=True)
class DemoSet:
    """A generated split held in memory."""

    images: np.ndarray  # uint8 [N, H, W, 3]
    masks: np.ndarray  # uint8 [N, H, W], values index LEGEND
    labels: np.ndarray  # int64 [N]
    hats: np.ndarray  # int64 [N]: the profession whose hat the figure wears
    watermark: np.ndarray  # bool [N]
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def generate(
    n: int,
    *,
    seed: int = 0,
    size: int = 64,
    classes: Sequence[str] = DEFAULT_CLASSES,
    hat_bias: float | None = None,
    watermark_class: str | None = None,
    watermark_rate: float = 0.5,
    contrast: float = 0.2,
) -> DemoSet:
    """Generate ``n`` images of ``size`` px.

    ``hat_bias``: probability that the hat matches the profession (otherwise a hat of another
    profession); ``None`` makes every (profession, hat) pair equally common. ``watermark_class``
    puts a corner watermark on ``watermark_rate`` of that class's images. ``contrast`` is the
    RGB distance between the uniform's two colours: lower makes the pattern harder to learn.
    """
    names = tuple(classes)
    unknown = [c for c in names if c not in PROFESSIONS]
    if unknown or len(set(names)) != len(names) or len(names) < 2:
        raise SalienceError(
            f"classes must be 2 to {len(PROFESSIONS)} distinct names from: "
            f"{', '.join(PROFESSIONS)} (got {', '.join(names)})"
        )
    if n < 1 or size < 32:
        raise SalienceError("generate at least 1 image of at least 32 px")
    if hat_bias is not None and not 0.0 <= hat_bias <= 1.0:
        raise SalienceError(f"hat_bias must be between 0 and 1, got {hat_bias}")
    if not 0.0 < contrast <= 1.0:
        raise SalienceError(f"contrast must be in (0, 1], got {contrast}")
    if watermark_class is not None and watermark_class not in names:
        raise SalienceError(f"watermark class {watermark_class!r} is not one of {', '.join(names)}")
    rng = np.random.default_rng(seed)
    k = len(names)
    labels, hats = _assign(rng, n, k, hat_bias)
    marked = np.zeros(n, dtype=bool)
    if watermark_class is not None:
        marked = (labels == names.index(watermark_class)) & (rng.random(n) < watermark_rate)
    patterns = np.array([list(PROFESSIONS).index(c) for c in names])
    hat_ids = np.array([list(PROFESSIONS).index(c) for c in names])
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    masks = np.empty((n, size, size), dtype=np.uint8)
    for start in range(0, n, CHUNK):
        sl = slice(start, min(n, start + CHUNK))
        img, mask = _draw(rng, size, patterns[labels[sl]], hat_ids[hats[sl]], marked[sl], contrast)
        images[sl], masks[sl] = img, mask
    return DemoSet(images, masks, labels, hats, marked, names)


def _assign(
    rng: np.random.Generator, n: int, k: int, hat_bias: float | None
) -> tuple[np.ndarray, np.ndarray]:
    if hat_bias is None:
        # every (label, hat) pair equally often, then shuffled
        idx = rng.permutation(n)
        return (idx % k).astype(np.int64), ((idx // k) % k).astype(np.int64)
    labels = rng.permutation(np.arange(n) % k).astype(np.int64)
    other = (labels + rng.integers(1, k, size=n)) % k
    hats = np.where(rng.random(n) < hat_bias, labels, other).astype(np.int64)
    return labels, hats


def _u(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    return rng.uniform(lo, hi, size=(n, 1, 1)).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, n: int, size: int, cells: int) -> np.ndarray:
    """Bilinearly upsampled random grid: low-frequency texture [n, size, size, 3]."""
    grid = rng.uniform(-1, 1, size=(n, cells + 1, cells + 1, 3)).astype(np.float32)
    t = np.linspace(0, cells, size, dtype=np.float32)
    i0 = np.minimum(t.astype(int), cells - 1)
    f = (t - i0)[None, :, None, None]
    rows = grid[:, i0] * (1 - f) + grid[:, i0 + 1] * f  # [n, size, cells+1, 3]
    g = f.transpose(0, 2, 1, 3)
    return rows[:, :, i0] * (1 - g) + rows[:, :, i0 + 1] * g


def _random_colours(rng: np.random.Generator, n: int) -> np.ndarray:
    return rng.uniform(0.05, 0.95, size=(n, 1, 1, 3)).astype(np.float32)


def _draw(
    rng: np.random.Generator,
    size: int,
    pattern: np.ndarray,
    hat: np.ndarray,
    marked: np.ndarray,
    contrast: float,
) -> tuple[np.ndarray, np.ndarray]:
    n = pattern.shape[0]
    ax = (np.arange(size, dtype=np.float32) + 0.5) / size
    y, x = ax[None, :, None], ax[None, None, :]

    # background: two-colour gradient, smooth noise, a few clutter discs, pixel noise
    theta = _u(rng, 0, 2 * np.pi, n)
    t = np.clip((np.cos(theta) * (x - 0.5) + np.sin(theta) * (y - 0.5)) + 0.5, 0, 1)[..., None]
    img = _random_colours(rng, n) * (1 - t) + _random_colours(rng, n) * t
    img += np.float32(0.12) * _smooth_noise(rng, n, size, 4)
    for _ in range(3):
        cy, cx, r = _u(rng, 0, 1, n), _u(rng, 0, 1, n), _u(rng, 0.04, 0.12, n)
        disc = (y - cy) ** 2 + (x - cx) ** 2 < r**2
        _paint(img, disc, _random_colours(rng, n))

    mask = np.zeros((n, size, size), dtype=np.uint8)
    s = _u(rng, 0.9, 1.1, n)
    cx = _u(rng, 0.36, 0.64, n)
    hy = _u(rng, 0.30, 0.36, n)
    hr = 0.095 * s

    # uniform: a trapezoid from the shoulders to the bottom edge, patterned
    top = hy + 0.9 * hr
    frac = np.clip((y - top) / np.maximum(1 - top, 1e-3), 0, 1)
    shoulder = np.clip((y - top) / (0.07 * s), 0, 1)
    half = (0.11 + 0.07 * np.sqrt(shoulder) + 0.05 * frac) * s
    torso = (y >= top) & (np.abs(x - cx) <= half)
    on = _pattern(rng, pattern, y - top, x - cx, s)
    c1 = _random_colours(rng, n)
    step = rng.normal(size=(n, 1, 1, 3)).astype(np.float32)
    step *= contrast / np.linalg.norm(step, axis=-1, keepdims=True)
    c2 = np.clip(c1 + step, 0, 1)
    _paint(img, torso & on, c1)
    _paint(img, torso & ~on, c2)
    mask[torso] = UNIFORM

    # head: skin disc with eyes, then the hat
    skin = np.array([0.95, 0.78, 0.62], dtype=np.float32) * rng.uniform(
        0.45, 1.0, size=(n, 1, 1, 1)
    ).astype(np.float32)
    head = (y - hy) ** 2 + (x - cx) ** 2 < hr**2
    _paint(img, head, skin)
    eyes = ((y - hy) ** 2 + (np.abs(x - cx) - 0.4 * hr) ** 2) < (0.18 * hr) ** 2
    _paint(img, eyes, np.float32(0.08))
    hat_px = _hat(hat, y - hy, x - cx, hr)
    colour = HAT_COLOURS[hat][:, None, None, :] + rng.uniform(
        -0.08, 0.08, size=(n, 1, 1, 3)
    ).astype(np.float32)
    _paint(img, hat_px, np.clip(colour, 0, 1))
    mask[head | hat_px] = HEAD

    if marked.any():
        _watermark(img, marked, y, x)
    img += rng.standard_normal(size=img.shape, dtype=np.float32) * np.float32(0.02)
    np.clip(img, 0, 1, out=img)
    return (img * 255 + 0.5).astype(np.uint8), mask


def _paint(img: np.ndarray, where: np.ndarray, colour: np.ndarray | np.floating) -> None:
    """Set ``img`` [n, H, W, 3] to ``colour`` where the boolean [n, H, W] ``where`` holds."""
    np.copyto(img, colour, where=where[..., None])


def _pattern(
    rng: np.random.Generator, pattern: np.ndarray, dy: np.ndarray, dx: np.ndarray, s: np.ndarray
) -> np.ndarray:
    """Boolean [n, H, W]: which uniform pixels take the first colour."""
    n = pattern.shape[0]
    period = _u(rng, 0.075, 0.11, n) * s
    angle = _u(rng, -0.2, 0.2, n)
    u = (np.cos(angle) * dx + np.sin(angle) * dy) / period + _u(rng, 0, 1, n)
    v = (np.cos(angle) * dy - np.sin(angle) * dx) / period + _u(rng, 0, 1, n)
    fu, fv = u - np.floor(u), v - np.floor(v)
    d1, d2 = (u + v) / np.sqrt(2), (u - v) / np.sqrt(2)
    radius = _u(rng, 0.25, 0.34, n)
    options: dict[str, Callable[[], np.ndarray]] = {
        "checks": lambda: (np.floor(u) + np.floor(v)) % 2 == 0,
        "dots": lambda: (fu - 0.5) ** 2 + (fv - 0.5) ** 2 < radius**2,
        "vertical": lambda: fu < 0.5,
        "horizontal": lambda: fv < 0.5,
        "diagonal": lambda: (d1 - np.floor(d1)) < 0.5,
        "crosshatch": lambda: ((d1 - np.floor(d1)) < 0.3) | ((d2 - np.floor(d2)) < 0.3),
    }
    out = np.zeros(fu.shape, dtype=bool)
    for i, kind in enumerate(PROFESSIONS.values()):
        sel = pattern == i
        if sel.any():
            out[sel] = options[kind]()[sel]
    return out


def _hat(hat: np.ndarray, dy: np.ndarray, dx: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Boolean [n, H, W] hat pixels relative to the head centre, one shape per hat id."""
    ady = dy / r
    adx = dx / r
    shapes = {
        "toque": ((ady < -0.5) & (ady > -2.3) & (np.abs(adx) < 0.8))
        | ((ady + 2.2) ** 2 + adx**2 < 0.9**2),
        "cap": ((ady < -0.25) & (ady**2 + adx**2 < 1.12**2))
        | ((ady > -0.45) & (ady < -0.2) & (adx > 0) & (adx < 1.7)),
        "helmet": (ady < 0.05) & (ady**2 + adx**2 < 1.3**2),
        "beret": ((ady + 0.85) / 0.45) ** 2 + ((adx - 0.25) / 1.35) ** 2 < 1,
        "band": (ady > -0.75) & (ady < -0.35) & (np.abs(adx) < 1.1),
        "cone": (ady < -0.6) & (ady > -2.4) & (np.abs(adx) < (ady + 2.4) * 0.55),
    }
    out = np.zeros(np.broadcast_shapes(dy.shape, dx.shape), dtype=bool)
    for i, name in enumerate(HAT_SHAPES):
        sel = hat == i
        if sel.any():
            out[sel] = shapes[name][sel]
    return out


def _watermark(img: np.ndarray, marked: np.ndarray, y: np.ndarray, x: np.ndarray) -> None:
    """A white box with a dark ring in the bottom-right corner (like a photo agency stamp)."""
    cy, cx, half = 0.89, 0.89, 0.075
    box = (np.abs(y - cy) < half) & (np.abs(x - cx) < half)
    ring = np.abs(np.sqrt((y - cy) ** 2 + (x - cx) ** 2) - 0.045) < 0.015
    stamp = np.where(ring, np.float32(0.05), np.float32(1.0))[None, ..., None]
    _paint(img, marked[:, None, None] & box, stamp)


# ----------------------------------------------------------------------------------- writing


def write(data: DemoSet, root: Path, split: str, masks: bool = True) -> Path:
    """Write ``data`` under ``root`` as an image folder and a manifest with masks.

    Layout: ``root/<split>/<class>/<id>.png`` (an image folder per split),
    ``root/masks/<split>/<id>.png`` (pixel values index ``root/legend.json``) and
    ``root/<split>.csv`` with ``path, label, mask, split, hat, hat_matches, watermark``
    (paths relative to ``root``; ``masks=False`` leaves out the masks). Returns the manifest.
    """
    root = Path(root)
    for name in data.class_names:
        (root / split / name).mkdir(parents=True, exist_ok=True)
    if masks:
        (root / "masks" / split).mkdir(parents=True, exist_ok=True)
        (root / LEGEND_FILE).write_text(json.dumps(LEGEND) + "\n")
    header = ["path", "label", "mask", "split", "hat", "hat_matches", "watermark"]
    rows = []
    for i in range(len(data)):
        label = data.class_names[int(data.labels[i])]
        stem = f"{split}-{i:06d}"
        path = f"{split}/{label}/{stem}.png"
        mask = f"masks/{split}/{stem}.png"
        Image.fromarray(data.images[i]).save(root / path, compress_level=1)
        if masks:
            Image.fromarray(data.masks[i]).save(root / mask, compress_level=1)
        hat = data.class_names[int(data.hats[i])]
        row = [path, label, mask, split, hat, hat == label, bool(data.watermark[i])]
        rows.append(row if masks else row[:2] + row[3:])
    manifest = root / f"{split}.csv"
    tmp = manifest.with_suffix(".csv.tmp")
    with tmp.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(header if masks else header[:2] + header[3:])
        out.writerows(rows)
    tmp.replace(manifest)
    return manifest


def region_area(masks: np.ndarray) -> dict[str, float]:
    """Mean share of the image area per region (``background`` included)."""
    total = masks.size
    out = {"background": float((masks == 0).sum() / total)}
    for key, name in LEGEND.items():
        out[name] = float((masks == int(key)).sum() / total)
    return out
