"""The monitor folders one server shows, next to its runs.

Each folder is read through :class:`salience.monitor.MonitorFolder` (no writer lock, so a
monitor that is still adding windows can be watched). A window's audit run is opened on first
use and wrapped in a :class:`~salience.server.run_cache.RunEntry`, so the image routes' checks
(the image lies in the run's data root) apply to it unchanged. Windows are addressed by index;
the audit folder comes from the monitor's own record, checked to lie inside ``audits/``.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import HTTPException, Request

from salience.errors import DamagedRunError, SalienceError
from salience.monitor import MonitorFolder
from salience.server.run_cache import RunEntry

log = logging.getLogger("salience.server")


@dataclass
class MonitorEntry:
    """One monitor folder and the audit runs of its windows opened so far."""

    id: str
    folder: MonitorFolder
    audits: dict[tuple[int, Path], RunEntry] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def window(self, index: int) -> dict[str, Any]:
        try:
            return self.folder.window(index)
        except KeyError:
            raise HTTPException(404, f"no window {index} in this monitor") from None

    def audit(self, index: int) -> RunEntry | None:
        """The window's audit run as a run entry; None for a window without one; 404 (logged)
        when the monitor's record names a folder outside ``audits/``."""
        self.window(index)
        try:
            path = self.folder.audit_path(index)
        except SalienceError as exc:
            log.warning("monitor %s: %s", self.id, exc)
            raise HTTPException(404, "not found") from None
        if path is None:
            return None
        with self.lock:
            found = self.audits.get((index, path))
            if found is None:
                try:
                    run = self.folder.audit(index)
                except DamagedRunError:
                    raise
                except SalienceError:
                    return None
                if run is None:
                    return None
                found = RunEntry(f"{self.id}:window-{index}", run, run.path)
                self.audits[(index, path)] = found
        return found

    def audit_or_404(self, index: int) -> RunEntry:
        found = self.audit(index)
        if found is None:
            raise HTTPException(404, f"window {index} has no audit run (observed in memory)")
        if found.damage is not None:
            raise DamagedRunError(found.damage)
        return found


class MonitorRegistry:
    """Monitor folders by id (the folder's name, made unique)."""

    def __init__(self, folders: Sequence[str | os.PathLike[str]] = ()) -> None:
        self.entries: dict[str, MonitorEntry] = {}
        for item in folders:
            folder = MonitorFolder.open(item)
            base, n = folder.name or "monitor", 2
            mid = base
            while mid in self.entries:
                mid, n = f"{base}-{n}", n + 1
            self.entries[mid] = MonitorEntry(mid, folder)

    @property
    def paths(self) -> list[Path]:
        return [e.folder.path for e in self.entries.values()]

    def entry(self, monitor_id: str) -> MonitorEntry:
        try:
            return self.entries[monitor_id]
        except KeyError:
            raise HTTPException(404, f"no monitor {monitor_id!r}") from None


async def get_monitors(request: Request) -> MonitorRegistry:
    """FastAPI dependency: the monitor folders the app was created with (maybe none)."""
    found = getattr(request.app.state, "monitors", None)
    return found if isinstance(found, MonitorRegistry) else MonitorRegistry()
