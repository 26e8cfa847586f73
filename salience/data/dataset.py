"""A labelled image set as the audit reads it: a root folder and a list of items.

Items come from an image folder (:mod:`salience.data.folders`) or a CSV/Parquet manifest
(:mod:`salience.data.manifest`); :func:`read_dataset` picks the reader from the path.
Every path is relative to the root; a path that leaves the root is kept as an item with an
error, so it is reported and never opened.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from salience.errors import SalienceError

Legend = tuple[tuple[int, str], ...]
Boxes = tuple[tuple[str, float, float, float, float], ...]

MANIFEST_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq")


@dataclass(frozen=True, slots=True)
class Item:
    """One image: where it is, its label and, optionally, regions (mask or boxes)."""

    path: str  # POSIX path relative to the dataset root
    label: str | None
    mask: str | None = None  # mask PNG, relative to the root
    legend: Legend | None = None  # mask value -> region name, for this item's mask
    boxes: Boxes | None = None  # (region, x0, y0, x1, y1) in image pixels
    split: str | None = None
    meta: tuple[tuple[str, str | None], ...] = ()
    error: str | None = None  # set when the item must not be opened (e.g. outside the root)
    warning: str | None = None  # a problem with the item's annotations, kept and reported


@dataclass
class Dataset:
    """A root folder, its items in a fixed order, and what the reader noticed."""

    root: Path
    source: str
    kind: str  # "folder" or "manifest"
    items: list[Item]
    labels: list[str]  # the distinct labels, sorted (folder: the class sub-folders)
    notes: list[str] = field(default_factory=list)  # e.g. files skipped as not images
    source_sha256: str | None = None  # hash of the manifest file, when there is one

    def regions(self) -> list[str]:
        """Region names over all masks and boxes, ``"background"`` first; [] without any."""
        names: dict[str, None] = {}
        for item in self.items:
            for _, name in item.legend or ():
                names.setdefault(name, None)
            for box in item.boxes or ():
                names.setdefault(box[0], None)
        if not names:
            return []
        names.pop("background", None)
        return ["background", *names]

    def sha256(self) -> str:
        """Hash of the item list (paths, labels, regions, splits, metadata), in order."""
        digest = hashlib.sha256()
        for item in self.items:
            row = [item.path, item.label, item.mask, item.legend, item.boxes, item.split, item.meta]
            digest.update(json.dumps(row, separators=(",", ":")).encode())
            digest.update(b"\n")
        return digest.hexdigest()


def read_dataset(path: str | Path, root: str | Path | None = None) -> Dataset:
    """An image folder (one sub-folder per class) or a ``.csv``/``.parquet`` manifest, whose
    paths are relative to ``root`` (default: the manifest's folder)."""
    from salience.data.folders import read_folder
    from salience.data.manifest import read_manifest

    p = Path(path).expanduser()
    if p.is_dir():
        if root is not None:
            raise SalienceError("a data root is only for manifests; an image folder is its own")
        return read_folder(p)
    if p.is_file() and p.suffix.lower() in MANIFEST_SUFFIXES:
        return read_manifest(p, None if root is None else Path(root).expanduser())
    if not p.exists():
        raise SalienceError(f"data path {str(p)!r} does not exist")
    raise SalienceError(
        f"cannot read {str(p)!r} as data; pass an image folder (one sub-folder per class) or a "
        f"manifest ({', '.join(MANIFEST_SUFFIXES)})"
    )


def relative_to_root(root: Path, path: str) -> tuple[str, str | None]:
    """``path`` (relative to ``root`` or absolute) as a POSIX path relative to ``root``.

    Returns ``(relative, None)``, or ``(path, error)`` when it resolves outside the root.
    """
    text = path.strip()
    candidate = Path(text)
    full = candidate if candidate.is_absolute() else root / candidate
    resolved_root = root.resolve()
    try:
        rel = full.resolve().relative_to(resolved_root)
    except ValueError:
        return text, f"outside root: {text!r} is outside the data root {str(resolved_root)!r}"
    return PurePosixPath(*rel.parts).as_posix(), None


def parse_legend(text: str | dict[str, object], where: str) -> Legend:
    """``{"1": "head", "2": "uniform"}`` -> ``((1, "head"), (2, "uniform"))``."""
    try:
        raw = json.loads(text) if isinstance(text, str) else text
    except json.JSONDecodeError as exc:
        raise SalienceError(f"{where}: the region legend is not valid JSON ({exc.msg})") from None
    if not isinstance(raw, dict) or not raw:
        raise SalienceError(f'{where}: a region legend is a JSON object like {{"1": "head"}}')
    out: list[tuple[int, str]] = []
    for key, name in raw.items():
        try:
            value = int(key)
        except (TypeError, ValueError):
            raise SalienceError(
                f"{where}: legend key {key!r} is not a mask value (an integer)"
            ) from None
        if not 0 <= value <= 65535 or not isinstance(name, str) or not name.strip():
            raise SalienceError(f"{where}: legend entry {key!r}: {name!r} is not value: name")
        out.append((value, name.strip()))
    return tuple(sorted(out))


def load_legend_file(path: Path) -> Legend:
    return parse_legend(path.read_text(), str(path))
