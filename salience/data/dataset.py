"""A labelled image set as the audit reads it: a root folder and a list of items.

Items come from an image folder (:mod:`salience.data.folders`) or a CSV/Parquet manifest
(:mod:`salience.data.manifest`); :func:`read_dataset` picks the reader from the path.
Every path is relative to the root; a path that leaves the root, loops or cannot be stored
(a NUL byte, a name that is not UTF-8) is kept as an item with an error of the form
``"<kind>: <detail>"``, so it is reported and never opened.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
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


def printable(text: str) -> str:
    """``text`` made storable: NUL bytes and undecodable bytes of a file name escaped."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        try:  # os.walk's escapes of undecodable bytes -> the bytes, shown as \xff
            raw = text.encode("utf-8", "surrogateescape")
        except UnicodeEncodeError:  # other lone surrogates, e.g. from JSON
            raw = text.encode("utf-8", "backslashreplace")
        text = raw.decode("utf-8", "backslashreplace")
    return text.replace("\0", "\\x00")


def path_error(text: str) -> str | None:
    """Why a path cannot be an item (a NUL byte, not UTF-8), or ``None``."""
    if "\0" in text:
        return f"bad path: {printable(text)!r} contains a NUL byte; fix the path"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return f"bad file name: {printable(text)!r} is not valid UTF-8; rename the file"
    return None


def relative_to_root(root: Path, path: str, base: Path | None = None) -> tuple[str, str | None]:
    """``path`` (relative to ``base``, default ``root``, or absolute) as a POSIX path relative to
    ``root``.

    Returns ``(relative, None)``, or ``(path, error)`` when it cannot be used: it resolves
    outside the root, loops, or holds a NUL byte or undecodable bytes.
    """
    text = path.strip()
    bad = path_error(text)
    if bad:
        return printable(text), bad
    candidate = Path(text)
    full = candidate if candidate.is_absolute() else (base or root) / candidate
    resolved_root = root.resolve()
    try:
        rel = full.resolve().relative_to(resolved_root)
    except ValueError:
        return text, f"outside root: {text!r} is outside the data root {str(resolved_root)!r}"
    except (RuntimeError, OSError):  # Python < 3.13 raises RuntimeError on a loop
        return text, f"symlink loop: {text!r} passes through a symbolic link that loops"
    return PurePosixPath(*rel.parts).as_posix(), None


def refused(items: list[Item], total_word: str = "rows") -> str | None:
    """``"3 of 10 rows refused: 2 outside root (e.g. ...); 1 bad path (e.g. ...)"`` (with what to
    do about paths outside the root), or ``None`` when no item has an error."""
    errors = [i.error for i in items if i.error]
    if not errors:
        return None
    kinds = Counter(e.split(":", 1)[0] for e in errors)
    example = {e.split(":", 1)[0]: e.split(":", 1)[-1].strip() for e in reversed(errors)}
    parts = [f"{n} {kind} (e.g. {example[kind]})" for kind, n in kinds.most_common()]
    if "outside root" in kinds:
        parts.append("pass --root with the folder that holds them")
    return f"{len(errors)} of {len(items)} {total_word} refused: " + "; ".join(parts)


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
