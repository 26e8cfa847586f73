"""The images of a check: a few photos spread evenly over a folder or a manifest."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from salience.errors import SalienceError


def load_batch(
    data: str | Path,
    preprocess: Callable[[Any], torch.Tensor],
    samples: int,
    device: torch.device,
    root: str | Path | None = None,
) -> tuple[torch.Tensor, list[str]]:
    """``samples`` images spread evenly over an image folder (class sub-folders, or just
    images when no labels are needed) or a manifest (paths under ``root``), preprocessed.
    An unreadable image is replaced by the next readable one; with none, the error says how
    many rows were refused and why."""
    from salience.data import read_dataset, refused
    from salience.images import IMAGE_SUFFIXES, load_image

    if samples < 1:
        raise SalienceError("--samples must be >= 1")
    note = None
    try:
        dataset = read_dataset(data, root)
        paths = [str(dataset.root / i.path) for i in dataset.items if i.error is None]
        note = refused(dataset.items)
    except SalienceError:
        folder = Path(data)
        if root is not None or not folder.is_dir():
            raise
        paths = sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not paths:
            raise
    count = min(samples, len(paths))
    spread = [(k * len(paths)) // count for k in range(count)]
    order = [*spread, *sorted(set(range(len(paths))) - set(spread))]  # then the others
    picked: list[str] = []
    tensors: list[torch.Tensor] = []
    unreadable: list[str] = []
    for k in order:
        if len(picked) == count:
            break
        try:
            tensors.append(preprocess(load_image(paths[k])))
        except SalienceError as exc:
            unreadable.append(str(exc))
            continue
        picked.append(paths[k])
    if not picked:
        reasons = [note] if note else []
        if unreadable:
            reasons.append(f"{len(unreadable)} unreadable (e.g. {unreadable[0]})")
        raise SalienceError(f"no readable images in {data}: {'; '.join(reasons) or 'none found'}")
    return torch.stack(tensors).to(device), picked
