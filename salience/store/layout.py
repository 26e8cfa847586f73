"""Where things live in a run directory, and atomic writes.

Every file is written under a hidden temporary name in its final folder, flushed to disk and
renamed over the final name (``os.replace`` is atomic on POSIX), so a reader sees either
nothing or a complete file: never a half-written Parquet file ("No magic bytes found"). Each
write returns the file's :class:`Stamp` (size and CRC-32), which the writer records so that
damage done later (a truncated copy, a bad disk) is detected.
"""

from __future__ import annotations

import io
import json
import os
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from salience.errors import DamagedRunError, SalienceError

MANIFEST = "run.json"
SUMMARY = "summary.json"
LOCK = ".lock"
INDEX = "index.npz"
SAMPLES = "samples"
STATS = "stats"
MAPS = "maps"
PARTIAL = ".partial"
CHECKS = "checks"
SHORTCUTS = "shortcuts.json"  # salience shortcuts, inside the run
COMPARE = "compare.json"  # salience compare
ATTACK = "attack"  # what `salience attack --run RUN` writes (attack.json, examples)


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


def check_file(run: Path, shard: int) -> Path:
    """The shard's record of its files' sizes and checksums, written before its samples file."""
    return run / CHECKS / f"{part_name(shard)}.json"


def complete_shards(run: Path) -> list[int]:
    """Shards whose samples file exists: the samples file is written last, so these are done."""
    folder = run / SAMPLES
    if not folder.is_dir():
        return []
    found = (shard_of(e.name) for e in os.scandir(folder) if e.name.endswith(".parquet"))
    return sorted(s for s in found if s is not None)


class Stamp(NamedTuple):
    """What a file held when it was written: its size in bytes and its CRC-32."""

    size: int
    crc32: int


def stamp(data: bytes) -> Stamp:
    return Stamp(len(data), zlib.crc32(data))


class _Summing:
    """A binary file that keeps the size and CRC-32 of what is written through it."""

    def __init__(self, f: BinaryIO) -> None:
        self.f, self.size, self.crc = f, 0, 0

    def write(self, data: bytes) -> int:
        self.f.write(data)
        self.crc = zlib.crc32(data, self.crc)
        self.size += memoryview(data).nbytes
        return memoryview(data).nbytes


def atomic_write(path: Path, write: Callable[[BinaryIO], None]) -> Stamp:
    """Write ``path`` via ``write(file)`` to a temporary name, fsync, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            summing = _Summing(f)
            write(summing)  # type: ignore[arg-type]
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return Stamp(summing.size, summing.crc)


def write_bytes(path: Path, data: bytes) -> Stamp:
    def write(f: BinaryIO) -> None:
        f.write(data)

    return atomic_write(path, write)


def write_json(path: Path, payload: Any) -> Stamp:
    """Write ``payload`` as indented JSON (non-JSON values as ``str``), atomically."""
    return write_bytes(path, (json.dumps(payload, indent=2, default=str) + "\n").encode())


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf, compression="zstd")
    return buf.getvalue()


def write_parquet(path: Path, table: pa.Table) -> Stamp:
    return write_bytes(path, parquet_bytes(table))


def write_npy(path: Path, array: np.ndarray) -> Stamp:
    return atomic_write(path, lambda f: np.save(f, array, allow_pickle=False))


def read_json(
    path: Path, fix: str = "delete the folder and rerun the audit command"
) -> dict[str, Any]:
    """A run file's JSON object: :class:`SalienceError` when it is missing (no run),
    :class:`DamagedRunError` when it cannot be read (``fix`` says how to write it again)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SalienceError(
            f"{path.parent} is not a salience run (no {path.name}); create one with "
            "`salience audit --out DIR`"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DamagedRunError(f"run {path.parent}: {path.name} is damaged ({exc}); {fix}") from None
    if not isinstance(data, dict):
        raise DamagedRunError(
            f"run {path.parent}: {path.name} is damaged (not a JSON object); {fix}"
        )
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
