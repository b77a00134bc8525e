"""`evx`: the command line. Sub-commands live with their domain and are mounted here."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="evx",
    help="evidence-exchange: secure cross-border exchange of digital evidence.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _mount() -> None:
    """Mount the domain command groups (imported lazily so a missing optional part fails loudly)."""
    from evx.cli import commands

    commands.register(app)


def main() -> None:
    _mount()
    app()


if __name__ == "__main__":
    main()
