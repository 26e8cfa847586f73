"""Image sets: class folders and CSV/Parquet manifests (paths, labels, masks, boxes, metadata),
read into a :class:`Dataset` of :class:`Item` rows; odd items carry the reason they are refused.

:func:`read_dataset` is the one entry point; :mod:`salience.data.folders` and
:mod:`salience.data.manifest` read each form, :mod:`salience.data.dataset` holds the types.
"""

from __future__ import annotations

from pathlib import Path

from salience.data.dataset import MANIFEST_SUFFIXES, Dataset, Item, refused
from salience.data.folders import read_folder
from salience.data.manifest import read_manifest
from salience.errors import SalienceError

__all__ = ["MANIFEST_SUFFIXES", "Dataset", "Item", "read_dataset", "refused"]


def read_dataset(path: str | Path, root: str | Path | None = None) -> Dataset:
    """An image folder (one sub-folder per class) or a ``.csv``/``.parquet`` manifest, whose
    paths are relative to ``root`` (default: the common parent of its paths)."""
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
