"""Faults around an audit: a full disk at any step, ``kill -9`` with decoding workers, and a
model or method that fails on one image (or on all of them)."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from helpers.audit_helpers import TinyModel, TinyNet, make_folder
from helpers.run_checks import assert_same_run as same_run
from helpers.waiting import wait_until
from PIL import Image

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
    same_run(a, b, METHODS)


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
from helpers.audit_helpers import TinyModel, TinyNet
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

    def busy_workers() -> list[int]:
        """The audit's decoding workers, once it has written a batch and has two of them."""
        if not ((out / PARTIAL).exists() or complete_shards(out)):
            return []
        found = children(proc.pid)
        return found if len(found) >= 2 else []

    workers = wait_until(busy_workers, 60, "two decoding workers mid-run", process=proc)
    assert proc.poll() is None, proc.stderr.read().decode()  # type: ignore[union-attr]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # immediately: the lock went with the process, and a new writer is accepted
    assert not is_locked(out)
    with RunLock(out):
        pass
    gone = "the decoding workers to exit with the killed audit"
    wait_until(lambda: not any(alive(w) for w in workers), 2, gone)

    final = start(data, out, delay=0.0, workers=2)
    assert final.wait() == 0, final.stderr.read().decode()  # type: ignore[union-attr]
    run = Run.open(out)
    assert run.status == "complete" and run.count() == 24
    run.verify()
    shutil.rmtree(out)


class _FailBackward(torch.autograd.Function):
    """Identity whose backward raises when the batch held a marked image."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, bad: bool) -> torch.Tensor:
        ctx.bad = bad
        return x.clone()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        if ctx.bad:
            raise RuntimeError("no gradient through this image")
        return grad, None


class PickyNet(TinyNet):
    """Fails on batches holding the all-white image: in the forward (``where="forward"``),
    in the backward only (``"backward"``), or on every batch (``"always"``)."""

    def __init__(self, where: str) -> None:
        super().__init__()
        self.where, self.calls = where, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        bad = bool((x.flatten(1).amin(1) > 10).any())
        if self.where == "always" or (self.where == "forward" and bad):
            raise RuntimeError("cannot handle\nthis input")
        if self.where == "backward":
            x = _FailBackward.apply(x, bad)
        return super().forward(x)


def picky_audit(folder: Path, out: Path, where: str, **kw: Any) -> tuple[TinyModel, Run]:
    model = TinyModel(module=PickyNet(where))
    model.preprocess = type(model.preprocess)(size=16, resize=16, mean=(0.5,) * 3, std=(0.04,) * 3)
    options = {**OPTIONS, "batch_size": 4, **kw}
    audit(model, folder, out, ["gradient"], **options)  # type: ignore[arg-type]
    return model, Run.open(out)


@pytest.fixture
def with_white(tmp_path: Path) -> Path:
    folder = make_folder(tmp_path / "data", per_class=3, masks=False)
    Image.new("RGB", (20, 16), (255, 255, 255)).save(folder / "bee" / "0001a.png")  # 2nd batch
    return folder


def clean_reference(folder: Path, out: Path) -> Run:
    _, run = picky_audit(folder, out, "none")
    return run


@pytest.mark.parametrize("where", ["forward", "backward"])
def test_one_bad_image_is_recorded_and_its_batch_mates_get_their_rows(
    with_white: Path, tmp_path: Path, where: str
) -> None:
    _, run = picky_audit(with_white, tmp_path / "run", where)
    ref = clean_reference(with_white, tmp_path / "ref")
    df, rf = run.samples().set_index("path"), ref.samples().set_index("path")
    st = run.stats("gradient").set_index("sample_id")
    white = df.loc["bee/0001a.png"]
    reason = (
        "model failed: RuntimeError: cannot handle this input"
        if where == "forward"
        else "method failed: RuntimeError: no gradient through this image"
    )
    if where == "forward":
        assert white["error"] == reason and pd.isna(white["pred"])
        assert st.loc[white["sample_id"], "error"] == f"no map: {reason}"
    else:
        assert pd.isna(white["error"]) and white["pred"] == rf.loc["bee/0001a.png", "pred"]
        assert st.loc[white["sample_id"], "error"] == reason
        assert pd.isna(st.loc[white["sample_id"], "entropy"])
    assert df["error"].notna().sum() == (1 if where == "forward" else 0)
    assert st["error"].notna().sum() == 1  # only the bad image, not its whole batch
    others = df.drop(index="bee/0001a.png")
    assert (others["pred"] == rf.loc[others.index, "pred"]).all()
    ids = others["sample_id"].tolist()
    np.testing.assert_allclose(
        run.saliencies(ids, "gradient"), ref.saliencies(ids, "gradient"), rtol=1e-2, atol=1e-3
    )
    with pytest.raises(SalienceError, match="has no gradient map"):
        run.saliency(white["sample_id"], "gradient")
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    if where == "forward":
        assert summary["skipped"]["reasons"] == {"model failed": 1}
    else:
        assert summary["map_errors"]["gradient"] == {"method failed": 1}


@pytest.mark.parametrize(
    ("where", "named"), [("always", "the model"), ("backward-all", "method gradient")]
)
def test_a_model_or_method_failing_on_every_image_stops_early(
    tmp_path: Path, where: str, named: str
) -> None:
    folder = make_folder(tmp_path / "data", per_class=20, masks=False)  # 60 images, 15 batches
    if where == "backward-all":
        for p in folder.rglob("*.png"):
            Image.new("RGB", (20, 16), (255, 255, 255)).save(p)
    with pytest.raises(SalienceError) as exc:
        picky_audit(folder, tmp_path / "run", "backward" if where == "backward-all" else where)
    text = str(exc.value)
    run = tmp_path / "run"
    if where == "always":  # the preflight on a noise image stops it before the run exists
        assert text.startswith("gradient failed on a test image before the job started (")
        assert "\n" not in text and "RuntimeError" in text and not run.exists()
        return
    assert text.startswith(f"{named} failed on each of the first 16 images (")
    assert "\n" not in text and "RuntimeError" in text
    assert not complete_shards(run) and not list(run.rglob("batch-*.npz"))  # nothing recorded
    assert Run.open(run).status == "failed"
