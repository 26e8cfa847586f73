"""Example images of an attack run: the clean picture, each method's attacked picture, the
perturbation, the clean and attacked maps, and both predictions, as PNG files listed in
``attack.json`` (the HTML page and the explorer read them)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from salience.attack.files import EXAMPLES as FOLDER
from salience.attack.pipeline import AttackRun
from salience.viz.overlay import overlay
from salience.viz.png import save_png


def picture(pixels: torch.Tensor) -> np.ndarray:
    """``[3, H, W]`` pixels in 0..1 -> ``[H, W, 3]`` uint8."""
    return (pixels.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


def perturbation(delta: torch.Tensor, eps: float) -> np.ndarray:
    """The perturbation scaled so that ``-eps`` is black, 0 grey and ``+eps`` white."""
    return picture(0.5 + delta / (2 * eps))


def _prediction(run: AttackRun, pixels: torch.Tensor) -> dict[str, Any]:
    prob = torch.softmax(run.pm.predict(pixels[None]), 1)[0]
    k = int(prob.argmax())
    return {"class": run.batch.name(k), "index": k, "probability": float(prob[k])}


def write_examples(run: AttackRun, out: Path, paths: list[str]) -> list[dict[str, Any]]:
    """Write the first ``run.config.examples`` images' PNGs under ``out/examples``."""
    folder = out / FOLDER
    eps = run.config.fragility.eps
    attacked = run.examples.get("fragility", {})
    records = []
    for i in range(min(run.config.examples, len(run.batch.pixels))):
        clean = run.batch.pixels[i]
        pic = picture(clean)
        save_png(folder / f"{i}-clean.png", pic)
        record: dict[str, Any] = {
            "index": i,
            "image": paths[i] if i < len(paths) else None,
            "clean": f"{FOLDER}/{i}-clean.png",
            "prediction": _prediction(run, clean),
            "methods": {},
        }
        for method, (adv, _noise) in attacked.items():
            files = {
                "attacked": f"{FOLDER}/{i}-{method}-attacked.png",
                "perturbation": f"{FOLDER}/{i}-{method}-perturbation.png",
                "map_clean": f"{FOLDER}/{i}-{method}-map-clean.png",
                "map_attacked": f"{FOLDER}/{i}-{method}-map-attacked.png",
            }
            label = run.preds[i : i + 1]
            after = run.real_map(method, adv[i : i + 1], label)[0].abs().cpu().numpy()
            before = run.clean_maps[method][i].abs().cpu().numpy()
            save_png(out / files["attacked"], picture(adv[i]))
            save_png(out / files["perturbation"], perturbation(adv[i] - clean, eps))
            save_png(out / files["map_clean"], overlay(pic, before))
            save_png(out / files["map_attacked"], overlay(picture(adv[i]), after))
            record["methods"][method] = {**files, "prediction": _prediction(run, adv[i])}
        records.append(record)
    return records
