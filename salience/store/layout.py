"""Where things live in a run directory, and atomic writes.

Every file is written under a hidden temporary name in its final folder, flushed to disk and
renamed over the final name (``os.replace`` is atomic on POSIX), so a reader sees either
nothing or a complete file: never a half-written Parquet file ("No magic bytes found").
"""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from salience.errors import SalienceError

MANIFEST = "run.json"
SUMMARY = "summary.json"
LOCK = ".lock"
INDEX = "index.npz"
SAMPLES = "samples"
STATS = "stats"
MAPS = "maps"
PARTIAL = ".partial"


def part_name(shard: int) -> str:
    return f"part-{shard:05d}"


def shard_of(name: str) -> int | None:
    """``"part-00012.parquet"`` -> 12; None for anything else (temporary files included)."""
    stem = name.split(".", 1)[0]
    if not name.startswith("part-") or not stem[5:].isdigit():
        return None
    return int(stem[5:])


def samples_file(run: Path, shard: int) -> Path:
    return run / SAMPLES / f"{part_name(shard)}.parquet"


def stats_file(run: Path, shard: int) -> Path:
    return run / STATS / f"{part_name(shard)}.parquet"


def map_file(run: Path, method: str, shard: int) -> Path:
    return run / MAPS / method / f"{part_name(shard)}.npy"


def complete_shards(run: Path) -> list[int]:
    """Shards whose samples file exists: the samples file is written last, so these are done."""
    folder = run / SAMPLES
    if not folder.is_dir():
        return []
    found = (shard_of(e.name) for e in os.scandir(folder) if e.name.endswith(".parquet"))
    return sorted(s for s in found if s is not None)


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Write ``path`` via ``write(file)`` to a temporary name, fsync, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_bytes(path: Path, data: bytes) -> None:
    def write(f: BinaryIO) -> None:
        f.write(data)

    atomic_write(path, write)


def write_json(path: Path, payload: Any) -> None:
    write_bytes(path, (json.dumps(payload, indent=2, default=str) + "\n").encode())


def write_parquet(path: Path, table: pa.Table) -> None:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    write_bytes(path, buf.getvalue())


def write_npy(path: Path, array: np.ndarray) -> None:
    atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SalienceError(
            f"{path.parent} is not a salience run (no {path.name}); create one with "
            "`salience audit --out DIR`"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise SalienceError(
            f"{path} is damaged ({exc}); rerun the audit into a new folder"
        ) from None
    if not isinstance(data, dict):
        raise SalienceError(f"{path} is not a run manifest (expected a JSON object)")
    return data


def remove_tree(path: Path) -> None:
    """Delete a folder we own (partial batches), files first; missing is fine."""
    if not path.exists():
        return
    for child in sorted(path.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if child.is_dir() and not child.is_symlink():
            child.rmdir()
        else:
            child.unlink()
    path.rmdir()
