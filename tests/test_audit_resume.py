"""kill -9 at any moment, rerun the same command: the finished run equals an uninterrupted one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers.audit_helpers import make_folder
from helpers.waiting import wait_until

from salience.store import Run
from salience.store.layout import PARTIAL, complete_shards

SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from helpers.audit_helpers import TinyModel, TinyNet
from salience.audit import audit
audit(TinyModel(module=TinyNet(delay={delay})), {data!r}, {out!r}, ["gradcam", "gradient"],
      batch_size=4, shard_size=12, map_size=8)
"""


def start(data: Path, out: Path, delay: float) -> subprocess.Popen[bytes]:
    code = SCRIPT.format(
        tests=str(Path(__file__).parent), data=str(data), out=str(out), delay=delay
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)


def batches_done(out: Path, shard_size: int = 12, batch: int = 4) -> int:
    saved = len(list((out / PARTIAL).rglob("batch-*.npz"))) if (out / PARTIAL).exists() else 0
    return len(complete_shards(out)) * (shard_size // batch) + saved


@pytest.mark.parametrize(
    "kills",
    [
        pytest.param((7,), id="once-mid-shard"),
        pytest.param((0, 2, 6, 10), id="four-times", marks=pytest.mark.slow),
    ],
)
def test_kill_9_and_resume_equals_uninterrupted(tmp_path: Path, kills: tuple[int, ...]) -> None:
    data = make_folder(tmp_path / "data", per_class=20)  # 60 images, 15 batches, 5 shards
    reference = start(data, tmp_path / "ref", 0.0)
    out = tmp_path / "run"
    reads = []
    for threshold in kills:  # kill after this many batches are on disk
        proc = start(data, out, 0.05)

        def reached(threshold: int = threshold) -> bool:
            if batches_done(out) >= threshold:
                return True
            if (out / "run.json").exists():
                run = Run.open(out)  # another process reads while this one writes
                reads.append(run.count())
                run.confusion_matrix()
            return False

        wait_until(reached, 120, f"{threshold} batches on disk", interval=0.005, process=proc)
        assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if (out / "run.json").exists():
            assert Run.open(out).status == "running"  # killed: no chance to say anything
    final = start(data, out, 0.0)
    assert final.wait() == 0, final.stderr.read().decode() if final.stderr else ""
    assert reference.wait() == 0
    assert all(n % 12 == 0 for n in reads) and reads == sorted(reads)

    a, b = Run.open(out), Run.open(tmp_path / "ref")
    assert a.status == b.status == "complete"
    assert not (out / PARTIAL).exists()
    sa, sb = a.samples(), b.samples()
    assert len(sa) == 60 and sa.sample_id.is_unique
    pd.testing.assert_frame_equal(sa, sb)
    for method in ("gradcam", "gradient"):
        pd.testing.assert_frame_equal(a.stats(method), b.stats(method))
        ids = sa.sample_id.tolist()
        np.testing.assert_array_equal(a.saliencies(ids, method), b.saliencies(ids, method))
    for rel in ("samples/part-00002.parquet", "maps/gradient/part-00004.npy"):
        assert (out / rel).read_bytes() == (tmp_path / "ref" / rel).read_bytes()
