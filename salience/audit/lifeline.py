"""Decoding processes die with the audit that started them, also when it is killed with -9.

Without this, DataLoader workers only notice a dead parent at their next status check (seconds
later) and keep decoding until then.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int, _worker_id: int = 0) -> None:
    """DataLoader ``worker_init_fn`` (bind ``parent`` to the pid that creates the loader): on
    Linux the kernel sends this worker SIGKILL when the parent dies. Elsewhere nothing."""
    if not sys.platform.startswith("linux"):
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)
