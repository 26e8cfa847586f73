"""A CSV/TSV/Parquet manifest: one row per image.

Columns: ``path`` (or ``file``, ``filename``, ``image``), ``label`` (or ``class_name``,
``class``, ``category``), and optionally ``mask`` (a PNG of region indices), ``legend`` (JSON
such as ``{"1": "head", "2": "uniform"}``), ``boxes`` (JSON, see :func:`parse_boxes`) and
``split``. Every other column is metadata, kept as ``meta_<name>`` (names that normalise alike
get ``_2``, ``_3``... and a note). Relative paths are relative to the manifest's folder;
no path may leave the data root, which defaults to the common parent of the manifest's folder
(when a path is relative) and of the absolute paths. A mask's legend comes from the ``legend``
column, else ``<mask stem>.json`` beside the mask, else ``regions.json`` in the root.

A row repeating an earlier row's image is refused (``duplicate row``), and every row of an
image given two different labels is refused (``conflicting labels``): neither is counted twice.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd

from salience.data.dataset import (
    Boxes,
    Dataset,
    Item,
    Legend,
    load_legend_file,
    parse_legend,
    relative_to_root,
)
from salience.errors import SalienceError

PATH_COLUMNS = ("path", "file", "filename", "image", "image_path")
LABEL_COLUMNS = ("label", "class_name", "class", "category")
RESERVED = ("mask", "legend", "boxes", "split")
LEGEND_NAMES = ("regions.json", "legend.json")


def read_manifest(path: Path, root: Path | None = None) -> Dataset:
    """Items of a manifest, in row order; bad rows become items with an error or a warning.

    With ``root``, relative paths are relative to it; without, to the manifest's folder, and
    the root is :func:`default_root`. No path may leave the root.
    """
    path = path.resolve()
    frame = _read_table(path)
    cols = {c.lower().strip(): c for c in frame.columns}
    path_col = next((cols[c] for c in PATH_COLUMNS if c in cols), None)
    if path_col is None:
        raise SalienceError(
            f"{path.name} has no path column; name one of its columns {' or '.join(PATH_COLUMNS)}"
        )
    label_col = next((cols[c] for c in LABEL_COLUMNS if c in cols), None)
    used = {path_col, label_col, *(cols[c] for c in RESERVED if c in cols)}
    meta_cols = [c for c in frame.columns if c not in used]
    meta_keys, notes = meta_names(meta_cols)
    base: Path | None = None
    if root is None:
        base = path.parent
        root = default_root([_text(v) for v in frame[path_col]], base)
    elif not root.is_dir():
        raise SalienceError(f"data root {str(root)!r} is not a folder")
    root = root.resolve()
    default_legend = next(
        (load_legend_file(root / n) for n in LEGEND_NAMES if (root / n).is_file()), None
    )
    legends: dict[Legend, Legend] = {}  # one shared tuple per distinct legend
    items: list[Item] = []
    records: list[dict[str, Any]] = frame.to_dict("records")  # type: ignore[assignment]
    first = 1 if path.suffix.lower() in (".parquet", ".pq") else 2
    columns = _Columns(path_col, label_col, cols, list(zip(meta_keys, meta_cols, strict=True)))
    for n, row in enumerate(records, start=first):
        items.append(_item(row, n, root, base, columns, default_legend, legends))
    if not items:
        raise SalienceError(f"{path.name} has no rows")
    items = flag_repeats(items, first)
    labels = sorted({i.label for i in items if i.label is not None})
    return Dataset(
        root=root,
        source=str(path),
        kind="manifest",
        items=items,
        labels=labels,
        notes=notes,
        source_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
    )


def default_root(paths: list[str | None], folder: Path) -> Path:
    """The common parent of the absolute ``paths`` and, when some are relative (or none is
    absolute), of the manifest's ``folder``."""
    parents = {os.path.dirname(os.path.normpath(p)) for p in paths if p and os.path.isabs(p)}
    parents.discard("")
    if not parents or any(p and not os.path.isabs(p) for p in paths):
        parents.add(str(folder))
    try:
        return Path(os.path.commonpath(sorted(parents)))
    except ValueError:  # e.g. paths on different Windows drives
        return folder


