"""Registers every command group on the root `evx` app. Each domain adds its group here."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from service import server_cli

    server_cli.register(app)

    from service.identity import cli as identity_cli

    identity_cli.register(app)
