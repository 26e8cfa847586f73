"""A run on disk: atomic shard writer, writer lock, and the DuckDB-backed reader :class:`Run`."""

from __future__ import annotations

from salience.store.filters import SampleFilter
from salience.store.lock import RunLock, is_locked
from salience.store.run import Run
from salience.store.writer import ShardWriter, samples_schema, stats_schema

__all__ = [
    "Run",
    "RunLock",
    "SampleFilter",
    "ShardWriter",
    "is_locked",
    "samples_schema",
    "stats_schema",
]
