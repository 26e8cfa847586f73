"""kill -9 a monitor at any moment, rerun the same command: nothing is lost and the result
equals an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from helpers.monitor_helpers import baseline, stream
from helpers.waiting import wait_until

from salience.monitor.layout import AUDITS, window_files
from salience.store.layout import PARTIAL

SCRIPT = """
import sys, time
sys.path.insert(0, {tests!r})
from helpers.audit_helpers import TinyNet
import salience.audit.attribute as attribute
from helpers.monitor_helpers import tiny_model
from salience.monitor import monitor_data
slow = attribute.attribute
def attribute_slowly(*a, **k):
    time.sleep({delay})
    return slow(*a, **k)
attribute.attribute = attribute_slowly
import salience.audit.runner as runner
runner.attribute = attribute_slowly
from pathlib import Path
monitor_data({ref!r}, {data!r}, {out!r}, window=20, model=tiny_model(Path({tmp!r})), workers=0,
             batch_size=5, calibration_splits=20)
"""


def start(tmp: Path, ref: Path, data: Path, out: Path, delay: float) -> subprocess.Popen[bytes]:
    code = SCRIPT.format(
        tests=str(Path(__file__).parent),
        ref=str(ref),
        data=str(data),
        out=str(out),
        tmp=str(tmp),
        delay=delay,
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.PIPE)


def test_kill_9_mid_window_and_rerun_equals_uninterrupted(tmp_path: Path) -> None:
    ref = baseline(tmp_path, per_class=20)
    data = stream(tmp_path / "in", 60, shifted_from=40)
    reference = start(tmp_path, ref, data, tmp_path / "ref-mon", 0.0)
    out = tmp_path / "mon"
    proc = start(tmp_path, ref, data, out, 0.3)  # slowed so that the kill lands mid-window

    def second_window_in_flight() -> bool:
        """One window recorded, and the next one's audit has a batch on disk (a finished
        audit has no partial folder left)."""
        return bool(window_files(out)) and any(out.glob(f"{AUDITS}/*/{PARTIAL}/*/batch-*"))

    wait_until(second_window_in_flight, 120, "the second window's first batch", process=proc)
    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 1 <= len(window_files(out)) < 3
    final = start(tmp_path, ref, data, out, 0.0)
    assert final.wait() == 0, final.stderr.read().decode() if final.stderr else ""
    assert reference.wait() == 0
    a = json.loads((out / "monitor.json").read_text())
    b = json.loads((tmp_path / "ref-mon" / "monitor.json").read_text())
    strip = ("audit", "key")
    wa = [{k: v for k, v in w.items() if k not in strip} for w in a["windows"]]
    wb = [{k: v for k, v in w.items() if k not in strip} for w in b["windows"]]
    assert len(wa) == 3 and wa == wb
    assert [w["alert"] for w in wa] == [False, False, True]
