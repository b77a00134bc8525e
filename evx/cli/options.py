"""What every client command shares: its options, error handling and trust state."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from evx.client.errors import ClientError
from evx.client.http import DEFAULT_URL, Api
from evx.cli.render import Output
from evx.client.state import TrustState, default_state_dir

T = TypeVar("T")

URL = typer.Option(DEFAULT_URL, "--url", envvar="EVX_URL", show_envvar=True,
                    help="The evidence-exchange server.")
TOKEN = typer.Option(None, "--token", envvar="EVX_TOKEN", show_envvar=True,
                      show_default=False,
                      help="Your bearer token (prefer the environment variable: command lines "
                           "are visible to other users).")
JSON = typer.Option(False, "--json", help="One JSON document on stdout, for scripts.")



def run(output: Output, work: Callable[[], T]) -> T:
    try:
        return work()
    except ClientError as exc:
        output.error(exc)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        output.err.print("interrupted; run the same command again to resume")
        raise typer.Exit(130) from None


def trust_state(api: Api) -> TrustState:
    return TrustState(default_state_dir(), api.origin)


def add_row(table: Table, *cells: str) -> None:
    """Add a row of server-supplied text: escaped, so names cannot inject rich markup; long
    values (digests, item names) fold onto more lines instead of being cut."""
    for column in table.columns:
        column.overflow = "fold"
    table.add_row(*(escape(c) for c in cells))
