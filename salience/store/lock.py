"""One writer per run: an exclusive POSIX record lock (``fcntl.lockf``) on ``RUN/.lock``.

A record lock belongs to the process that took it: forked children (DataLoader workers) do not
inherit it, and the kernel releases it the moment that process dies (even by ``kill -9``), so
a crashed audit never leaves a stale lock behind, not even while its workers wind down. The pid
written into the file is only for the message.

Record locks do not exclude the process holding them, and closing *any* descriptor of the file
drops them, so this process's own locks are kept in :data:`_HELD` and the file is never opened
again while one is held.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path
from types import TracebackType

from salience.errors import SalienceError
from salience.store.layout import LOCK

_HELD: set[Path] = set()  # lock files held by this process
_GUARD = threading.Lock()


def _busy(path: Path) -> SalienceError:
    try:
        holder = path.read_text(errors="replace").strip() or "unknown"
    except OSError:
        holder = "unknown"
    return SalienceError(
        f"{path.parent} is being written by another audit (pid {holder}); wait for it to finish "
        "or choose another --out"
    )


class RunLock:
    """``with RunLock(run_dir):`` holds the writer lock, or raises :class:`SalienceError`."""

    def __init__(self, run: Path) -> None:
        self.path = Path(run).resolve() / LOCK
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _GUARD:
            if self.path in _HELD:
                raise _busy(self.path)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise _busy(self.path) from None
            _HELD.add(self.path)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            with _GUARD:
                os.close(self._fd)  # drops the record lock
                self._fd = None
                _HELD.discard(self.path)

    @property
    def held(self) -> bool:
        return self._fd is not None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def is_locked(run: Path) -> bool:
    """Whether a live process holds the writer lock of ``run`` (i.e. the run is being written)."""
    path = Path(run).resolve() / LOCK
    with _GUARD:
        if path in _HELD:
            return True
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return False
        try:
            fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)  # closing drops the test lock if we got it
    return False
