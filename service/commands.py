"""Registers every command group on the root `evx` app. Each domain adds its group here."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from service import keys_cli, ledger_cli, server_cli
    from service.client import cli as client_cli
    from service.identity import cli as identity_cli

    server_cli.register(app)
    identity_cli.register(app)
    ledger_cli.register(app)
    keys_cli.register(app)
    client_cli.register(app)
