"""Reading a run: DuckDB over the Parquet shards, memory-mapped maps, nothing loaded whole.

Each query sees a snapshot of the shards complete at that moment, so a run can be read while
an audit is still writing it. Derived tables (confusion matrix, per-class metrics) are always
computed by a query from the samples, never stored.
"""

from __future__ import annotations

import json
import os
import threading
import zipfile
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import numpy as np
import pandas as pd

from salience.errors import DamagedRunError, SalienceError
from salience.store.filters import SampleFilter, quote, where_clause
from salience.store.layout import (
    INDEX,
    MANIFEST,
    SHORTCUTS,
    complete_shards,
    map_file,
    read_json,
    samples_file,
    stats_file,
)
from salience.store.lock import is_locked
from salience.store.manifest import Manifest
from salience.store.verify import check_shards, damaged, find_damage, map_problem
from salience.store.writer import samples_schema, stats_schema

if TYPE_CHECKING:
    from PIL import Image

    from salience.models.preprocess import Preprocess

_OPEN_MAPS = 128  # memory-mapped map files kept open
DEFAULT_METHOD = "gradcam"  # the method a reader shows when none is asked for


def _read_index(path: Path) -> dict[str, np.ndarray] | None:
    """``index.npz``, or None if it cannot be read (it is derived: the shards are scanned)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            found = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    return found if {"ids", "shard", "row", "path", "shards"} <= set(found) else None


def _files(paths: Sequence[Path]) -> str:
    return "[" + ", ".join("'" + str(p).replace("'", "''") + "'" for p in paths) + "]"


class Run:
    """A run directory written by ``salience audit`` (see DESIGN.md, "Run directory")."""

    def __init__(self, path: Path, manifest: dict[str, Any]) -> None:
        self.path = path
        self._manifest = manifest
        self._info = Manifest.from_json(manifest, str(path / MANIFEST))
        self._manifest_mtime = (path / MANIFEST).stat().st_mtime_ns
        self._db = duckdb.connect()
        self._db.execute("SET parquet_metadata_cache = true")
        self._lock = threading.Lock()
        self._index: dict[str, tuple[int, int, str]] = {}
        self._indexed: set[int] = set()
        self._sorted: dict[str, np.ndarray] | None = None  # from index.npz, if any
        self._maps: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Run:
        """Open the run at ``path``; :class:`SalienceError` if it is not one,
        :class:`DamagedRunError` if its manifest or the size of a stored table is wrong."""
        p = Path(path).expanduser()
        if not p.is_dir():
            raise SalienceError(f"run folder {str(p)!r} does not exist")
        manifest = read_json(p / MANIFEST)
        Manifest.from_json(manifest, str(p / MANIFEST))  # not a run manifest: one line
        p = p.resolve()
        check_shards(p, complete_shards(p), (), deep=False)  # maps: when first read
        return cls(p, manifest)

    def verify(self) -> None:
        """Compare every stored file with the size and checksum recorded when it was written
        (reads the whole run); :class:`DamagedRunError` names the first damaged file."""
        check_shards(self.path, complete_shards(self.path), self.methods, deep=True)

    def _damage(self, exc: duckdb.Error) -> Exception:
        """A failed read -> :class:`DamagedRunError` naming the damaged file, if one is."""
        problem = find_damage(self.path, complete_shards(self.path), self.methods)
        return exc if problem is None else damaged(self.path, problem)

    def __repr__(self) -> str:
        return f"Run({str(self.path)!r}, status={self.status!r}, samples={self.count()})"

    # -- manifest ----------------------------------------------------------------------------
    @property
    def manifest(self) -> dict[str, Any]:
        """``run.json`` as it stands on disk (the JSON object), re-read when the writer has
        updated it: for looking at a run's record as written (scripts, tests). Library code
        reads :attr:`info`, the same typed, which gives the defaults of older runs."""
        self._refresh()
        return self._manifest

    @property
    def info(self) -> Manifest:
        """``run.json``, typed (:class:`~salience.store.manifest.Manifest`)."""
        self._refresh()
        return self._info

    def _refresh(self) -> None:
        try:
            mtime = (self.path / MANIFEST).stat().st_mtime_ns
        except FileNotFoundError:
            return
        if mtime != self._manifest_mtime:
            raw = read_json(self.path / MANIFEST)
            info = Manifest.from_json(raw, str(self.path / MANIFEST))
            self._manifest, self._info, self._manifest_mtime = raw, info, mtime

    @property
    def class_names(self) -> list[str]:
        return list(self.info.class_names)

    @property
    def methods(self) -> list[str]:
        return list(self.info.methods)

    def method(self, preferred: str | None = None) -> str:
        """The method a reader shows: ``preferred`` when the run has its maps; by default
        ``gradcam`` when the run has it, else the run's first method (one rule for the
        explorer, ``salience shortcuts`` and ``salience compare``)."""
        if preferred is not None:
            if preferred not in self.methods:
                has = ", ".join(self.methods) or "none"
                raise SalienceError(f"the run has no {preferred!r} maps; it has: {has}")
            return preferred
        if not self.methods:
            raise SalienceError("the run has no saliency maps; audit it with --method")
        return DEFAULT_METHOD if DEFAULT_METHOD in self.methods else self.methods[0]

    def signed(self, method: str) -> bool:
        """Whether ``method``'s maps are signed, as ``run.json`` records it (for runs audited
        before it was recorded: as the installed registry says; False for an unknown name)."""
        kind = self.info.method_kinds.get(method)
        if kind is not None:
            return kind.signed
        from salience.methods import method_info

        try:
            return bool(method_info(method).signed)
        except SalienceError:
            return False

    def shortcuts(self) -> list[dict[str, Any]] | None:
        """The classes of ``salience shortcuts``'s findings (``shortcuts.json``), None when
        there are none; :class:`DamagedRunError` when the file cannot be read."""
        path = self.path / SHORTCUTS
        if not path.is_file():
            return None
        classes = read_json(path, fix="rerun `salience shortcuts`").get("classes", [])
        if not isinstance(classes, list):
            raise DamagedRunError(
                f"run {self.path}: {SHORTCUTS} is damaged (classes is not a list); rerun "
                "`salience shortcuts`"
            )
        return [c for c in classes if isinstance(c, dict) and "class" in c]

    @property
    def regions(self) -> list[str]:
        return list(self.info.regions)

    @property
    def region_legend(self) -> dict[int, str]:
        """Index in :meth:`mask` -> region name (0 is background)."""
        return dict(enumerate(self.regions))

    @property
    def region_columns(self) -> dict[str, str]:
        """Region name -> the suffix of its ``share_``/``density_`` statistic columns."""
        return dict(self.info.region_columns)

    @property
    def status(self) -> str:
        return self.info.status

    @property
    def is_live(self) -> bool:
        """Whether an audit process is writing this run right now."""
        return is_locked(self.path)

    @property
    def data_root(self) -> Path:
        root = self.info.recorded_data.root
        if root is None:
            raise DamagedRunError(
                f"{self.path / MANIFEST}: records no data root; rerun the audit command"
            )
        return Path(root)

    @property
    def map_size(self) -> tuple[int, int]:
        h, w = self.info.map_size
        return int(h), int(w)

    # -- SQL ---------------------------------------------------------------------------------
    def _cursor(self) -> duckdb.DuckDBPyConnection:
        """A cursor with views ``samples`` and ``stats`` over the shards complete right now."""
        try:
            return self._views()
        except duckdb.Error as exc:
            raise self._damage(exc) from None

    def _views(self) -> duckdb.DuckDBPyConnection:
        shards = complete_shards(self.path)
        with self._lock:
            cur = self._db.cursor()
        if shards:
            sample_files = _files([samples_file(self.path, s) for s in shards])
            stat_files = _files([stats_file(self.path, s) for s in shards])
            cur.execute(
                f"CREATE OR REPLACE TEMP VIEW samples AS SELECT * FROM read_parquet({sample_files})"
            )
            cur.execute(
                f"CREATE OR REPLACE TEMP VIEW stats AS SELECT * FROM read_parquet({stat_files})"
            )
        else:
            m = self.info
            cur.register("samples", samples_schema(m.meta_columns).empty_table())
            schema = stats_schema(m.stat_columns, bool(m.regions))
            cur.register("stats", schema.empty_table())
        return cur

    def sql(self, query: str, params: Sequence[Any] | None = None) -> pd.DataFrame:
        """Run a read-only SQL query over the views ``samples`` and ``stats``."""
        cur = self._cursor()
        try:
            return cur.execute(query, list(params or [])).df()
        except duckdb.Error as exc:
            raise self._damage(exc) from None
        finally:
            cur.close()

    def sample_columns(self) -> list[str]:
        return samples_schema(self.info.meta_columns).names

    def stat_columns(self) -> list[str]:
        """Per-map statistic columns (numeric, plus ``si_pattern`` with masks)."""
        cols = list(self.info.stat_columns)
        return [*cols, "si_pattern"] if self.regions else cols

    def count(self) -> int:
        return int(self.sql("SELECT count(*) AS n FROM samples")["n"].iloc[0])

    # -- tables ------------------------------------------------------------------------------
    def samples(self, columns: Sequence[str] | None = None) -> pd.DataFrame:
        """One row per image, in dataset order (DESIGN.md lists the columns)."""
        known = self.sample_columns()
        cols = list(columns) if columns is not None else known
        unknown = [c for c in cols if c not in known]
        if unknown:
            raise SalienceError(f"unknown sample column(s) {', '.join(unknown)}; known: {known}")
        select = ", ".join(quote(c) for c in cols)
        return self.sql(f"SELECT {select} FROM samples ORDER BY shard, row")

    def stats(self, method: str) -> pd.DataFrame:
        """``sample_id`` plus the statistics of ``method``'s map, in dataset order."""
        self._check_method(method)
        cols = ", ".join(quote(c) for c in ["sample_id", *self.stat_columns(), "error"])
        return self.sql(f"SELECT {cols} FROM stats WHERE method = ? ORDER BY shard, row", [method])

    def _counts(self) -> pd.DataFrame:
        return self.sql(
            "SELECT label_index, pred_index, count(*) AS n FROM samples WHERE error IS NULL "
            "AND label_index IS NOT NULL AND pred_index IS NOT NULL GROUP BY ALL"
        )

    def _name(self, index: int) -> str:
        names = self.info.class_names
        return str(names[index]) if 0 <= index < len(names) else f"class {index}"

    def confusion_matrix(self, normalize: bool = False) -> pd.DataFrame:
        """Counts with true classes as rows and predicted classes as columns (names), over the
        classes that occur; ``normalize=True`` divides each row by its total (recall)."""
        counts = self._counts()
        classes = sorted(set(counts["label_index"]) | set(counts["pred_index"]))
        names = [self._name(int(c)) for c in classes]
        pos = {c: i for i, c in enumerate(classes)}
        matrix = np.zeros((len(classes), len(classes)), dtype=np.int64)
        for t, p, n in counts.itertuples(index=False):
            matrix[pos[t], pos[p]] += int(n)
        frame = pd.DataFrame(
            matrix, index=pd.Index(names, name="true"), columns=pd.Index(names, name="pred")
        )
        if normalize:
            totals = matrix.sum(1, keepdims=True)
            frame = pd.DataFrame(
                np.divide(matrix, np.maximum(totals, 1)), index=frame.index, columns=frame.columns
            )
        return frame

    def class_metrics(self) -> pd.DataFrame:
        """Per class: precision, recall, F1, support (true count) and predicted count."""
        df = self.sql(
            """
            WITH s AS (SELECT label_index AS t, pred_index AS p FROM samples
                       WHERE error IS NULL AND label_index IS NOT NULL AND pred_index IS NOT NULL),
                 sup AS (SELECT t AS k, count(*) AS support, count(*) FILTER (WHERE p = t) AS tp
                         FROM s GROUP BY t),
                 prd AS (SELECT p AS k, count(*) AS predicted FROM s GROUP BY p)
            SELECT coalesce(sup.k, prd.k) AS class_index, coalesce(tp, 0) AS tp,
                   coalesce(support, 0) AS support, coalesce(predicted, 0) AS predicted
            FROM sup FULL OUTER JOIN prd ON sup.k = prd.k ORDER BY class_index
            """
        )
        tp = df["tp"].to_numpy(float)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(df["predicted"] > 0, tp / df["predicted"].to_numpy(float), np.nan)
            recall = np.where(df["support"] > 0, tp / df["support"].to_numpy(float), np.nan)
            f1 = np.where(
                precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0
            )
        f1 = np.where(np.isnan(precision) | np.isnan(recall), np.nan, f1)
        return pd.DataFrame(
            {
                "class": [self._name(int(k)) for k in df["class_index"]],
                "class_index": df["class_index"].astype("int64"),
                "precision": precision,
                "recall": recall,
                "f1": f1,
                "support": df["support"].astype("int64"),
                "predicted": df["predicted"].astype("int64"),
            }
        )

    def query(
        self,
        filters: SampleFilter | None = None,
        method: str | None = None,
        sort: str | None = None,
        descending: bool = False,
        offset: int = 0,
        limit: int = 50,
    ) -> tuple[pd.DataFrame, int]:
        """One page of samples (joined with ``method``'s statistics) and the total count.

        The statistics' own error column is returned as ``map_error``.
        """
        sample_cols = self.sample_columns()
        from_sql, select = "samples s", "s.*"
        if method is not None:
            self._check_method(method)
            stat_cols = [*self.stat_columns()]
            select += ", " + ", ".join(f"st.{quote(c)}" for c in stat_cols)
            select += ", st.error AS map_error"
            from_sql += " LEFT JOIN stats st ON st.sample_id = s.sample_id AND st.method = ?"
        else:
            stat_cols = []
        where, params = where_clause(
            filters, sample_cols, self.region_columns, "st" if method else None
        )
        head = [method] if method is not None else []
        order = "s.shard, s.row"
        if sort is not None:
            if sort in sample_cols:
                key = f"s.{quote(sort)}"
            elif sort in stat_cols or (sort == "map_error" and method):
                key = f"st.{quote('error' if sort == 'map_error' else sort)}"
            else:
                hint = "" if method else " (statistics need method=)"
                raise SalienceError(f"cannot sort by {sort!r}: not a column{hint}")
            order = f"{key} {'DESC' if descending else 'ASC'} NULLS LAST, {order}"
        cur = self._cursor()
        try:
            total = cur.execute(
                f"SELECT count(*) FROM {from_sql} WHERE {where}", head + params
            ).fetchone()
            page = cur.execute(
                f"SELECT {select} FROM {from_sql} WHERE {where} ORDER BY {order} LIMIT ? OFFSET ?",
                [*head, *params, int(limit), int(offset)],
            ).df()
        except duckdb.Error as exc:
            raise self._damage(exc) from None
        finally:
            cur.close()
        return page, int(total[0]) if total else 0

    # -- maps --------------------------------------------------------------------------------
    def _check_method(self, method: str) -> None:
        if method not in self.info.methods:
            raise SalienceError(
                f"this run has no maps for method {method!r}; it has: {', '.join(self.methods)}"
            )

    def _locate(self, sample_id: str) -> tuple[int, int, str]:
        """``(shard, row, path)`` of a sample: from ``index.npz`` (written when the audit
        finishes) plus a scan of only the shards it does not cover."""
        with self._lock:
            if self._sorted is None and (self.path / INDEX).exists():
                self._sorted = _read_index(self.path / INDEX)
                if self._sorted is not None:
                    self._indexed.update(int(s) for s in self._sorted["shards"])
            hit = self._index.get(sample_id) or self._search(sample_id)
            if hit is None:
                new = [s for s in complete_shards(self.path) if s not in self._indexed]
                if new:
                    cur = self._db.cursor()
                    try:
                        cols = cur.execute(
                            "SELECT sample_id, shard, row, path FROM read_parquet("
                            f"{_files([samples_file(self.path, s) for s in new])})"
                        ).fetchnumpy()
                    except duckdb.Error as exc:
                        raise self._damage(exc) from None
                    finally:
                        cur.close()
                    places = zip(
                        cols["shard"].tolist(),
                        cols["row"].tolist(),
                        cols["path"].tolist(),
                        strict=True,
                    )
                    ids = [str(x) for x in cols["sample_id"].tolist()]
                    self._index.update(zip(ids, places, strict=True))
                    self._indexed.update(new)
                hit = self._index.get(sample_id)
        if hit is None:
            raise SalienceError(f"no sample {sample_id!r} in this run")
        return hit

    def _search(self, sample_id: str) -> tuple[int, int, str] | None:
        if self._sorted is None:
            return None
        ids, key = self._sorted["ids"], sample_id.encode()
        k = int(np.searchsorted(ids, key))
        if k >= len(ids) or ids[k] != key:
            return None
        z = self._sorted
        return int(z["shard"][k]), int(z["row"][k]), bytes(z["path"][k]).decode()

    def _map_array(self, method: str, shard: int) -> np.ndarray:
        key = (method, shard)
        with self._lock:
            arr = self._maps.get(key)
            if arr is not None:
                self._maps.move_to_end(key)
                return arr
        path = map_file(self.path, method, shard)
        problem = map_problem(self.path, method, shard)
        if problem is not None:
            raise damaged(self.path, problem)
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            where = f"{method} map shard {shard} ({path.relative_to(self.path)})"
            state = "missing" if isinstance(exc, FileNotFoundError) else "truncated or corrupt"
            raise damaged(self.path, f"{where} is {state}") from None
        with self._lock:
            self._maps[key] = arr
            while len(self._maps) > _OPEN_MAPS:
                self._maps.popitem(last=False)
        return arr

    def saliency(self, sample_id: str, method: str) -> np.ndarray:
        """The stored map ``[h, w]`` (float32, at the run's map size) of one image."""
        self._check_method(method)
        shard, row, _ = self._locate(sample_id)
        out = np.array(self._map_array(method, shard)[row], dtype=np.float32)
        if np.isnan(out).all():
            raise SalienceError(
                f"sample {sample_id!r} has no {method} map; its error says why "
                "(Run.samples() error column, Run.stats() error column)"
            )
        return out

    def saliencies(self, sample_ids: Sequence[str], method: str) -> np.ndarray:
        """Maps ``[n, h, w]`` float32 of several images (NaN for images without a map)."""
        self._check_method(method)
        h, w = self.map_size
        out = np.full((len(sample_ids), h, w), np.nan, dtype=np.float32)
        for i, sid in enumerate(sample_ids):
            shard, row, _ = self._locate(sid)
            out[i] = self._map_array(method, shard)[row]
        return out

    def mean_saliency(self, method: str, filters: SampleFilter | None = None) -> np.ndarray:
        """The mean map ``[h, w]`` over the images selected by ``filters`` that have one."""
        self._check_method(method)
        where, params = where_clause(filters, self.sample_columns(), self.region_columns, "st")
        rows = self.sql(
            "SELECT s.shard, s.row FROM samples s LEFT JOIN stats st ON st.sample_id = "
            f"s.sample_id AND st.method = ? WHERE {where} ORDER BY s.shard, s.row",
            [method, *params],
        )
        total = np.zeros(self.map_size, dtype=np.float64)
        count = 0
        for shard in rows["shard"].unique().tolist():
            group = rows[rows["shard"] == shard]
            maps = self._map_array(method, int(shard))[np.sort(group["row"].to_numpy())]
            good = ~np.isnan(maps).all(axis=(1, 2))
            total += maps[good].astype(np.float64).sum(0)
            count += int(good.sum())
        if count == 0:
            raise SalienceError(f"no image with a {method} map matches the filter")
        return (total / count).astype(np.float32)

    # -- images and masks --------------------------------------------------------------------
    def image_path(self, sample_id: str) -> Path:
        """Absolute path of the image; refuses a path that resolves outside the data root."""
        _, _, rel = self._locate(sample_id)
        root = self.data_root.resolve()
        full = (root / rel).resolve()
        if not full.is_relative_to(root):
            raise SalienceError(f"sample {sample_id!r} points outside the data root; refused")
        return full

    def mask(self, sample_id: str) -> np.ndarray | None:
        """Region indices ``[H, W]`` at the image's size (see :attr:`region_legend`), or None."""
        from salience.data.manifest import parse_boxes
        from salience.data.masks import boxes_mask, read_mask, remap

        row = self.sql(
            "SELECT mask, legend, boxes, width, height FROM samples WHERE sample_id = ?",
            [sample_id],
        )
        if row.empty:
            raise SalienceError(f"no sample {sample_id!r} in this run")
        mask, legend, boxes, width, height = (row[c].iloc[0] for c in row.columns)
        index = {name: i for i, name in enumerate(self.regions)}
        root = self.data_root.resolve()
        if isinstance(mask, str):
            path = (root / mask).resolve()
            if not path.is_relative_to(root):
                raise SalienceError(f"the mask of {sample_id!r} is outside the data root; refused")
            pairs = tuple((int(k), v) for k, v in json.loads(legend).items())
            return remap(read_mask(path), pairs, index)[0]
        if isinstance(boxes, str) and not pd.isna(width):
            return boxes_mask(parse_boxes(boxes), (int(width), int(height)), index)
        return None

    def view_image(self, sample_id: str) -> Image.Image:
        """The image as the model saw it (resized and cropped, not normalised): the picture
        the stored maps lie on. Needs the run's preprocessing to be a recorded ``Preprocess``."""
        from salience.images import load_image

        img = load_image(self.image_path(sample_id))
        preprocess = self.preprocess()
        return img if preprocess is None else preprocess.view(img)

    def preprocess(self, interpolation: str | None = None) -> Preprocess | None:
        """The preprocessing ``run.json`` records (None when it records none), with
        ``interpolation`` instead of the recorded one when given."""
        from salience.models.preprocess import Preprocess

        fields = self.info.preprocess_fields
        if fields is None:
            return None
        if interpolation is not None:
            fields["interpolation"] = interpolation
        try:
            return Preprocess(**fields)
        except (TypeError, ValueError) as exc:
            raise DamagedRunError(
                f"{self.path / MANIFEST}: its preprocessing cannot be read ({exc}); rerun the "
                "audit command"
            ) from None
