"""Former name of :mod:`salience.methods.batching`, kept for the methods that import it."""

from __future__ import annotations

from salience.methods.batching import Kind, activation_bytes, available_bytes, chunk_size, spans

__all__ = ["Kind", "activation_bytes", "available_bytes", "chunk_size", "spans"]
