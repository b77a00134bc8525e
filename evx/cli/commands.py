"""Every module of `evx` commands. Importing one registers its commands (:mod:`evx.cli.app`);
a new module is added here and nowhere else."""

from __future__ import annotations

import importlib

import typer

from evx.cli import app as registry

#: In the order of the walk-through; the server's modules import the service only when run.
COMMAND_MODULES = (
    "evx.cli.signin",
    "evx.cli.packages",
    "evx.cli.audit",
    "evx.cli.bundle",
    "evx.cli.trust",
    "evx.cli.ledger",
    "evx.cli.server",
    "evx.cli.identity",
    "evx.cli.keys",
    "evx.cli.witness",
    "evx.cli.webhooks",
    "evx.cli.requests",
)


def register(app: typer.Typer) -> None:
    """Every command on ``app``."""
    for module in COMMAND_MODULES:
        importlib.import_module(module)
    registry.mount(app)
