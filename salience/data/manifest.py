"""A CSV/TSV/Parquet manifest: one row per image.

Columns: ``path`` (or ``file``, ``filename``, ``image``), ``label`` (or ``class_name``,
``class``, ``category``), and optionally ``mask`` (a PNG of region indices), ``legend`` (JSON
such as ``{"1": "head", "2": "uniform"}``), ``boxes`` (JSON, see :func:`parse_boxes`) and
``split``. Every other column is metadata, kept as ``meta_<name>``. Paths are relative to the
manifest's folder, which is the data root. A mask's legend comes from the ``legend`` column,
else ``<mask stem>.json`` beside the mask, else ``regions.json`` in the root.
"""

from __future__ import annotations

import hashlib
import json
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

    Paths are relative to ``root`` (default: the manifest's folder); none may leave it.
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
    if root is None:
        root = path.parent
    elif not root.is_dir():
        raise SalienceError(f"data root {str(root)!r} is not a folder")
    root = root.resolve()
    default_legend = next(
        (load_legend_file(root / n) for n in LEGEND_NAMES if (root / n).is_file()), None
    )
    legends: dict[Legend, Legend] = {}  # one shared tuple per distinct legend
    items: list[Item] = []
    records: list[dict[str, Any]] = frame.to_dict("records")  # type: ignore[assignment]
    for n, row in enumerate(records, start=2 if path.suffix != ".parquet" else 1):
        items.append(
            _item(row, n, root, path_col, label_col, cols, meta_cols, default_legend, legends)
        )
    if not items:
        raise SalienceError(f"{path.name} has no rows")
    labels = sorted({i.label for i in items if i.label is not None})
    return Dataset(
        root=root,
        source=str(path),
        kind="manifest",
        items=items,
        labels=labels,
        source_sha256=hashlib.sha256(path.read_bytes()).hexdigest(),
    )


def _read_table(path: Path) -> pd.DataFrame:
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        sep = "\t" if suffix == ".tsv" else ","
        return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_values=[""])
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise SalienceError(f"cannot read manifest {path.name}: {exc}") from None


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


def _item(
    row: dict[str, Any],
    line: int,
    root: Path,
    path_col: str,
    label_col: str | None,
    cols: dict[str, str],
    meta_cols: list[str],
    default_legend: Legend | None,
    legends: dict[Legend, Legend],
) -> Item:
    meta = tuple((meta_name(c), _text(row[c])) for c in meta_cols)
    label = _text(row[label_col]) if label_col else None
    split = _text(row[cols["split"]]) if "split" in cols else None
    raw_path = _text(row[path_col])
    if raw_path is None:
        return Item(
            path="",
            label=label,
            split=split,
            meta=meta,
            error=f"missing path: manifest row {line} has no path",
        )
    rel, error = relative_to_root(root, raw_path)
    if error:
        return Item(path=rel, label=label, split=split, meta=meta, error=error)
    warnings: list[str] = []
    mask: str | None = None
    legend: Legend | None = None
    mask_text = _text(row[cols["mask"]]) if "mask" in cols else None
    if mask_text is not None:
        mask_rel, mask_error = relative_to_root(root, mask_text)
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
