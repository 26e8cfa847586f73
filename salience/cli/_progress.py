"""Progress for every command: a rich bar on a terminal, plain lines when output is piped.

The bar appears with its first update, so a job that fails its checks before any work prints
only its one error line. When stderr is not a terminal (a log file, CI, ``| tee``), each bar
prints a plain line at its first update, every ``PLAIN_EVERY`` seconds and when it finishes:
``audit: 120/1000 (12%) 3.4 images/s, 0:00:35 elapsed, about 0:02:51 left``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

PLAIN_EVERY = 10.0  # seconds between plain progress lines


class Bars(Progress):
    """A rich ``Progress`` that draws lazily and falls back to plain lines off a terminal."""

    def __init__(self, console: Console, transient: bool = False) -> None:
        super().__init__(
            TextColumn("{task.description}", style="bold", markup=False),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}", markup=False),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=transient,
        )
        self._wanted = False
        self._printed: dict[TaskID, float] = {}

    def start(self) -> None:
        self._wanted = True  # drawn with the first update

    def stop(self) -> None:
        self._wanted = False
        if self.live.is_started:
            super().stop()

    def update(self, task_id: TaskID, **fields: Any) -> None:
        super().update(task_id, **fields)
        self._show(task_id)

    def advance(self, task_id: TaskID, advance: float = 1) -> None:
        super().advance(task_id, advance)
        self._show(task_id)

    def _show(self, task_id: TaskID) -> None:
        if not self._wanted:
            return
        if self.console.is_terminal:
            if not self.live.is_started:
                super().start()
            return
        task = self._tasks[task_id]
        now = time.monotonic()
        last = self._printed.get(task_id)
        done = task.total is not None and task.completed >= task.total
        if last is not None and now - last < PLAIN_EVERY and not done:
            return
        if done and last == float("inf"):
            return
        self._printed[task_id] = float("inf") if done else now
        self.console.print(plain_line(task), soft_wrap=True, markup=False, highlight=False)


def plain_line(task: Any) -> str:
    """One line for a rich task: description, count, rate, elapsed and the time left."""
    count = f"{task.completed:.0f}"
    if task.total:
        count += f"/{task.total:.0f} ({100 * task.completed / task.total:.0f}%)"
    parts = [f"{task.description}: {count}"]
    rate = str(task.fields.get("rate") or "")
    if rate:
        parts.append(rate)
    line = " ".join(parts)
    elapsed = task.elapsed or 0.0
    line += f", {timedelta(seconds=round(elapsed))} elapsed"
    if task.time_remaining is not None and task.total and task.completed < task.total:
        line += f", about {timedelta(seconds=round(task.time_remaining))} left"
    return line


@contextmanager
def task(console: Console, description: str, total: int | None) -> Iterator[Callable[..., None]]:
    """One bar; yields ``advance(n=1, rate="")``."""
    with Bars(console) as bar:
        tid = bar.add_task(description, total=total, rate="")

        def advance(n: int = 1, rate: str = "") -> None:
            bar.update(tid, advance=n, rate=rate)

        yield advance
