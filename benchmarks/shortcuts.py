"""``salience shortcuts`` on a generated run of 100,000 images (the class-wide issue's figure).

Writes a synthetic run straight through the store's shard writer: 32x32 ``gradcam`` maps of
moving objects, with a corner mark in every map of one class (a class-wide shortcut) and in
a quarter of another's (a SpRAy cluster), statistics from the audit's own
:func:`map_statistics`. Then times :func:`find_shortcuts` (no model) and its parts.

    python benchmarks/shortcuts.py                     # 100,000 images, 10 classes
    python benchmarks/shortcuts.py --n 5000 --classes 100
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from salience import __version__
from salience.audit.class_shortcuts import class_wide
from salience.audit.shortcuts import ShortcutParams, find_shortcuts, load_grids
from salience.audit.stats import map_statistics, stat_columns
from salience.store import Run, ShardWriter
from salience.store.layout import write_json

MAP = 32


def generate(root: Path, n: int, classes: int, shard: int = 1000, seed: int = 0) -> Path:
    """A complete run of ``n`` images under ``root/run``; class 0 has the mark everywhere."""
    rng = np.random.default_rng(seed)
    run = root / "run"
    names = [f"class_{k:03d}" for k in range(classes)]
    cols = stat_columns([])
    write_json(run / "run.json", _manifest(root, names, n, cols))
    writer = ShardWriter(run, [], cols, pattern=False)
    y, x = (np.mgrid[0:MAP, 0:MAP] + 0.5) / MAP
    mark = np.exp(-((y - 0.9) ** 2 + (x - 0.9) ** 2) / (2 * 0.04**2))
    for s, start in enumerate(range(0, n, shard)):
        rows = np.arange(start, min(n, start + shard))
        m = len(rows)
        label = rng.integers(0, classes, m)
        cy, cx = rng.uniform(0.25, 0.75, (2, m, 1, 1))
        maps = 0.3 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / (2 * 0.08**2))
        marked = (label == 0) | ((label == 1) & (rng.random(m) < 0.25))
        maps = (maps + marked[:, None, None] * mark + 0.02 * rng.random((m, MAP, MAP))).astype(
            np.float32
        )
        ids = [f"img_{i:06d}" for i in rows]
        samples: dict[str, Any] = {
            "sample_id": ids,
            "path": [f"{names[k]}/{i}.png" for k, i in zip(label, ids, strict=True)],
            "label": [names[k] for k in label],
            "label_index": label.tolist(),
            "pred": [names[k] for k in label],
            "pred_index": label.tolist(),
            "confidence": [0.9] * m,
            "correct": [True] * m,
            "shard": [s] * m,
            "row": list(range(m)),
        }
        stats: dict[str, Any] = {
            k: [float(v) if isinstance(v, np.floating) else v for v in vals]
            for k, vals in map_statistics(maps).items()
        }
        stats.update(sample_id=ids, shard=samples["shard"], row=samples["row"])
        writer.write_shard(s, samples, {"gradcam": stats}, {"gradcam": maps})
    writer.write_index()
    return run


def _manifest(root: Path, names: list[str], n: int, cols: list[str]) -> dict[str, Any]:
    return {
        "salience": __version__,
        "model": {"spec": "synthetic", "weights": None},
        "dataset": {"source": "generated", "root": str(root / "data"), "count": n},
        "class_names": names,
        "regions": [],
        "region_columns": {},
        "methods": {"gradcam": {}},
        "map_size": [MAP, MAP],
        "meta_columns": [],
        "stat_columns": cols,
        "status": "complete",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--classes", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = generate(Path(tmp), args.n, args.classes)
        print(f"generated {args.n} images in {time.perf_counter() - t0:.1f} s")
        run = Run.open(path)
        params = ShortcutParams()
        ids = run.samples(["sample_id"])["sample_id"].tolist()
        t0, c0 = time.perf_counter(), time.process_time()
        grids = load_grids(run, ids, "gradcam", params.grid)
        t_load, c_load = time.perf_counter() - t0, time.process_time() - c0
        labels = run.samples(["label"])["label"].to_numpy()
        t0, c0 = time.perf_counter(), time.process_time()
        class_wide({c: grids[labels == c] for c in run.class_names}, params.class_wide)
        t_wide, c_wide = time.perf_counter() - t0, time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        result = find_shortcuts(Run.open(path))
        t_all, c_all = time.perf_counter() - t0, time.process_time() - c0
        print(f"read and downsample all maps: {t_load:.2f} s, CPU {c_load:.2f} s")
        print(f"class-wide statistics:        {t_wide:.2f} s, CPU {c_wide:.2f} s")
        print(f"find_shortcuts (SpRAy included, fresh Run): {t_all:.2f} s, CPU {c_all:.2f} s")
        kinds = [(f["class"], f["kind"]) for f in result["findings"]]
        print(f"findings: {kinds}")


if __name__ == "__main__":
    main()
