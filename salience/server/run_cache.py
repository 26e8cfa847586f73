"""The runs one server shows, with a bounded cache of rendered images and sample tables.

Routes receive the registry by dependency injection (``Depends(get_registry)``); nothing is
global. :class:`~salience.store.Run` is safe to share between threads (a DuckDB cursor per
query), so only the derived-table cache is locked.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
from fastapi import Depends, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from salience.errors import DamagedRunError, SalienceError
from salience.live import mismatch
from salience.models import LoadedModel
from salience.server.live import LiveModel
from salience.store import Run

T = TypeVar("T")
log = logging.getLogger("salience.server")

# A table read from a run that is still being written is reused for this many seconds.
LIVE_TTL = 2.0


class ByteCache:
    """A thread-safe LRU cache of encoded images, bounded by total size in bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def count(self) -> int:
        return len(self._items)

    def get(self, key: tuple[Any, ...]) -> bytes | None:
        with self._lock:
            data = self._items.get(key)
            if data is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return data

    def get_or_make(self, key: tuple[Any, ...], make: Callable[[], bytes]) -> bytes:
        data = self.get(key)
        return data if data is not None else self.put(key, make())

    async def get_or_make_async(self, key: tuple[Any, ...], make: Callable[[], bytes]) -> bytes:
        """Like :meth:`get_or_make`, rendering a miss in the thread pool (slow image files)."""
        data = self.get(key)
        return data if data is not None else self.put(key, await run_in_threadpool(make))

    def put(self, key: tuple[Any, ...], data: bytes) -> bytes:
        with self._lock:
            if key not in self._items and len(data) <= self.max_bytes:
                self._items[key] = data
                self._size += len(data)
                while self._size > self.max_bytes:
                    _, old = self._items.popitem(last=False)
                    self._size -= len(old)
        return data


def one_line(message: BaseException | str, limit: int = 500) -> str:
    """An error's message as one line of at most ``limit`` characters."""
    text = " ".join(str(message).split()) or type(message).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


@dataclass
class RunEntry:
    """One run the server was given, with its derived-table cache (one lock per table, so a
    slow table never holds up the others).

    A run whose files turn out truncated or corrupt (:class:`DamagedRunError`, when it is
    opened or when a table is first read) keeps its entry with ``damage`` set to the one-line
    reason: it is listed as damaged, and each of its routes answers that reason."""

    id: str
    opened: Run | None
    path: Path
    damage: str | None = None
    tables: dict[str, tuple[float, bool, Any]] = field(default_factory=dict)
    locks: dict[str, threading.Lock] = field(default_factory=dict)
    guard: threading.Lock = field(default_factory=threading.Lock)

    @property
    def run(self) -> Run:
        """The open run; :class:`DamagedRunError` once it is known to be damaged."""
        if self.damage is not None or self.opened is None:
            raise DamagedRunError(self.damage or f"run {self.id!r} could not be opened")
        return self.opened

    def mark_damaged(self, exc: DamagedRunError) -> None:
        if self.damage is None:
            self.damage = one_line(exc)
            log.error("run %s is damaged: %s", self.id, self.damage)

    def cached(self, key: str, make: Callable[[Run], T]) -> T:
        """``make(run)`` computed once (while the run is still being written: every 2 s)."""

        def fresh() -> tuple[float, bool, Any] | None:
            hit = self.tables.get(key)
            ok = hit is not None and (hit[1] or time.monotonic() - hit[0] < LIVE_TTL)
            return hit if ok else None

        hit = fresh()
        if hit is None:
            with self.guard:
                lock = self.locks.setdefault(key, threading.Lock())
            with lock:
                hit = fresh()
                if hit is None:
                    try:
                        value = make(self.run)
                        hit = (time.monotonic(), self.run.status != "running", value)
                    except DamagedRunError as exc:
                        self.mark_damaged(exc)
                        raise
                    self.tables[key] = hit
        return hit[2]  # type: ignore[no-any-return]

    def samples(self) -> pd.DataFrame:
        return self.cached("samples", lambda run: run.samples())


class RunRegistry:
    """Runs by id (the run folder's name, made unique) plus the rendered-image cache.

    Runs given as paths are opened here; one that is damaged is kept (listed as damaged), any
    other failure to open a run (no such folder, not a run) is the caller's error."""

    def __init__(
        self, runs: Sequence[Run | str | os.PathLike[str]], cache_bytes: int = 256 * 2**20
    ) -> None:
        if not runs:
            raise SalienceError("no runs to serve; pass one or more run directories")
        self.entries: dict[str, RunEntry] = {}
        for item in runs:
            if isinstance(item, Run):
                self._add(RunEntry("", item, item.path))
                continue
            try:
                run = Run.open(item)
            except DamagedRunError as exc:
                entry = RunEntry("", None, Path(item).expanduser().resolve())
                self._add(entry)
                entry.mark_damaged(exc)
            else:
                self._add(RunEntry("", run, run.path))
        self.images = ByteCache(cache_bytes)
        self.preloaded = False
        self.live: LiveModel | None = None  # the model of `salience serve --model`

    def _add(self, entry: RunEntry) -> None:
        base = entry.path.name or "run"
        rid, n = base, 2
        while rid in self.entries:
            rid, n = f"{base}-{n}", n + 1
        entry.id = rid
        self.entries[rid] = entry

    def ids(self) -> list[str]:
        return list(self.entries)

    def entry(self, run_id: str) -> RunEntry:
        """The run named ``run_id``: 404 when there is none, :class:`DamagedRunError` (503)
        when it is damaged."""
        try:
            found = self.entries[run_id]
        except KeyError:
            raise HTTPException(404, f"no run {run_id!r}") from None
        if found.damage is not None:
            raise DamagedRunError(found.damage)
        return found


async def get_registry(request: Request) -> RunRegistry:
    """FastAPI dependency: the registry the app was created with."""
    registry: RunRegistry = request.app.state.registry
    return registry


async def get_entry(run_id: str, registry: RunRegistry = Depends(get_registry)) -> RunEntry:
    """FastAPI dependency: the run named in the path, or 404 (503 when it is damaged)."""
    return registry.entry(run_id)


def attach(
    registry: RunRegistry,
    loaded: LoadedModel,
    *,
    force: bool = False,
    time_limit_s: float = 60.0,
    queue: int = 8,
) -> list[str]:
    """Serve live maps of ``registry``'s runs with ``loaded``. A model that is not the one a
    run was audited with is refused in one line (:class:`SalienceError`) unless ``force``;
    returns the mismatches that ``force`` let through."""
    problems: dict[str, str] = {}
    for rid, entry in registry.entries.items():
        if entry.damage is None and entry.opened is not None:
            reason = mismatch(entry.opened, loaded)
            if reason:
                problems[rid] = reason
    if problems and not force:
        raise SalienceError(
            f"{next(iter(problems.values()))}; pass --force to compute live maps with it anyway"
        )
    registry.live = LiveModel(loaded, time_limit_s=time_limit_s, queue=queue)
    return list(problems.values())
