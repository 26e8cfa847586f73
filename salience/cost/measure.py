"""Time and peak memory of one call, the warm-up kept apart.

Milliseconds per image come from a timed call after a warm-up call that is not counted
(compilation, lazy initialisation, caches). Peak memory is ``torch.cuda.max_memory_allocated``
above its level before the call on CUDA; on the CPU, torch's allocations are not seen by
``tracemalloc``, so the process's resident memory (psutil) is sampled every few milliseconds
and the peak above its level before the call is reported. That is a lower bound: memory the
allocator kept from an earlier call is reused without growing the process, so on the CPU a
setting measured after a larger one can read near 0 MB. CUDA figures have no such caveat.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch

T = TypeVar("T")
SAMPLE_EVERY = 0.002  # seconds between resident-memory samples on the CPU


@dataclass(frozen=True)
class Measured:
    seconds: float
    peak_mb: float


class _RssPeak:
    """Highest resident set size seen while the context is open, sampled on a thread."""

    def __init__(self) -> None:
        import psutil

        self._process = psutil.Process()
        self.start = self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            self._stop.wait(SAMPLE_EVERY)

    def __enter__(self) -> _RssPeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


def measure(fn: Callable[[], T], device: torch.device) -> tuple[T, Measured]:
    """Run ``fn`` once; its result, wall seconds and peak memory above the start (MiB)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        start = time.perf_counter()
        result = fn()
        torch.cuda.synchronize(device)
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated(device) - base
        return result, Measured(seconds, peak / 2**20)
    with _RssPeak() as rss:
        start = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - start
    return result, Measured(seconds, (rss.peak - rss.start) / 2**20)
