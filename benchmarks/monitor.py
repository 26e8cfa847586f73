"""Monitor acceptance (issue 12): false alarms, detection power, and the cost of the tests.

A small ProfessionNet is trained on generated profession images (salience.data.demo). Pools
of images are explained once with Grad-CAM through the monitor's in-memory feature path
(the audit's attribute and statistics stages): a baseline pool, an unshifted pool, and one
pool per planted shift:

- ``moved``: the figure moves in the frame (the image is translated by a quarter of its
  width, edges replicated);
- ``background``: the background (mask 0) takes other colours (channels permuted, darkened);
- ``watermark``: a white stamp with a dark ring in the bottom-right corner of every image;
- ``noise``: Gaussian pixel noise (sigma 0.1 of the range);
- ``class_mix``: 70% of the images from one class (the others share the rest).

Windows are drawn from the pools at sizes 50, 200 and 1000 and tested against the baseline:

- **false alarms**: the share of unshifted windows that raise the saliency alarm, and BBSD's,
  over many random windows (target: at or below alpha = 0.05);
- **power**: the share of shifted windows detected, saliency tests and BBSD side by side;
- **timing**: the tests of a 1,000-image window against a 100,000-image baseline (target:
  < 2 s), and what monitoring adds to the audit of a 200-image window (target: <= 10%).

    python benchmarks/monitor.py                # the full benchmark
    python benchmarks/monitor.py --quick        # a smoke run
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from salience.audit import audit
from salience.audit.runner import build_methods
from salience.data.demo import generate, write
from salience.demo.pipeline import DemoConfig, load_demo_model, train_model
from salience.monitor import features as feat
from salience.monitor.window import Baseline, window_tests

SHIFTS = ("moved", "background", "watermark", "noise", "class_mix")
SIZES = (50, 200, 1000)
ALPHA = 0.05


def shifted(kind: str, seed: int, n: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Images ``[n, H, W, 3]`` uint8 and labels with the planted shift ``kind``."""
    rng = np.random.default_rng(seed)
    if kind == "class_mix":
        pool = generate(3 * n, seed=seed, size=size)
        p = np.where(
            pool.labels == 0, 0.7 / (pool.labels == 0).sum(), 0.3 / (pool.labels != 0).sum()
        )
        idx = rng.choice(len(pool), n, replace=False, p=p / p.sum())
        return pool.images[idx], pool.labels[idx]
    data = generate(n, seed=seed, size=size)
    img = data.images.astype(np.float32)
    if kind == "moved":
        k = size // 4
        img = np.concatenate([np.repeat(img[:, :, :1], k, 2), img[:, :, :-k]], 2)
    elif kind == "background":
        bg = (data.masks == 0)[..., None]
        img = np.where(bg, img[..., ::-1] * 0.6, img)
    elif kind == "watermark":
        ax = (np.arange(size) + 0.5) / size
        y, x = ax[:, None], ax[None, :]
        box = (np.abs(y - 0.89) < 0.075) & (np.abs(x - 0.89) < 0.075)
        ring = np.abs(np.sqrt((y - 0.89) ** 2 + (x - 0.89) ** 2) - 0.045) < 0.015
        img[:, box] = 255.0
        img[:, ring] = 12.0
    elif kind == "noise":
        img = img + rng.normal(0, 25.5, img.shape)
    elif kind != "none":
        raise ValueError(kind)
    return np.clip(img + 0.5, 0, 255).astype(np.uint8), data.labels


def explain_pool(
    model: Any, images: np.ndarray, labels: np.ndarray, map_size: int
) -> feat.Features:
    built, _ = build_methods(["gradcam"], model.cam_layer)
    from PIL import Image

    parts = []
    for a in range(0, len(images), 128):
        x = torch.stack([model.preprocess(Image.fromarray(im)) for im in images[a : a + 128]])
        ids = [str(a + i) for i in range(len(x))]
        parts.append(
            feat.from_batch(
                model.module, x, built, (map_size, map_size), ids, labels[a : a + 128].tolist()
            )
        )
    return feat.concat(parts)


