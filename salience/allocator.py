"""Keep freed tensor memory in the process instead of handing it back to the kernel.

glibc serves blocks above its mmap threshold with fresh ``mmap`` pages and unmaps them on
``free``; the kernel zeroes every page again on first touch. A saliency run allocates and frees
the same activation tensors (megabytes each) on every forward and backward pass, so on CPUs a
large share of its time goes to page faults. Raising the mmap and trim thresholds lets the
heap reuse those blocks; the process then keeps its peak memory, which it reaches anyway.

This changes the whole process, so the library never calls it on import: the ``salience``
command and the benchmarks that time it do.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD = -1  # mallopt parameters from glibc's malloc.h
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD = 1 << 30  # blocks up to 1 GiB come from the heap
_TRIM_THRESHOLD = (1 << 31) - 1  # the free top of the heap is never trimmed


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds (Linux only); True when glibc took them."""
    if not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD)
    )
