"""Two real audit runs whose every user-controlled string is markup: class names, file names,
metadata names and values, split names, region names, run folder names and shortcut findings
(an XSS corpus), plus manifest rows that point at an HTML page, an SVG with script, an HTML
file named ``.png`` and a TIFF. The explorer and the report must show all of it as text."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
from PIL import Image

from helpers.explorer_runs import METHODS, SIZE, Model, train
from salience.audit import audit

# Each payload calls alert() (a dialog) if it is ever parsed as HTML or followed as a URL.
XSS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(2)>',
    "javascript:alert(3)",
    "</script><script>alert(4)</script>",
]
# Payloads without "/" (they must be valid file and folder names).
NAMES = ['"><img src=x onerror=alert(5)>', "<svg onload=alert(6)>", "javascript:alert(7)"]
RUN_NAMES = ('"><img src=x onerror=alert(8)>', "<svg onload=alert(9)>")
REGIONS = {"1": "<img src=x onerror=alert(10)>", "2": "</script><script>alert(11)</script>"}
META = "<b onmouseover=alert(12)>note</b>"
SPLITS = ("<img src=x onerror=alert(13)>", "train")
# Served-file payloads: none of these may ever come back as text/html or image/svg+xml.
EVIL = {
    "img/evil.html": b"<!doctype html><script>alert(14)</script>",
    "img/evil.svg": b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(15)">'
    b"<script>alert(16)</script></svg>",
    "img/polyglot.png": b"<html><body><script>alert(17)</script></body></html>",
}


def write_data(root: Path, per_class: int = 3) -> Path:
    """Images (and masks) for every class of :data:`XSS`, the evil rows, and the manifest."""
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "legend.json").write_text(json.dumps(REGIONS))
    rows = []
    for c, label in enumerate(XSS):
        for i in range(per_class):
            k = c * per_class + i
            path = f"img/{k:02d} {NAMES[k % len(NAMES)]}.png"
            pixels = rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8)
            pixels[:, :, c % 3] = 255 - 40 * i  # a class colour the tiny net can learn
            Image.fromarray(pixels).save(root / path)
            mask = np.zeros((SIZE, SIZE), dtype=np.uint8)
            mask[4:12, 8:24], mask[14:30, 6:26] = 1, 2
            Image.fromarray(mask).save(root / f"masks/{k:02d}.png")
            rows.append([path, label, f"masks/{k:02d}.png", SPLITS[k % 2], XSS[(k + 1) % 4]])
    Image.fromarray(np.full((SIZE, SIZE, 3), 90, np.uint8)).save(root / "img/photo.tiff")
    rows.append(["img/photo.tiff", XSS[0], "", SPLITS[1], XSS[2]])
    for rel, content in EVIL.items():
        (root / rel).write_bytes(content)
        rows.append([rel, XSS[1], "", SPLITS[1], XSS[3]])
    manifest = root / "manifest.csv"
    with manifest.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["path", "label", "mask", "split", META])
        out.writerows(rows)
    return manifest


def make_hostile_runs(root: Path) -> tuple[Path, Path]:
    """Two runs of the same hostile data, named by :data:`RUN_NAMES`, with shortcut findings
    in the first."""
    manifest = write_data(root / "data")
    runs = []
    for name, steps in zip(RUN_NAMES, (2, 30), strict=True):
        net = train_hostile(manifest, steps)
        model = Model(net, list(XSS), f"{XSS[1]}:{steps}")
        audit(model, manifest, root / name, METHODS, batch_size=8, shard_size=8, map_size=SIZE)
        runs.append(root / name)
    grid = [[0.1 * (x + y) for x in range(4)] for y in range(4)]
    class_wide = {
        "flagged": True, "box": [0.1, 0.1, 0.5, 0.5], "share": 0.8, "other_share": 0.1,
        "area": 0.16, "confirmed": True, "examples": [XSS[0], NAMES[0]], "mean_map": grid,
        "others_map": grid, "intervention": {"images": 3, "others": 9, "removed": 0.5,
        "removed_control": 0.1, "pasted": 0.4, "pasted_control": 0.0},
    }  # fmt: skip
    findings = {
        "classes": [
            {"class": label, "flagged": True, "reason": XSS[(i + 1) % 4],
             "region_share": {REGIONS["1"]: 0.6, REGIONS["2"]: 0.3}, "clusters": [],
             "kind": "class" if i % 2 else XSS[i], "box": [0.1, 0.1, 0.5, 0.5],
             "class_wide": class_wide}
            for i, label in enumerate(XSS)
        ]
    }  # fmt: skip
    (runs[0] / "shortcuts.json").write_text(json.dumps(findings))
    return runs[0], runs[1]


def train_hostile(manifest: Path, steps: int) -> object:
    """:func:`helpers.explorer_runs.train` on the readable rows (the evil rows are no images)."""
    readable = manifest.with_name("readable.csv")
    with manifest.open() as src, readable.open("w", newline="") as dst:
        rows = list(csv.reader(src))
        csv.writer(dst).writerows(
            [rows[0]] + [r for r in rows[1:] if r[0].endswith(".png") and r[2]]
        )
    return train(readable, steps, list(XSS))