def rates(base: Baseline, pool: feat.Features, size: int, reps: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    out = {"saliency": 0, "bbsd": 0, "mmd": 0, "ks": 0, "either": 0}
    for _ in range(reps):
        win = pool.take(rng.choice(len(pool), size, replace=len(pool) < size))
        r = window_tests(base, win, ALPHA, rng, classes=False)
        ks = any(t["alert"] for k, t in r["tests"].items() if k.startswith("ks_"))
        out["saliency"] += r["alert"]
        out["bbsd"] += r["bbsd"]["alert"]
        out["mmd"] += r["tests"]["mmd_gradcam"]["alert"]
        out["ks"] += ks
        out["either"] += r["alert"] or r["bbsd"]["alert"]
    return {k: round(v / reps, 3) for k, v in out.items()}


def timing(base_feats: feat.Features, class_names: list[str]) -> dict[str, float]:
    """Tests of a 1,000-image window against a 100,000-image baseline (features resampled
    with jitter from the measured baseline)."""
    rng = np.random.default_rng(0)
    idx = rng.choice(len(base_feats), 100_000)
    big = base_feats.take(idx)
    for m in big.stats:
        big.stats[m] = big.stats[m] + rng.normal(0, 1e-3, big.stats[m].shape)
    t0 = time.perf_counter()
    base = Baseline(big, class_names)
    prepare = time.perf_counter() - t0
    win = base_feats.take(rng.choice(len(base_feats), 1000))
    window_tests(base, win, ALPHA, rng)  # warm-up
    t0 = time.perf_counter()
    window_tests(base, win, ALPHA, rng)
    return {
        "baseline_prepare_s": round(prepare, 3),
        "window_1000_vs_100000_s": round(time.perf_counter() - t0, 3),
    }


def overhead(model: Any, work: Path, size: int) -> dict[str, float]:
    """Audit of a 200-image window alone vs the monitor's extra work on it (features from the
    run + tests against a baseline run of 1,000 images)."""
    from salience.monitor import Monitor
    from salience.store import Run

    ref_data = write(generate(1000, seed=11, size=size), work / "data", "ref", masks=False)
    win_data = write(generate(200, seed=12, size=size), work / "data", "win", masks=False)
    audit(model, ref_data, work / "ref", ["gradcam"], map_size=16, workers=0)
    t0 = time.perf_counter()
    audit(model, win_data, work / "win", ["gradcam"], map_size=16, workers=0)
    audit_s = time.perf_counter() - t0
    with Monitor.open(work / "mon", work / "ref", window=200, calibration_splits=10) as mon:
        mon.calibration(200)  # once per monitor folder, not per window
        t0 = time.perf_counter()
        f = feat.from_run(Run.open(work / "win"), mon.methods)
        mon.record(f, "win", 0, 200)
        extra = time.perf_counter() - t0
    return {
        "audit_200_s": round(audit_s, 3),
        "monitor_extra_s": round(extra, 3),
        "overhead": round(extra / audit_s, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(2)
    size, pool_n = (48, 2000) if not args.quick else (48, 400)
    reps_null = {50: 300, 200: 200, 1000: 100} if not args.quick else {50: 40, 200: 20, 1000: 10}
    reps_shift = 40 if not args.quick else 5
    sizes = SIZES if not args.quick else (50, 200)
    out: dict[str, Any] = {"alpha": ALPHA}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        config = DemoConfig(
            size=size, train_v2=1500 if not args.quick else 300, epochs=6, contrast=0.3
        )
        t0 = time.perf_counter()
        train_model(
            generate(config.train_v2, seed=2, size=size, contrast=0.3), config, work / "m.pt", "v2"
        )
        model = load_demo_model(work / "m.pt", size, list(generate(1, size=size).class_names))
        out["train_s"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        base_imgs, base_labels = shifted("none", 100, 2 * pool_n, size)
        base_feats = explain_pool(model, base_imgs, base_labels, 16)
        base = Baseline(base_feats, list(model.class_names))
        known = base_feats.label >= 0
        out["baseline"] = {
            "images": len(base_feats),
            "accuracy": round(float((base_feats.pred == base_feats.label)[known].mean()), 3),
        }
        pools = {
            k: explain_pool(model, *shifted(k, 200 + i, pool_n, size), 16)
            for i, k in enumerate(("none", *SHIFTS))
        }
        out["explain_s"] = round(time.perf_counter() - t0, 1)
        out["false_alarms"] = {
            str(n): {**rates(base, pools["none"], n, reps_null[n], n), "windows": reps_null[n]}
            for n in sizes
        }
        print(json.dumps(out["false_alarms"]), flush=True)
        out["power"] = {
            k: {str(n): rates(base, pools[k], n, reps_shift, n) for n in sizes} for k in SHIFTS
        }
        out["power_windows"] = reps_shift
        out["pool_accuracy"] = {
            k: round(float((p.pred == p.label).mean()), 3) for k, p in pools.items()
        }
        print(json.dumps(out["power"]), flush=True)
        out["timing"] = timing(base_feats, list(model.class_names))
        out["overhead"] = overhead(model, work / "overhead", size)
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
