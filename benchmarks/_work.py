"""Fair peer timing: count the rows each side pushes through the model, time in turns.

Both sides of a comparison run under the same :func:`counting` hook on the model's root
module, so "rows fwd/bwd" means the same thing for salience and for the peer:

- forward rows: the batch size of every model output (an output with more rows than its input,
  as when Ablation-CAM repeats one image's activations once per channel, counts its rows);
- backward rows: the rows of every output gradient that reaches the model's output.

A comparison whose counts differ compares unequal work: :func:`work_note` says so.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

UNEQUAL = "UNEQUAL WORK"


@dataclass
class Work:
    """Rows and passes through the model during one counted call."""

    forward: int = 0
    backward: int = 0
    passes: int = 0
    widest: int = 0  # most rows in one forward pass

    def rows(self) -> str:
        return f"{self.forward}/{self.backward}"

    def same(self, other: Work) -> bool:
        return (self.forward, self.backward) == (other.forward, other.backward)


def _first_tensor(out: Any) -> torch.Tensor | None:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, Mapping):
        out = list(out.values())
    elif hasattr(out, "logits"):
        return _first_tensor(out.logits)
    if isinstance(out, (list, tuple)):
        return next((t for t in map(_first_tensor, out) if t is not None), None)
    return None


@contextmanager
def counting(model: nn.Module) -> Iterator[Work]:
    """Count rows through ``model`` (forward and backward) while the block runs."""
    work = Work()

    def on_grad(grad: torch.Tensor) -> None:
        work.backward += grad.shape[0]

    def hook(_m: nn.Module, _i: object, out: object) -> None:
        t = _first_tensor(out)
        if t is None:
            return
        rows = t.shape[0] if t.dim() else 1
        work.forward += rows
        work.passes += 1
        work.widest = max(work.widest, rows)
        if t.requires_grad:
            t.register_hook(on_grad)

    handle = model.register_forward_hook(hook)
    try:
        yield work
    finally:
        handle.remove()


def count(model: nn.Module, fn: Callable[[], object]) -> tuple[Work, float]:
    """The rows ``fn()`` runs through ``model``, and the call's wall time (one call)."""
    with counting(model) as work:
        seconds = timed(fn)
    return work, seconds


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def interleaved(fns: Mapping[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Median wall time of each function over ``repeat`` rounds, run in turns.

    Taking turns puts every side under the same share of a fluctuating machine load.
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            times[name].append(timed(fn))
    return {name: statistics.median(ts) for name, ts in times.items()}


@dataclass
class Timed:
    """One setting of one side of a comparison: its rows and its median time."""

    side: str
    setting: str  # "default", "<knob>=<value>" or "best: <knob>=<value>"
    work: Work
    seconds: float
    sweep_seconds: float
    note: str = ""
    error: str = ""


def compare(
    model: nn.Module,
    sides: Mapping[str, Mapping[str, Callable[[], object]]],
    repeat: int,
    explained: Mapping[str, Callable[[Work, Work], str]] | None = None,
) -> list[Timed]:
    """Time each side's default and fastest setting in turns; note any difference in rows.

    ``sides`` maps a side to its settings (``"default"`` first) and their calls; the first side
    is the reference (salience). Every setting runs once under :func:`counting` (the sweep);
    values of a knob that run the same passes as an earlier setting are merged. Each default
    and fastest setting then run :func:`interleaved`. A side other than the reference that
    raises is kept with its error. ``explained[side](ours, theirs)`` may name a known reason for
    a difference in rows (an extra pass built into the peer); any other difference is
    flagged UNEQUAL WORK.
    """
    swept: dict[str, list[Timed]] = {}
    calls: dict[tuple[str, str], Callable[[], object]] = {}
    out: list[Timed] = []
    for i, (side, settings) in enumerate(sides.items()):
        rows: list[Timed] = []
        for setting, fn in settings.items():
            try:
                work, seconds = count(model, fn)
            except Exception as exc:  # a peer failing on this configuration is a result
                if i == 0:
                    raise
                first = (str(exc).splitlines() or [""])[0][:120]
                out.append(
                    Timed(
                        side,
                        setting,
                        Work(),
                        math.nan,
                        math.nan,
                        error=f"failed: {type(exc).__name__}: {first}",
                    )
                )
                continue
            shape = (work.passes, work.widest, work.forward, work.backward)
            if "=" in setting and any(  # knob values only; named variants always stay
                (r.work.passes, r.work.widest, r.work.forward, r.work.backward) == shape
                for r in rows
            ):
                continue
            rows.append(Timed(side, setting, work, math.nan, seconds))
            calls[(side, setting)] = fn
        if not rows:
            continue
        keep = [r for r in rows if r.setting == "default"][:1]
        best = min(rows, key=lambda r: r.sweep_seconds)
        if best not in keep:
            best.setting = f"best: {best.setting}"
            keep.append(best)
        swept[side] = keep
    finals = [r for rows in swept.values() for r in rows]
    medians = interleaved(
        {
            f"{r.side}|{r.setting}": calls[(r.side, r.setting.removeprefix("best: "))]
            for r in finals
        },
        repeat,
    )
    reference = finals[0].work
    for r in finals:
        r.seconds = medians[f"{r.side}|{r.setting}"]
        if r.side != finals[0].side:
            reason = (explained or {}).get(r.side)
            r.note = work_note(reference, r.work, reason(reference, r.work) if reason else "")
    return finals + out


def work_note(ours: Work, theirs: Work, reason: str = "") -> str:
    """``""`` for the same rows; ``reason`` for a known difference; else an UNEQUAL WORK flag."""
    if ours.same(theirs):
        return ""
    if reason:
        return f"peer {theirs.rows()} vs ours {ours.rows()}: {reason}"
    return f"{UNEQUAL}: ours {ours.rows()}, peer {theirs.rows()}"


def load() -> str:
    """The machine's load averages (1, 5, 15 min) and core count, for benchmark headers."""
    import os

    one, five, fifteen = os.getloadavg()
    return f"load {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def grid(spec: str) -> list[int | None]:
    """``"default,1,4,16"`` -> ``[None, 1, 4, 16]`` (None = the library's own default)."""
    out: list[int | None] = []
    for item in spec.split(","):
        item = item.strip()
        out.append(None if item in ("default", "none", "None", "") else int(item))
    return out


def sweep_line(timed: list[Timed]) -> str:
    """The one-run sweep of every kept setting, for the progress log."""
    return "; ".join(f"{r.side} {r.setting} {r.sweep_seconds:.2f}s" for r in timed if not r.error)


def print_table(results: Mapping[str, list[Timed]], items: Mapping[str, int], unit: str) -> None:
    """One line per side and setting: rows, passes, median time, speed vs. salience's best."""
    head = f"{'':24s} {'side':30s} {'setting':32s} {'rows fwd/bwd':>13s} {'passes':>6s}"
    print(f"{head} {'widest':>6s} {'median s':>9s} {unit + '/s':>9s} {'vs ours':>8s}  note")
    for group, timed in results.items():
        ours = [r.seconds for r in timed if r.side == timed[0].side and not r.error]
        for r in timed:
            if r.error:
                print(f"{group:24s} {r.side:30s} {r.setting:32s} {r.error}")
                continue
            rate = items[group] / r.seconds
            print(
                f"{group:24s} {r.side:30s} {r.setting:32s} {r.work.rows():>13s} "
                f"{r.work.passes:6d} {r.work.widest:6d} {r.seconds:9.3f} {rate:9.2f} "
                f"{r.seconds / min(ours):7.2f}x  {r.note}"
            )
    print(
        "vs ours = this line's median time / salience's fastest (above 1: salience is faster); "
        "rows = forward/backward rows through the model; passes = forward calls; widest = most "
        "rows in one pass; best = the fastest setting of a one-run sweep."
    )
