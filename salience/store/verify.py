"""Is a run's data still what was written? File sizes (cheap: the tables on open, a map file
when it is first read) and checksums (on resume and in :meth:`salience.store.Run.verify`),
against the record each shard keeps in ``checks/``.

Shards written before records existed are checked by structure instead: their Parquet files
must read and their map files must map.
"""

from __future__ import annotations

import json
import os
import zlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from salience.errors import DamagedRunError
from salience.store.layout import Stamp, check_file, map_file, samples_file, stats_file

_CHUNK = 8 * 2**20


def shard_files(run: Path, shard: int, methods: Iterable[str]) -> dict[str, Path]:
    """What each file of a shard is called in messages -> its path."""
    files = {"samples": samples_file(run, shard), "statistics": stats_file(run, shard)}
    files.update({f"{m} map": map_file(run, m, shard) for m in methods})
    return files


def damaged(run: Path, problem: str) -> DamagedRunError:
    """The one-line error for a damaged file of ``run``."""
    return DamagedRunError(f"run {run}: {problem}; rerun the audit command to recompute it")


def record_of(run: Path, stamps: dict[Path, Stamp]) -> dict[str, dict[str, list[int]]]:
    """A shard's record as stored in ``checks/``: file (relative to the run) -> size, CRC."""
    return {"files": {str(p.relative_to(run)): [s.size, s.crc32] for p, s in stamps.items()}}


def _record(run: Path, shard: int) -> dict[str, Stamp] | None:
    """The shard's record; None if it has none; ValueError if it is unreadable."""
    try:
        raw = json.loads(check_file(run, shard).read_bytes())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(str(exc)) from None
    try:
        return {k: Stamp(int(v[0]), int(v[1])) for k, v in raw["files"].items()}
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise ValueError(f"bad record: {exc}") from None


def _crc32(path: Path) -> int:
    crc = 0
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            crc = zlib.crc32(chunk, crc)
    return crc


def _readable(path: Path) -> bool:
    """Structure check of a file without a record."""
    try:
        if path.suffix == ".npy":
            np.load(path, mmap_mode="r", allow_pickle=False)
        else:
            pq.read_table(path)
    except Exception:  # pyarrow and numpy raise many types for a damaged file
        return False
    return True


def shard_problem(run: Path, shard: int, methods: Iterable[str], deep: bool) -> str | None:
    """What is wrong with a complete shard (one phrase naming the file), or None. ``deep``
    also compares checksums (reads every byte); otherwise only sizes are compared. With no
    ``methods`` only the shard's tables are checked."""
    try:
        record = _record(run, shard)
    except ValueError as exc:
        record_path = check_file(run, shard).relative_to(run)
        return f"the checksum record of shard {shard} ({record_path}) is damaged ({exc})"
    for label, path in shard_files(run, shard, methods).items():
        problem = _file_problem(run, shard, record, label, path, deep)
        if problem is not None:
            return problem
    return None


def map_problem(run: Path, method: str, shard: int) -> str | None:
    """What is wrong with the size of one map file of a complete shard, or None."""
    try:
        record = _record(run, shard)
    except ValueError:
        return shard_problem(run, shard, (), deep=False)
    path = shard_files(run, shard, [method])[f"{method} map"]
    return _file_problem(run, shard, record, f"{method} map", path, deep=False)


def _file_problem(
    run: Path, shard: int, record: dict[str, Stamp] | None, label: str, path: Path, deep: bool
) -> str | None:
    rel = str(path)[len(str(run)) + 1 :]
    where = f"{label} shard {shard} ({rel})"
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        return f"{where} is missing"
    expected = None if record is None else record.get(rel)
    if expected is None:
        if deep and not _readable(path):
            return f"{where} is truncated or corrupt"
        return None
    if size != expected.size:
        return f"{where} is truncated or corrupt ({size} bytes, {expected.size} written)"
    if deep and _crc32(path) != expected.crc32:
        return f"{where} is corrupt (its checksum differs from the one written)"
    return None


def check_shards(run: Path, shards: Sequence[int], methods: Iterable[str], deep: bool) -> None:
    """Raise :class:`DamagedRunError` for the first damaged shard among ``shards``."""
    names = list(methods)
    for shard in shards:
        problem = shard_problem(run, shard, names, deep)
        if problem is not None:
            raise damaged(run, problem)


def find_damage(run: Path, shards: Sequence[int], methods: Iterable[str]) -> str | None:
    """After a read failed: the first shard whose sizes are off or whose tables do not read
    (maps are not read whole here), or None when every shard looks intact."""
    names = list(methods)
    for shard in shards:
        problem = shard_problem(run, shard, names, deep=False)
        if problem is not None:
            return problem
    for shard in shards:
        for label in ("samples", "statistics"):
            path = shard_files(run, shard, ())[label]
            if path.exists() and not _readable(path):
                rel = path.relative_to(run)
                return f"{label} shard {shard} ({rel}) is truncated or corrupt"
    return None


def damaged_shards(run: Path, shards: Sequence[int], methods: Iterable[str]) -> dict[int, str]:
    """Every damaged shard among ``shards`` with its problem (checksums compared)."""
    names = list(methods)
    found = {s: shard_problem(run, s, names, deep=True) for s in shards}
    return {s: p for s, p in found.items() if p is not None}
