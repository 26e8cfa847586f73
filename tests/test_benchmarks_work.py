"""The peer benchmarks count rows the same way on both sides and flag unequal work."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))

from _work import UNEQUAL, Work, compare, count, work_note  # noqa: E402
from metrics import quantus_features_in_step  # noqa: E402


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).double()


def test_counts_forward_and_backward_rows() -> None:
    """3 rows fwd+bwd, then 5 rows forward only, then 2 passes of 2 rows: 12 fwd / 3 bwd."""
    m = _model()

    def calls() -> None:
        x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
        torch.autograd.grad(m(x)[:, 0].sum(), x)
        with torch.no_grad():
            m(torch.randn(5, 4, dtype=torch.float64))
            for _ in range(2):
                m(torch.randn(1, 4, dtype=torch.float64).expand(2, 4))

    work, _ = count(m, calls)
    assert (work.forward, work.backward, work.passes, work.widest) == (12, 3, 4, 5)
    assert not m._forward_hooks  # the counter leaves no hook behind


def test_unequal_rows_are_flagged_unless_explained() -> None:
    ours, theirs = Work(forward=10, backward=10), Work(forward=20, backward=10)
    assert work_note(ours, Work(forward=10, backward=10)) == ""
    assert UNEQUAL in work_note(ours, theirs)
    assert UNEQUAL not in work_note(ours, theirs, "known extra pass")


def test_compare_keeps_default_and_fastest_and_flags_extra_rows() -> None:
    m = _model()
    x = torch.randn(8, 4, dtype=torch.float64)

    def rows(chunk: int, repeat: int = 1) -> None:
        with torch.no_grad():
            for _ in range(repeat):
                for a in range(0, len(x), chunk):
                    m(x[a : a + chunk])

    timed = compare(
        m,
        {
            "ours": {"default": lambda: rows(8), "batch_size=1": lambda: rows(1)},
            "twice": {"default": lambda: rows(8, 2)},
        },
        repeat=1,
    )
    by_side = {(t.side, t.setting.removeprefix("best: ")): t for t in timed}
    assert by_side[("ours", "default")].work.forward == 8
    assert UNEQUAL in by_side[("twice", "default")].note  # 16 rows against 8


def test_quantus_step_runs_salience_rows() -> None:
    """Quantus runs C*H*W / features_in_step rows per image; salience steps + 1."""
    fis = quantus_features_in_step((3, 224, 224), 23)
    assert 224 * 224 % fis == 0 and 3 * 224 * 224 // fis == 24
    with pytest.raises(ValueError, match="steps"):
        quantus_features_in_step((3, 224, 224), 32)


@pytest.mark.slow
@pytest.mark.parametrize("script", ["attribution.py", "metrics.py"])
def test_quick_benchmark_runs_equal_work(script: str) -> None:
    """Each benchmark's smoke run prints rows for both sides and no UNEQUAL WORK."""
    done = subprocess.run(
        [sys.executable, str(BENCH / script), "--quick", "--threads", "1"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "rows fwd/bwd" in done.stdout
    assert UNEQUAL not in done.stdout, done.stdout
    peers = ("captum IG", "grad-cam ScoreCAM") if script == "attribution.py" else ("Quantus",)
    for peer in peers:
        assert any(peer in line and "/" in line for line in done.stdout.splitlines()), peer
