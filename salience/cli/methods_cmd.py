"""``salience methods``: the attribution methods in the registry, with their parameters."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from salience.cli import app
from salience.cli._common import console, print_json, user_errors
from salience.jsonsafe import describe
from salience.methods import list_methods, method_info

COMMON_PARAMS = ("batch_size",)  # every method takes it; not repeated in the table


def methods_payload() -> list[dict[str, Any]]:
    """One entry per registered method, in registry order."""
    out = []
    for name in list_methods():
        info = method_info(name)
        out.append(
            {
                "name": info.name,
                "family": info.family,
                "signed": info.signed,
                "passes": info.passes,
                "summary": info.summary,
                "params": describe(info.params),
                "needs": info.needs or None,
            }
        )
    return out


@app.command()
@user_errors
def methods(
    json_out: Annotated[bool, typer.Option("--json", help="Print the table as JSON.")] = False,
) -> None:
    """List the attribution methods: family, signed or not, cost per image, parameters."""
    rows = methods_payload()
    if json_out:
        print_json(rows)
        return
    table = Table(title=f"{len(rows)} attribution methods", title_justify="left")
    table.add_column("method", style="bold cyan", no_wrap=True)
    table.add_column("family")
    table.add_column("signed", justify="center")
    table.add_column("passes per image")
    table.add_column("parameters (defaults)")
    table.add_column("needs")
    for row in rows:
        params = ", ".join(f"{k}={v!r}" for k, v in row["params"].items() if k not in COMMON_PARAMS)
        table.add_row(
            row["name"],
            row["family"],
            "yes" if row["signed"] else "no",
            row["passes"],
            params,
            row["needs"] or "",
        )
    console.print(table)
    console.print(
        "Use a method with parameters as NAME:key=value,..., e.g. "
        "--method integrated_gradients:steps=32. All methods also take batch_size=.",
        highlight=False,
    )
