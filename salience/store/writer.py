"""Writing a run: shards of samples, statistics and maps, each file atomic.

A shard is a fixed range of the dataset's items. Its files are written in the order maps ->
statistics -> checksum record (``checks/``) -> samples, so the presence of
``samples/part-NNNNN.parquet`` means the whole shard, and the record of what it holds, is on
disk. While a shard fills up, each finished batch is saved under ``.partial/`` (one
atomic ``.npz`` per batch), so a killed audit loses at most the batch in flight; readers never
look there.
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from salience.store.layout import (
    INDEX,
    PARTIAL,
    Stamp,
    check_file,
    complete_shards,
    map_file,
    parquet_bytes,
    part_name,
    remove_tree,
    samples_file,
    stamp,
    stats_file,
    write_bytes,
    write_json,
    write_npy,
    write_parquet,
)
from salience.store.verify import record_of

Columns = dict[str, list[Any]]

SAMPLE_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("sample_id", pa.string()),
    ("path", pa.string()),
    ("label", pa.string()),
    ("label_index", pa.int32()),
    ("pred", pa.string()),
    ("pred_index", pa.int32()),
    ("confidence", pa.float64()),
    ("correct", pa.bool_()),
    ("loss", pa.float64()),
    ("topk_index", pa.list_(pa.int32())),
    ("topk_prob", pa.list_(pa.float64())),
    ("split", pa.string()),
    ("mask", pa.string()),
    ("legend", pa.string()),
    ("boxes", pa.string()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("error", pa.string()),
    ("warning", pa.string()),
    ("shard", pa.int32()),
    ("row", pa.int32()),
)


def samples_schema(meta_columns: Sequence[str]) -> pa.Schema:
    return pa.schema([*SAMPLE_FIELDS, *((m, pa.string()) for m in meta_columns)])


def stats_schema(stat_columns: Sequence[str], pattern: bool) -> pa.Schema:
    """Statistics table: keys, the numeric statistics, ``si_pattern`` (with masks), error."""
    fields = [
        ("sample_id", pa.string()),
        ("method", pa.string()),
        ("shard", pa.int32()),
        ("row", pa.int32()),
    ]
    fields += [(c, pa.float64()) for c in stat_columns]
    if pattern:
        fields.append(("si_pattern", pa.string()))
    fields.append(("error", pa.string()))
    return pa.schema(fields)


def to_table(columns: Columns, schema: pa.Schema) -> pa.Table:
    """Columns (lists; NaN means missing) -> a table with exactly ``schema``."""
    n = len(next(iter(columns.values()))) if columns else 0
    arrays = []
    for f in schema:
        values = columns.get(f.name, [None] * n)
        arrays.append(pa.array(values, type=f.type, from_pandas=True))
    return pa.Table.from_arrays(arrays, schema=schema)


class ShardWriter:
    """Writes complete shards and the per-batch partial results that precede them."""

    def __init__(
        self, run: Path, meta_columns: Sequence[str], stat_columns: Sequence[str], pattern: bool
    ) -> None:
        self.run = Path(run)
        self.samples_schema = samples_schema(meta_columns)
        self.stats_schema = stats_schema(stat_columns, pattern)

    # -- complete shards ---------------------------------------------------------------------
    def write_shard(
        self, shard: int, samples: Columns, stats: dict[str, Columns], maps: dict[str, np.ndarray]
    ) -> None:
        """Write one shard: maps, statistics, their record, then samples (the completion mark)."""
        stamps: dict[Path, Stamp] = {}
        for method, array in maps.items():
            path = map_file(self.run, method, shard)
            stamps[path] = write_npy(path, np.ascontiguousarray(array, np.float16))
        merged: Columns = {}
        for method, cols in stats.items():
            n = len(cols["sample_id"])
            cols = {**cols, "method": [method] * n}
            for key in {f.name for f in self.stats_schema}:
                merged.setdefault(key, []).extend(cols.get(key, [None] * n))
        path = stats_file(self.run, shard)
        stamps[path] = write_parquet(path, to_table(merged, self.stats_schema))
        data = parquet_bytes(to_table(samples, self.samples_schema))
        stamps[samples_file(self.run, shard)] = stamp(data)
        write_json(check_file(self.run, shard), record_of(self.run, stamps))
        write_bytes(samples_file(self.run, shard), data)
        remove_tree(self._partial_dir(shard))

    def write_index(self) -> None:
        """:func:`write_index` of this run."""
        write_index(self.run)

    # -- partial batches ---------------------------------------------------------------------
    def _partial_dir(self, shard: int) -> Path:
        return self.run / PARTIAL / part_name(shard)

    def save_batch(
        self,
        shard: int,
        start: int,
        stop: int,
        samples: Columns,
        stats: dict[str, Columns],
        maps: dict[str, np.ndarray],
    ) -> None:
        """Keep one finished batch (items ``start:stop`` of the shard) until its shard is
        written. JSON keeps every float exactly (shortest round-trip repr)."""
        text = json.dumps({"samples": samples, "stats": stats}, allow_nan=True)
        arrays: dict[str, np.ndarray] = {
            f"map_{m}": np.asarray(a, np.float16) for m, a in maps.items()
        }
        buf = io.BytesIO()
        arrays["rows"] = np.frombuffer(text.encode(), dtype=np.uint8)
        np.savez(buf, **arrays)  # type: ignore[arg-type]
        write_bytes(self._partial_dir(shard) / f"batch-{start:07d}-{stop:07d}.npz", buf.getvalue())

    def load_batches(
        self, shard: int
    ) -> dict[tuple[int, int], tuple[Columns, dict[str, Columns], dict[str, np.ndarray]]]:
        """Saved batches of ``shard`` keyed by ``(start, stop)``; unreadable ones are dropped
        (they are recomputed)."""
        folder = self._partial_dir(shard)
        out: dict[tuple[int, int], tuple[Columns, dict[str, Columns], dict[str, np.ndarray]]] = {}
        if not folder.is_dir():
            return out
        for path in sorted(folder.glob("batch-*.npz")):
            try:
                _, a, b = path.stem.split("-")
                with np.load(path, allow_pickle=False) as z:
                    payload = json.loads(z["rows"].tobytes().decode())
                    maps = {k[4:]: z[k] for k in z.files if k.startswith("map_")}
            except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile):
                path.unlink(missing_ok=True)
                continue
            out[(int(a), int(b))] = (payload["samples"], payload["stats"], maps)
        return out


def discard_shard(run: Path, shard: int, methods: Sequence[str]) -> None:
    """Remove a (damaged) shard of ``run`` so that it is computed again: samples file first,
    so that it stops counting as complete before anything else goes."""
    samples_file(run, shard).unlink(missing_ok=True)
    for method in methods:
        map_file(run, method, shard).unlink(missing_ok=True)
    stats_file(run, shard).unlink(missing_ok=True)
    check_file(run, shard).unlink(missing_ok=True)


def write_index(run: Path) -> None:
    """``index.npz``: the sample ids of the shards complete now, sorted, with their shard,
    row and path, so that a reader finds one image without scanning every shard. Derived
    from the samples files (which stay the truth) and rewritten, never appended."""
    shards = complete_shards(run)
    cols = ["sample_id", "shard", "row", "path"]
    parts = [pq.read_table(samples_file(run, s), columns=cols) for s in shards]
    empty = pa.schema([samples_schema(()).field(c) for c in cols]).empty_table()
    table = pa.concat_tables(parts) if parts else empty
    ids = np.array([i.encode() for i in table.column("sample_id").to_pylist()], dtype="S")
    order = np.argsort(ids, kind="stable")
    paths = [p.encode() for p in table.column("path").to_pylist()]
    buf = io.BytesIO()
    np.savez(
        buf,
        ids=ids[order],
        shard=table.column("shard").to_numpy().astype(np.int32)[order],
        row=table.column("row").to_numpy().astype(np.int32)[order],
        path=np.array(paths, dtype="S")[order],
        shards=np.array(shards, dtype=np.int64),
    )
    write_bytes(run / INDEX, buf.getvalue())
