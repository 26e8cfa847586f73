"""The images ``salience attack`` works on: a spread-out sample of the data, in pixel space,
with each image's label index (or None where the data has none or the model cannot name it)."""

from __future__ import annotations

from pathlib import Path

import torch

from salience.attack._pixel import PixelModel
from salience.attack.pipeline import Batch
from salience.audit.plan import map_labels
from salience.checking import load_batch
from salience.data import read_dataset
from salience.errors import SalienceError
from salience.models import LoadedModel


def pixel_model(loaded: LoadedModel) -> PixelModel:
    """``loaded``'s module behind its own normalisation, on its device."""
    pre = loaded.preprocess
    return PixelModel(loaded.module, pre.mean, pre.std).to(loaded.device)


def _labels(data: str | Path, root: str | Path | None, names: list[str]) -> dict[str, int]:
    """Image path -> label index, for the images whose label names one model class."""
    try:
        dataset = read_dataset(data, root)
    except SalienceError:
        return {}
    items = [i for i in dataset.items if i.error is None]
    index, _, _ = map_labels(items, names or dataset.labels)
    return {
        str(dataset.root / i.path): k for i, k in zip(items, index, strict=True) if k is not None
    }


def load_attack_batch(
    loaded: LoadedModel, pm: PixelModel, data: str | Path, samples: int, root: str | Path | None
) -> tuple[Batch, list[str]]:
    """``samples`` images of ``data`` as a :class:`Batch` and their paths."""
    x, paths = load_batch(data, loaded.preprocess, samples, loaded.device, root)
    pixels = pm.to_pixels(x).clamp(0, 1)
    known = _labels(data, root, list(loaded.class_names))
    preds = pm.predict(pixels).argmax(1)
    labels = torch.tensor(
        [known.get(p, int(preds[i])) for i, p in enumerate(paths)], device=pixels.device
    )
    batch = Batch(pixels, labels, preds == labels, list(loaded.class_names))
    return batch, paths
