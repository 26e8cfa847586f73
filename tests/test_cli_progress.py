"""Progress when output is piped: plain lines with counts, elapsed time and the time left."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from salience.cli import _progress
from salience.cli._progress import Bars, task


def _console(terminal: bool) -> tuple[Console, io.StringIO]:
    buf = io.StringIO()
    return Console(file=buf, force_terminal=terminal, width=200), buf


def test_piped_progress_prints_plain_lines_throttled(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(_progress.time, "monotonic", lambda: clock[0])
    console, buf = _console(terminal=False)
    with task(console, "audit", total=10) as advance:
        for i in range(10):
            clock[0] += 3.0  # a line at the first step, then every >= 10 s, and at the end
            advance(rate=f"{i} images/s")
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("audit: 1/10 (10%) 0 images/s, 0:00:00 elapsed")
    assert lines[-1].startswith("audit: 10/10 (100%) 9 images/s")
    assert "left" not in lines[-1]
    assert 3 <= len(lines) <= 5, lines  # steps at 3, 12 (+9 s: no), 15, 27, 30 s


def test_nothing_is_printed_before_the_first_step() -> None:
    for terminal in (False, True):
        console, buf = _console(terminal)
        with pytest.raises(RuntimeError), task(console, "checking", total=3):
            raise RuntimeError("a check failed before any work")
        assert buf.getvalue() == ""


def test_several_bars_each_report() -> None:
    console, buf = _console(terminal=False)
    with Bars(console) as bars:
        a = bars.add_task("train", total=2, rate="")
        b = bars.add_task("audit", total=1, rate="")
        bars.advance(a)
        bars.update(b, advance=1)
        bars.advance(a)
    out = buf.getvalue()
    assert "train: 1/2 (50%)" in out and "train: 2/2 (100%)" in out
    assert "audit: 1/1 (100%)" in out
