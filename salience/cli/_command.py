"""The command classes of ``salience``: help that reads like a Unix tool's.

This typer release shows a flag's type as ``<bool>`` and a required argument as ``{run}`` in
the usage line. Flags here show no type, and arguments are written ``RUN`` (required) or
``[RUN]`` (optional), as ``man`` pages and the help of most tools do.
"""

from __future__ import annotations

from typing import Any

from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption


def _plain_metavars(params: list[Any]) -> list[Any]:
    for param in params:
        if isinstance(param, TyperOption) and param.is_flag and param.metavar is None:
            param.metavar = ""
        elif isinstance(param, TyperArgument) and param.metavar is None:
            param.metavar = (param.name or "value").upper()
    return params


class Command(TyperCommand):
    """A typer command whose help shows flags without a type and arguments in capitals."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_metavars(super().get_params(ctx))

    def collect_usage_pieces(self, ctx: Any) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = str(param.metavar) + ("..." if param.nargs != 1 else "")
                pieces.append(name if param.required else f"[{name}]")
        return pieces


class Group(TyperGroup):
    """The ``salience`` group: its own flags shown without a type, like its commands'."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _plain_metavars(super().get_params(ctx))
