"""Registers every command group on the root `evx` app. Each domain adds its group here."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from evx.cli import keys as keys_cli, ledger as ledger_cli, server as server_cli
    from evx.cli import packages as client_cli
    from evx.cli import identity as identity_cli
    from evx.cli import witness as witness_cli

    server_cli.register(app)
    identity_cli.register(app)
    ledger_cli.register(app)
    keys_cli.register(app)
    client_cli.register(app)
    witness_cli.register(app)
