"""`evx`: the command line. Every command is registered through :mod:`evx.cli.app` and listed
in :mod:`evx.cli.commands`; errors become exit statuses by :mod:`evx.cli.exits` only."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer

from evx.cli.exits import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

app = typer.Typer(
    name="evx",
    help="evidence-exchange: secure cross-border exchange of digital evidence.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _click_class(name: str) -> type[Exception]:
    # click itself, or the copy Typer >= 0.22 carries: found through Typer's own exception
    return next(c for c in typer.BadParameter.__mro__ if c.__name__ == name)


ClickException = _click_class("ClickException")
ClickUsageError = _click_class("UsageError")


def build() -> typer.core.TyperGroup:
    """The root command with every command group mounted."""
    from evx.cli import commands

    commands.register(app)
    command = typer.main.get_command(app)
    assert isinstance(command, typer.core.TyperGroup)  # an app with groups is a group
    return command


def run(argv: Sequence[str] | None = None) -> int:
    """Run ``evx ARGV``; the exit status. Usage errors found while parsing (before any
    command runs) go through the same table: one line, and one JSON document with --json."""
    from evx.cli.app import json_in_arguments, report

    args = list(sys.argv[1:] if argv is None else argv)
    try:
        root = build()
        result = root.main(args, prog_name="evx", standalone_mode=False)
    except typer.Exit as exc:
        return int(exc.exit_code)
    except typer.Abort:
        return report(KeyboardInterrupt(), as_json=json_in_arguments(args))
    except ClickException as exc:
        context = getattr(exc, "ctx", None)
        hint = f"See: {context.command_path} --help" \
            if isinstance(exc, ClickUsageError) and context is not None else None
        return report(exc, as_json=json_in_arguments(args), hint=hint)
    except (Exception, KeyboardInterrupt) as exc:  # noqa: BLE001 - outside any command: still the table
        return report(exc, as_json=json_in_arguments(args))
    return result if isinstance(result, int) else EXIT_OK


def main() -> None:
    sys.exit(run())


__all__ = ["EXIT_INTERRUPTED", "EXIT_USAGE", "app", "build", "main", "run"]
