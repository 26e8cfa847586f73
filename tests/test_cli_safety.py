"""Every CLI failure is one line, user strings print literally, unsafe weights are refused."""

from __future__ import annotations

import errno
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers.synthetic_runs import blob, write_run
from typer.testing import CliRunner

from salience.cli import app, methods_cmd
from salience.errors import SalienceError
from salience.models.weights import read_state_dict

MARKUP_NAMES = ["[/]", "[bold]x", "a[red]b[/red]"]


def _markup_run(path: Path, shift: float = 0.0) -> Path:
    labels = [MARKUP_NAMES[i % 3] for i in range(12)]
    preds = [labels[i] if i % 4 else MARKUP_NAMES[(i + 1) % 3] for i in range(12)]
    maps = np.stack([blob(0.3 + shift + 0.02 * (i % 3), 0.5, 0.1) for i in range(12)])
    return write_run(path, labels, preds, maps.astype(np.float32), MARKUP_NAMES).path


@pytest.mark.parametrize("command", ["shortcuts", "compare"])
def test_markup_in_class_names_prints_literally(tmp_path: Path, command: str) -> None:
    a = _markup_run(tmp_path / "a")
    out = ["--out", str(tmp_path / "out.json")]
    args = [command, str(a), *out] if command == "shortcuts" else [command, str(a), str(a), *out]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    for name in MARKUP_NAMES:
        assert name in res.output


def _boom(exc: BaseException) -> Callable[..., None]:
    def raise_it(*args: object, **kwargs: object) -> None:
        raise exc

    return raise_it


def test_a_bug_is_one_line_with_a_log_holding_the_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv("SALIENCE_DEBUG", raising=False)
    monkeypatch.setattr(methods_cmd, "methods_payload", _boom(RuntimeError("boom\nsecond line")))
    res = CliRunner().invoke(app, ["methods"])
    assert res.exit_code == 1
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1, res.output
    assert "internal error (RuntimeError: boom)" in lines[0]
    logs = list((tmp_path / "salience" / "logs").glob("crash-*.log"))
    assert len(logs) == 1 and str(logs[0]) in lines[0]
    text = logs[0].read_text()
    assert "Traceback" in text and "second line" in text and "methods" in text


def test_debug_env_reraises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SALIENCE_DEBUG", "1")
    monkeypatch.setattr(methods_cmd, "methods_payload", _boom(RuntimeError("boom")))
    res = CliRunner().invoke(app, ["methods"])
    assert isinstance(res.exception, RuntimeError)


@pytest.mark.parametrize(
    ("exc", "code", "expected"),
    [
        (OSError(errno.ENOSPC, "No space left on device", "/runs/r/run.json"), 1, "disk full"),
        (MemoryError(), 1, "out of memory"),
        (PermissionError(errno.EACCES, "Permission denied", "/data/x.png"), 2, "permission"),
        (SalienceError("[bold]the[/] message"), 2, "[bold]the[/] message"),
    ],
)
def test_known_failures_are_one_line(
    monkeypatch: pytest.MonkeyPatch, exc: BaseException, code: int, expected: str
) -> None:
    monkeypatch.setattr(methods_cmd, "methods_payload", _boom(exc))
    res = CliRunner().invoke(app, ["methods"])
    assert res.exit_code == code
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], res.output
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        assert "/runs/r/run.json" in lines[0] and "rerun" in lines[0]


class _Runs:
    """Pickles to a call of os.system that would create a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_malicious_weights_are_refused_as_unsafe_and_never_run(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    files = {
        "archive.pt": lambda p: torch.save({"w": _Runs(marker)}, p),
        "bare.pt": lambda p: p.write_bytes(pickle.dumps(_Runs(marker))),
        "protocol0.pt": lambda p: p.write_bytes(pickle.dumps(_Runs(marker), protocol=0)),
    }
    for name, write in files.items():
        path = tmp_path / name
        write(path)
        with pytest.raises(SalienceError, match=r"refused .* as unsafe") as info:
            read_state_dict(path)
        assert "\n" not in str(info.value)
    assert not marker.exists()


def test_foreign_files_are_not_torch_save_files(tmp_path: Path) -> None:
    text = tmp_path / "notes.pt"
    text.write_text("hello")
    with pytest.raises(SalienceError, match=r"is it a torch\.save file"):
        read_state_dict(text)
    noise = tmp_path / "noise.pt"
    noise.write_bytes(b"\x01" + bytes(range(200)))
    with pytest.raises(SalienceError, match=r"(not a|is it a) torch\.save file"):
        read_state_dict(noise)


def test_state_dicts_still_load(tmp_path: Path) -> None:
    path = tmp_path / "ok.pt"
    torch.save({"state_dict": {"module.w": torch.ones(2)}}, path)
    assert torch.equal(read_state_dict(path)["w"], torch.ones(2))


def test_help_says_model_code_is_executed() -> None:
    res = CliRunner().invoke(app, ["audit", "--help"], env={"COLUMNS": "200"})
    flat = " ".join(res.output.split())
    assert "run that Python code" in flat
    assert "never executed" in flat
