"""An image folder with one sub-folder per class (the torchvision ``ImageFolder`` layout).

``ROOT/<class>/**/<image>``; the class is the sub-folder name. Optional region masks sit next
to their image as ``<stem>.mask.png`` with the legend in ``ROOT/regions.json`` (or a
``<stem>.mask.json`` beside the mask). Files whose extension is not an image type are skipped
and counted in :attr:`Dataset.notes`; extension-less files are read as images, since a file's
content, not its name, decides how it is decoded. A file whose name is not valid UTF-8, a
symbolic link that loops and one that leaves the root become items with an error (they are
reported, never opened).
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

from salience.data.dataset import Dataset, Item, Legend, load_legend_file, path_error, printable
from salience.errors import SalienceError
from salience.images import IMAGE_SUFFIXES

MASK_SUFFIX = ".mask.png"
LEGEND_NAMES = ("regions.json", "legend.json")


def read_folder(root: Path) -> Dataset:
    """Items of ``root``, sorted by class then path; masks and legends attached."""
    root = root.resolve()
    try:
        entries = list(os.scandir(root))
    except OSError as exc:
        raise SalienceError(
            f"cannot list {str(root)!r}: {exc.strerror}; check its permissions"
        ) from None
    classes = sorted(e.name for e in entries if _is(e, "dir") and not e.name.startswith("."))
    if not classes:
        raise SalienceError(
            f"{str(root)!r} has no class sub-folders; lay images out as ROOT/<class>/<image> or "
            "pass a CSV manifest with path and label columns"
        )
    legend = _dataset_legend(root)
    items: list[Item] = []
    skipped: Counter[str] = Counter()
    unlisted: list[str] = []
    top_level = sum(1 for e in entries if _is(e, "file") and e.name not in LEGEND_NAMES)
    for cls in classes:
        label = printable(cls)  # a folder name that is not UTF-8 is stored escaped
        for rel, error in _walk(root, root / cls, unlisted):
            name = rel.rsplit("/", 1)[-1]
            lower = name.lower()
            if lower.endswith(MASK_SUFFIX) or lower.endswith(".mask.json"):
                continue
            suffix = os.path.splitext(lower)[1]
            if suffix and suffix not in IMAGE_SUFFIXES:
                skipped[suffix] += 1
                continue
            if error:
                items.append(Item(path=rel, label=label, error=error))
                continue
            items.append(_with_mask(root, rel, cls, legend))
    notes = [
        f"skipped {n} file(s) with extension {ext} (not an image type)"
        for ext, n in sorted(skipped.items())
    ]
    if unlisted:
        notes.append(f"could not list {len(unlisted)} folder(s), e.g. {unlisted[0]}")
    if top_level:
        notes.append(f"ignored {top_level} file(s) directly in the root (not in a class folder)")
    if not items:
        raise SalienceError(f"no images found under {str(root)!r}")
    return Dataset(
        root=root,
        source=str(root),
        kind="folder",
        items=items,
        labels=[printable(c) for c in classes],
        notes=notes,
    )


def _is(entry: os.DirEntry[str], kind: str) -> bool:
    """``entry.is_dir()``/``is_file()``, False for a looping or unreadable link."""
    try:
        return entry.is_dir() if kind == "dir" else entry.is_file()
    except OSError:
        return False


def _walk(root: Path, folder: Path, unlisted: list[str]) -> list[tuple[str, str | None]]:
    """Relative POSIX paths of the files under ``folder`` (sorted), each with the reason it
    must not be opened (a name that is not UTF-8, a looping link, a link out of ``root``);
    folders that cannot be listed are appended to ``unlisted``."""
    out: list[tuple[str, str | None]] = []

    def note(exc: OSError) -> None:
        unlisted.append(printable(f"{exc.filename}: {exc.strerror}"))

    for dirpath, dirnames, filenames in os.walk(folder, onerror=note, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for fname in sorted(filenames):
            if fname.startswith("."):
                continue
            full = Path(dirpath) / fname
            rel = full.relative_to(root).as_posix()
            error = path_error(rel)
            if error is None and full.is_symlink():
                error = _link_error(root, full, rel)
            out.append((printable(rel), error))
    return out


def _link_error(root: Path, link: Path, rel: str) -> str | None:
    try:
        link.resolve().relative_to(root)
    except ValueError:
        return f"outside root: {rel!r} links outside the data root {str(root)!r}"
    except (RuntimeError, OSError):  # Python < 3.13 raises RuntimeError on a loop
        return f"symlink loop: {rel!r} is a symbolic link that leads back to itself"
    return None


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