def meta_names(columns: list[str]) -> tuple[list[str], list[str]]:
    """Storage names ``meta_<name>`` of metadata columns, made unique, and a note for each
    column renamed because its name normalises like an earlier one."""
    taken: dict[str, str] = {}
    names: list[str] = []
    notes: list[str] = []
    for column in columns:
        base = name = meta_name(column)
        k = 2
        while name in taken:
            name, k = f"{base}_{k}", k + 1
        if name != base:
            notes.append(
                f"metadata columns {taken[base]!r} and {column!r} both normalise to {base}; "
                f"{column!r} is stored as {name}"
            )
        taken[name] = str(column)
        names.append(name)
    return names, notes


def flag_repeats(items: list[Item], first: int) -> list[Item]:
    """Refuse a row repeating an earlier row's image, and every row of an image given
    different labels (row numbers counted from ``first``)."""
    rows: dict[str, list[int]] = {}
    for k, item in enumerate(items):
        if item.error is None:
            rows.setdefault(item.path, []).append(k)
    out = list(items)
    for rel, ks in rows.items():
        if len(ks) < 2:
            continue
        labels = {items[k].label for k in ks}
        if len(labels) > 1:
            shown = ", ".join(f"{items[k].label!r} (row {k + first})" for k in ks[:4])
            error = f"conflicting labels: {rel!r} is labelled {shown}; keep one row per image"
            for k in ks:
                out[k] = dataclasses.replace(items[k], error=error)
            continue
        for k in ks[1:]:
            error = f"duplicate row: row {k + first} repeats {rel!r} of row {ks[0] + first}"
            out[k] = dataclasses.replace(items[k], error=error)
    return out


def _read_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        sep = "\t" if suffix == ".tsv" else ","
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""])
    except UnicodeDecodeError as exc:
        raise SalienceError(
            f"cannot read manifest {path.name}: byte {exc.start} is not UTF-8; save it as UTF-8"
        ) from None
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        reason = " ".join(str(exc).split())
        raise SalienceError(f"cannot read manifest {path.name}: {reason}") from None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def meta_name(column: str) -> str:
    """``"Camera Model"`` -> ``"meta_camera_model"``."""
    return "meta_" + (re.sub(r"[^0-9a-zA-Z_]+", "_", str(column).strip()).strip("_").lower() or "x")


@dataclasses.dataclass(frozen=True)
class _Columns:
    path: str
    label: str | None
    lower: dict[str, str]  # lower-case name -> column
    meta: list[tuple[str, str]]  # (storage name, column)


def _item(
    row: dict[str, Any],
    line: int,
    root: Path,
    base: Path | None,
    columns: _Columns,
    default_legend: Legend | None,
    legends: dict[Legend, Legend],
) -> Item:
    cols = columns.lower
    meta = tuple((key, _text(row[c])) for key, c in columns.meta)
    label = _text(row[columns.label]) if columns.label else None
    split = _text(row[cols["split"]]) if "split" in cols else None
    raw_path = _text(row[columns.path])
    if raw_path is None:
        return Item(
            path="",
            label=label,
            split=split,
            meta=meta,
            error=f"missing path: manifest row {line} has no path",
        )
    rel, error = relative_to_root(root, raw_path, base)
    if error:
        return Item(path=rel, label=label, split=split, meta=meta, error=error)
    warnings: list[str] = []
    mask: str | None = None
    legend: Legend | None = None
    mask_text = _text(row[cols["mask"]]) if "mask" in cols else None
    if mask_text is not None:
        mask_rel, mask_error = relative_to_root(root, mask_text, base)
        legend_text = _text(row[cols["legend"]]) if "legend" in cols else None
        try:
            if mask_error:
                raise SalienceError(mask_error)
            legend = _legend_for(root, mask_rel, legend_text, line, default_legend)
            mask = mask_rel
        except SalienceError as exc:
            warnings.append(f"mask ignored: {exc}")
        legend = legends.setdefault(legend, legend) if legend is not None else None
    boxes: Boxes | None = None
    boxes_text = _text(row[cols["boxes"]]) if "boxes" in cols else None
    if boxes_text is not None:
        try:
            boxes = parse_boxes(boxes_text)
        except SalienceError as exc:
            warnings.append(f"boxes ignored: manifest row {line}: {exc}")
    return Item(
        path=rel,
        label=label,
        mask=mask,
        legend=legend,
        boxes=boxes,
        split=split,
        meta=meta,
        warning="; ".join(warnings) or None,
    )


