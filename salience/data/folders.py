"""An image folder with one sub-folder per class (the torchvision ``ImageFolder`` layout).

``ROOT/<class>/**/<image>``; the class is the sub-folder name. Optional region masks sit next
to their image as ``<stem>.mask.png`` with the legend in ``ROOT/regions.json`` (or a
``<stem>.mask.json`` beside the mask). Files whose extension is not an image type are skipped
and counted in :attr:`Dataset.notes`; extension-less files are read as images, since a file's
content, not its name, decides how it is decoded.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from salience.data.dataset import Dataset, Item, Legend, load_legend_file
from salience.errors import SalienceError

IMAGE_SUFFIXES = frozenset(
    {
        ".jpg",
        ".jpeg",
        ".png",
        ".bmp",
        ".gif",
        ".tif",
        ".tiff",
        ".webp",
        ".ppm",
        ".pgm",
        ".pbm",
        ".jfif",
        ".jp2",
        ".ico",
    }
)
MASK_SUFFIX = ".mask.png"
LEGEND_NAMES = ("regions.json", "legend.json")


def read_folder(root: Path) -> Dataset:
    """Items of ``root``, sorted by class then path; masks and legends attached."""
    root = root.resolve()
    classes = sorted(e.name for e in os.scandir(root) if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise SalienceError(
            f"{str(root)!r} has no class sub-folders; lay images out as ROOT/<class>/<image> or "
            "pass a CSV manifest with path and label columns"
        )
    legend = _dataset_legend(root)
    items: list[Item] = []
    skipped: Counter[str] = Counter()
    top_level = sum(1 for e in os.scandir(root) if e.is_file() and e.name not in LEGEND_NAMES)
    for cls in classes:
        for rel, is_outside in _walk(root, root / cls):
            name = rel.rsplit("/", 1)[-1]
            lower = name.lower()
            if lower.endswith(MASK_SUFFIX) or lower.endswith(".mask.json"):
                continue
            suffix = os.path.splitext(lower)[1]
            if suffix and suffix not in IMAGE_SUFFIXES:
                skipped[suffix] += 1
                continue
            if is_outside:
                error = f"outside root: {rel!r} links outside the data root {str(root)!r}"
                items.append(Item(path=rel, label=cls, error=error))
                continue
            items.append(_with_mask(root, rel, cls, legend))
    notes = [
        f"skipped {n} file(s) with extension {ext} (not an image type)"
        for ext, n in sorted(skipped.items())
    ]
    if top_level:
        notes.append(f"ignored {top_level} file(s) directly in the root (not in a class folder)")
    if not items:
        raise SalienceError(f"no images found under {str(root)!r}")
    return Dataset(
        root=root, source=str(root), kind="folder", items=items, labels=classes, notes=notes
    )


def _walk(root: Path, folder: Path) -> list[tuple[str, bool]]:
    """Relative POSIX paths of the files under ``folder`` (sorted), and whether each one is a
    symbolic link resolving outside ``root``."""
    out: list[tuple[str, bool]] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fname in sorted(filenames):
            if fname.startswith("."):
                continue
            full = Path(dirpath) / fname
            rel = full.relative_to(root).as_posix()
            outside = False
            if full.is_symlink():
                try:
                    full.resolve().relative_to(root)
                except ValueError:
                    outside = True
            out.append((rel, outside))
    return out


def _dataset_legend(root: Path) -> Legend | None:
    for name in LEGEND_NAMES:
        if (root / name).is_file():
            return load_legend_file(root / name)
    return None


def _with_mask(root: Path, rel: str, label: str, legend: Legend | None) -> Item:
    stem = rel.rsplit(".", 1)[0] if "." in rel.rsplit("/", 1)[-1] else rel
    mask_rel = stem + MASK_SUFFIX
    if not (root / mask_rel).is_file():
        return Item(path=rel, label=label)
    sidecar = root / (stem + ".mask.json")
    try:
        item_legend = load_legend_file(sidecar) if sidecar.is_file() else legend
    except SalienceError as exc:
        return Item(path=rel, label=label, warning=f"bad legend: {exc}")
    if item_legend is None:
        return Item(
            path=rel,
            label=label,
            warning=f"mask without legend: {mask_rel} has no regions.json legend; mask ignored",
        )
    return Item(path=rel, label=label, mask=mask_rel, legend=item_legend)
