"""Causal check of a shortcut box: does the model's decision move when the box changes?

A saliency map can mislead (Adebayo et al., NeurIPS 2018), so a place found in the maps is
confirmed by intervening on the input, as in the counterfactual tests of Clever Hans cues
(Lapuschkin et al., 2019, Nat. Commun. 10:1096; Anders et al., 2022, Inf. Fusion 77:261):

- *removed*: fill the box with the mean colour of the pixels around it in images the model
  assigns to the class; the share no longer assigned to it;
- *pasted*: copy the box from the class's images into other classes' images at the same
  place; the share now assigned to the class;
- *controls*: the same with a box of the same size elsewhere (the point reflection through
  the image centre, or the opposite corner when that overlaps), which says how much any
  change of that size moves the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from salience.audit.class_shortcuts import Box
from salience.errors import SalienceError
from salience.models import LoadedModel, Preprocess, load_model
from salience.store import Run

BATCH = 64
Pixels = tuple[int, int, int, int]  # y0, x0, y1, x1


def run_model(run: Run, device: str | None = None) -> tuple[LoadedModel | None, str]:
    """The model recorded in ``run.json``, or None and the reason it cannot be used. A model
    given as Python file (``FILE.py:factory``) is never run from a run folder's record."""
    m = run.info.recorded_model
    spec, weights = m.spec, m.weights
    if not spec:
        return None, "run.json records no model"
    if str(spec).split(":")[0].endswith(".py"):
        return None, f"the run's model {spec!r} is a Python file, which is run only when passed"
    if weights and not Path(weights).is_file():
        return None, f"the run's weights {weights} are missing"
    try:
        loaded = load_model(str(spec), weights or None, device, preprocess=run.preprocess())
    except (SalienceError, OSError, RuntimeError, ImportError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return None, f"the run's model {spec!r} cannot be loaded ({first})"
    from salience.audit.plan import state_sha256

    recorded = m.state_sha256
    if recorded and state_sha256(loaded.module) != recorded:
        return None, f"the model {spec!r} loads with other weights than the audited one"
    return loaded, f"the run's model {spec!r}"


def class_index(run: Run, name: str) -> int:
    """The model output of class ``name``: the index the audit recorded for its predictions."""
    rows = run.sql(
        "SELECT pred_index AS i, count(*) AS n FROM samples WHERE pred = ? AND pred_index IS "
        "NOT NULL GROUP BY 1 ORDER BY 2 DESC LIMIT 1",
        [name],
    )
    if len(rows):
        return int(rows["i"].iloc[0])
    return run.class_names.index(name)


def intervene(
    model: LoadedModel,
    run: Run,
    name: str,
    box: Box,
    class_ids: Sequence[str],
    other_ids: Sequence[str],
) -> dict[str, Any]:
    """Mask and paste ``box`` (see the module docstring) and count changed decisions."""
    target = class_index(run, name)
    prep = run.preprocess() or model.preprocess
    own, others = _views(run, class_ids, prep), _views(run, other_ids, prep)
    if not len(own):
        raise SalienceError(f"no {name} image to intervene on")
    h, w = own.shape[1:3]
    place = _pixels(box, h, w)
    control = _elsewhere(place, h, w)
    before_own = _predict(model, prep, own) == target
    before_other = _predict(model, prep, others) == target if len(others) else np.zeros(0, bool)
    own, others = own[before_own], others[~before_other]
    out: dict[str, Any] = {
        "images": len(own),
        "others": len(others),
        "kept_by_model": round(float(before_own.mean()), 4),
        "box_pixels": list(place),
        "control_pixels": list(control),
    }
    for key, where in (("removed", place), ("removed_control", control)):
        out[key] = _rate(_predict(model, prep, _fill(own, where)) != target) if len(own) else None
    for key, where in (("pasted", place), ("pasted_control", control)):
        ok = len(own) and len(others)
        pasted = _paste(own, others, where) if ok else others
        out[key] = _rate(_predict(model, prep, pasted) == target) if ok else None
    return out


def _rate(changed: np.ndarray) -> float:
    return round(float(changed.mean()), 4)


def _views(run: Run, ids: Sequence[str], prep: Preprocess) -> np.ndarray:
    """The pictures the model saw, ``uint8 [n, H, W, 3]``."""
    from salience.images import load_image

    if not ids:
        return np.zeros((0, prep.size, prep.size, 3), np.uint8)
    return np.stack([np.asarray(prep.view(load_image(run.image_path(i)))) for i in ids])


def _predict(model: LoadedModel, prep: Preprocess, views: np.ndarray) -> np.ndarray:
    """Top-1 output index of every picture."""
    from PIL import Image

    out = []
    with torch.no_grad():
        for start in range(0, len(views), BATCH):
            x = torch.stack(
                [prep.normalize(Image.fromarray(v)) for v in views[start : start + BATCH]]
            )
            logits = model.module(x.to(model.device))
            out.append(logits.argmax(1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def _pixels(box: Box, h: int, w: int) -> Pixels:
    y0, x0 = int(np.floor(box[0] * h)), int(np.floor(box[1] * w))
    y1, x1 = max(y0 + 1, int(np.ceil(box[2] * h))), max(x0 + 1, int(np.ceil(box[3] * w)))
    return y0, x0, min(y1, h), min(x1, w)


def _elsewhere(p: Pixels, h: int, w: int) -> Pixels:
    """A box of the same size away from ``p``: its point reflection, else the farthest corner."""
    y0, x0, y1, x1 = p
    r = (h - y1, w - x1, h - y0, w - x0)
    if r[0] >= y1 or r[2] <= y0 or r[1] >= x1 or r[3] <= x0:
        return r
    bh, bw = y1 - y0, x1 - x0
    corners = [(0, 0), (0, w - bw), (h - bh, 0), (h - bh, w - bw)]
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    ty, tx = max(corners, key=lambda c: (c[0] + bh / 2 - cy) ** 2 + (c[1] + bw / 2 - cx) ** 2)
    return ty, tx, ty + bh, tx + bw


def _fill(views: np.ndarray, p: Pixels) -> np.ndarray:
    """``views`` with box ``p`` filled by the mean colour of a band around it."""
    y0, x0, y1, x1 = p
    h, w = views.shape[1:3]
    g = max(2, (y1 - y0 + x1 - x0) // 8)
    band = np.zeros((h, w), bool)
    band[max(0, y0 - g) : y1 + g, max(0, x0 - g) : x1 + g] = True
    band[y0:y1, x0:x1] = False
    out = views.copy()
    colour = views[:, band].mean(1) if band.any() else views.reshape(len(views), -1, 3).mean(1)
    out[:, y0:y1, x0:x1] = np.round(colour)[:, None, None].astype(np.uint8)
    return out


def _paste(donors: np.ndarray, views: np.ndarray, p: Pixels) -> np.ndarray:
    """``views`` with box ``p`` copied from ``donors`` (cycled)."""
    y0, x0, y1, x1 = p
    out = views.copy()
    out[:, y0:y1, x0:x1] = donors[np.arange(len(views)) % len(donors), y0:y1, x0:x1]
    return out
