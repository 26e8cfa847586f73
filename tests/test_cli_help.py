"""The command line's own surface: --version, and help that reads plainly for every command."""

from __future__ import annotations

import re

import pytest
import typer.main
from typer.testing import CliRunner

import salience
from salience.cli import app

COMMANDS = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def test_version() -> None:
    res = CliRunner().invoke(app, ["--version"])
    assert res.exit_code == 0
    assert res.output.startswith(f"salience {salience.__version__} (torch ")


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_shows_no_type_for_flags_and_capital_arguments(command: str | None) -> None:
    args = ["--help"] if command is None else [command, "--help"]
    res = CliRunner().invoke(app, args, env={"COLUMNS": "160"})
    assert res.exit_code == 0, res.output
    assert "<bool>" not in res.output
    usage = next(line for line in res.output.splitlines() if "Usage:" in line)
    assert "{" not in usage and not re.search(r"\b[a-z_]+\b$", usage.strip()), usage
    assert "--help" in res.output


def test_unknown_names_suggest_the_closest() -> None:
    with pytest.raises(salience.errors.SalienceError, match="did you mean 'gradcam'"):
        salience.get_method("gradcamm")
    with pytest.raises(salience.errors.SalienceError) as info:
        salience.get_method("zzz")
    assert "did you mean" not in str(info.value) and "choose one of" in str(info.value)
