"""Faults around an audit: a full disk at any step, and ``kill -9`` with decoding workers."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from audit_helpers import TinyModel, make_folder

from salience.audit import audit
from salience.errors import SalienceError
from salience.store import Run, RunLock, is_locked, layout
from salience.store.layout import PARTIAL, complete_shards

METHODS = ["gradcam", "gradient"]
OPTIONS = {"batch_size": 2, "shard_size": 4, "map_size": 8, "workers": 0}  # 12 images: 3 shards

linux_only = pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("faults")
    data = make_folder(root / "data", per_class=4)
    audit(TinyModel(), data, root / "ref", METHODS, **OPTIONS)  # type: ignore[arg-type]
    return data, root / "ref"


def assert_same_run(a: Run, b: Run) -> None:
    assert a.status == b.status == "complete"
    pd.testing.assert_frame_equal(a.samples(), b.samples())
    ids = a.samples()["sample_id"].tolist()
    for method in METHODS:
        pd.testing.assert_frame_equal(a.stats(method), b.stats(method))
        np.testing.assert_array_equal(a.saliencies(ids, method), b.saliencies(ids, method))
    a.verify()


def full_disk_at(monkeypatch: pytest.MonkeyPatch, hit: Callable[[str, Path], bool]) -> None:
    """``fsync`` of the file being written fails with ENOSPC when ``hit(name, run)``; the name
    is the final name (the temporary ``.NAME.tmp-PID`` without its dots and suffix)."""
    real = os.fsync

    def fsync(fd: int) -> None:
        path = Path(os.readlink(f"/proc/self/fd/{fd}"))
        name = path.name.lstrip(".").rsplit(".tmp-", 1)[0]
        if hit(name, path.parent):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(layout.os, "fsync", fsync)


POINTS: dict[str, Callable[[str, Path], bool]] = {
    "first map": lambda name, folder: name == "part-00000.npy",
    "second shard's stats": lambda name, folder: (
        folder.name == "stats" and name.endswith("01.parquet")
    ),
    "a partial batch": lambda name, folder: name == "batch-0000002-0000004.npz",
    "final index": lambda name, folder: name == "index.npz",
    "final manifest": lambda name, folder: name == "run.json" and (folder / "index.npz").exists(),
    "summary": lambda name, folder: name == "summary.json",
}


@linux_only
@pytest.mark.parametrize("point", list(POINTS))
def test_full_disk_is_one_line_and_the_rerun_completes(
    reference: tuple[Path, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, point: str
) -> None:
    data, ref = reference
    out = tmp_path / "run"
    with monkeypatch.context() as patch:
        full_disk_at(patch, POINTS[point])
        with pytest.raises(SalienceError) as exc:
            audit(TinyModel(), data, out, METHODS, **OPTIONS)  # type: ignore[arg-type]
    assert str(exc.value) == f"disk full writing {out}; free space and rerun to resume"
    assert exc.value.__cause__ is None and exc.value.__suppress_context__
    if point != "summary":
        assert Run.open(out).status in ("running", "failed")  # never "complete"
    assert not [p for p in out.rglob("*.tmp-*")]  # no temporary file left behind
    assert not is_locked(out)

    audit(TinyModel(), data, out, METHODS, **OPTIONS)  # type: ignore[arg-type]
    assert_same_run(Run.open(out), Run.open(ref))
    assert (out / "summary.json").read_text().replace(str(out), "") == (
        (ref / "summary.json").read_text().replace(str(ref), "")
    )


SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from audit_helpers import TinyModel, TinyNet
from salience.audit import audit
audit(TinyModel(module=TinyNet(delay={delay})), {data!r}, {out!r}, ["gradcam"],
      batch_size=4, shard_size=8, map_size=8, workers={workers})
"""


def start(data: Path, out: Path, delay: float, workers: int) -> subprocess.Popen[bytes]:
    code = SCRIPT.format(
        tests=str(Path(__file__).parent), data=str(data), out=str(out), delay=delay, workers=workers
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found += [int(c) for c in text]
    return found


def alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper is dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@linux_only
def test_kill_9_with_workers_frees_the_lock_and_leaves_no_workers(tmp_path: Path) -> None:
    data = make_folder(tmp_path / "data", per_class=8)  # 24 images: 3 shards of 2 batches
    out = tmp_path / "run"
    proc = start(data, out, delay=0.1, workers=2)
    deadline = time.monotonic() + 60
    workers: list[int] = []
    while time.monotonic() < deadline and proc.poll() is None:
        if (out / PARTIAL).exists() or complete_shards(out):
            workers = children(proc.pid)
            if len(workers) >= 2:
                break
        time.sleep(0.02)
    assert proc.poll() is None and len(workers) >= 2, proc.stderr.read().decode()  # type: ignore[union-attr]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # immediately: the lock went with the process, and a new writer is accepted
    assert not is_locked(out)
    with RunLock(out):
        pass
    deadline = time.monotonic() + 2
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not [w for w in workers if alive(w)], "decoding workers outlived the audit"

    final = start(data, out, delay=0.0, workers=2)
    assert final.wait() == 0, final.stderr.read().decode()  # type: ignore[union-attr]
    run = Run.open(out)
    assert run.status == "complete" and run.count() == 24
    run.verify()
    shutil.rmtree(out)
