"""A baseline run of a tiny model and incoming image streams with and without a planted shift."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from helpers.audit_helpers import CLASSES, image, make_folder
from salience.audit import audit
from salience.models import load_model

FACTORY = """
import sys
sys.path.insert(0, {tests!r})
from helpers.audit_helpers import TinyNet

def build():
    return TinyNet()
"""
PREPROCESS = "half:size=16,resize=16"


def factory(tmp: Path) -> str:
    path = tmp / "tiny.py"
    path.write_text(FACTORY.format(tests=str(Path(__file__).parents[1])))
    return f"{path}:build"


def tiny_model(tmp: Path):  # type: ignore[no-untyped-def]
    return load_model(factory(tmp), preprocess=PREPROCESS, class_names=list(CLASSES))


def baseline(tmp: Path, per_class: int = 40) -> Path:
    """A complete run of the tiny model over generated images (gradcam, 8x8 maps)."""
    data = make_folder(tmp / "ref", per_class=per_class, masks=False)
    out = tmp / "runs" / "ref"
    audit(tiny_model(tmp), data, out, ["gradcam"], map_size=8, workers=0, batch_size=16)
    return out


def stream(
    folder: Path, n: int, shifted_from: int | None = None, seed: int = 5000, labels: bool = False
) -> Path:
    """``n`` images in a manifest with a ``ts`` column one minute apart; from row
    ``shifted_from`` on, a white square is stamped in the top-left corner."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        arr = np.asarray(image(seed + i)).copy()
        if shifted_from is not None and i >= shifted_from:
            arr[:7, :7] = 255
        Image.fromarray(arr).save(folder / f"{i:05d}.png")
        row = [f"{i:05d}.png", f"2024-01-01T{i // 60:02d}:{i % 60:02d}:00", f"cam{i % 2}"]
        rows.append([*row, CLASSES[i % 3]] if labels else row)
    manifest = folder / "stream.csv"
    with manifest.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["path", "ts", "camera", *(["label"] if labels else [])])
        w.writerows(rows)
    return manifest