def _legend_for(
    root: Path, mask_rel: str, legend_text: str | None, line: int, default: Legend | None
) -> Legend:
    if legend_text is not None:
        return parse_legend(legend_text, f"manifest row {line}")
    sidecar = (root / mask_rel).with_suffix(".json")
    if sidecar.is_file():
        return load_legend_file(sidecar)
    if default is None:
        raise SalienceError(
            f"manifest row {line}: mask {mask_rel} has no legend; add a legend column, "
            f"{Path(mask_rel).with_suffix('.json').name} or regions.json"
        )
    return default


def parse_boxes(text: str) -> Boxes:
    """Boxes as JSON, in image pixels ``[x0, y0, x1, y1]``, in one of three forms:
    ``[[x0,y0,x1,y1], ...]`` (region ``"box"``), ``[{"box": [...], "label": "head"}, ...]`` or
    ``{"head": [x0,y0,x1,y1] or [[...], ...], ...}``."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise SalienceError(f"boxes are not valid JSON ({exc.msg})") from None
    pairs: list[tuple[str, Any]] = []
    if isinstance(raw, dict):
        for name, value in raw.items():
            many = isinstance(value, list) and value and isinstance(value[0], list)
            pairs.extend((str(name), v) for v in (value if many else [value]))
    elif isinstance(raw, list):
        for entry in raw:
            if isinstance(entry, dict):
                pairs.append((str(entry.get("label", "box")), entry.get("box")))
            else:
                pairs.append(("box", entry))
    else:
        raise SalienceError("boxes must be a JSON list or object")
    out = []
    for name, box in pairs:
        if (
            not isinstance(box, list)
            or len(box) != 4
            or not all(isinstance(v, (int, float)) for v in box)
        ):
            raise SalienceError(f"box {box!r} is not [x0, y0, x1, y1]")
        x0, y0, x1, y1 = (float(v) for v in box)
        if x1 <= x0 or y1 <= y0:
            raise SalienceError(f"box {box!r} is empty (need x1 > x0 and y1 > y0)")
        out.append((name.strip() or "box", x0, y0, x1, y1))
    if not out:
        raise SalienceError("boxes list is empty")
    return tuple(out)


def read_class_names(path: Path) -> list[str]:
    """Class names in output order from a file: JSON (a list, or ``{"index": "name"}``), CSV
    (``class_name``/``name``/``label`` column, ordered by ``class_index``/``index`` when
    present, like ``imagenet_classes.csv``) or plain text, one name per line."""
    p = Path(path)
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise SalienceError(f"cannot read class names from {p}: {exc}") from None
    suffix = p.suffix.lower()
    if suffix == ".json":
        raw = json.loads(text)
        if isinstance(raw, dict):
            try:
                pairs = sorted((int(k), str(v)) for k, v in raw.items())
            except ValueError:
                raise SalienceError(f"{p.name}: keys must be class indices") from None
            if [k for k, _ in pairs] != list(range(len(pairs))):
                raise SalienceError(f"{p.name}: class indices must be 0..{len(pairs) - 1}")
            names = [v for _, v in pairs]
        elif isinstance(raw, list):
            names = [str(v) for v in raw]
        else:
            raise SalienceError(f"{p.name}: expected a JSON list of names or an index->name map")
    elif suffix in (".csv", ".tsv"):
        frame = pd.read_csv(p, sep="\t" if suffix == ".tsv" else ",", dtype=str)
        cols = {c.lower().strip(): c for c in frame.columns}
        name_col = next((cols[c] for c in ("class_name", "name", "label") if c in cols), None)
        if name_col is None:
            raise SalienceError(f"{p.name} needs a class_name (or name) column")
        order = next((cols[c] for c in ("class_index", "index") if c in cols), None)
        if order is not None:
            frame = frame.assign(_i=frame[order].astype(int)).sort_values("_i")
        names = [str(v).strip() for v in frame[name_col]]
    else:
        names = [line.strip() for line in text.splitlines() if line.strip()]
    if not names:
        raise SalienceError(f"{p.name} lists no class names")
    return names
