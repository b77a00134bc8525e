"""`evx ledger verify`: the offline verifier, the same code as `python -m custody verify`."""

from __future__ import annotations

from pathlib import Path

import typer

ledger_app = typer.Typer(help="The custody ledger: verify exports offline.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(ledger_app, name="ledger")


@ledger_app.command("verify")
def verify(
    export: Path = typer.Argument(..., help="The JSON Lines export (GET /v1/ledger/export)."),
    key: str = typer.Option(..., "--key", help="The log's verifier key, inline or a file."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint",
                                           help="A signed checkpoint saved earlier: the export "
                                                "must extend it (catches rollback/rewrites)."),
    save_checkpoint: Path | None = typer.Option(None, "--save-checkpoint",
                                                help="Save the verified checkpoint here."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable result."),
) -> None:
    """Verify a ledger export with nothing but the export and the log's public key.

    Exit status: 0 verified and every rule of the exchange kept; 1 the export or checkpoint does
    not verify (tampered, truncated, malformed, a rule broken); 2 usage (bad arguments, a malformed
    key, a file that cannot be read).
    """
    from custody.cli import main

    argv = ["verify", str(export), "--key", key]
    if checkpoint is not None:
        argv += ["--checkpoint", str(checkpoint)]
    if save_checkpoint is not None:
        argv += ["--save-checkpoint", str(save_checkpoint)]
    if as_json:
        argv.append("--json")
    raise typer.Exit(main(argv))


@ledger_app.command("verifier-key")
def verifier_key(
    key_file: Path | None = typer.Option(None, "--key-file",
                                         help="The log signing key (default EVX_LOG_KEY_FILE "
                                              "or the data directory's)."),
    origin: str | None = typer.Option(None, "--origin", help="Default EVX_LOG_ORIGIN."),
    create: bool = typer.Option(False, "--create", help="Generate the key (0600) if missing."),
) -> None:
    """Print the verifier key of a log signing key file, offline (operators; to publish)."""
    from custody.note import Signer
    from service.ledger.keys import load_log_key, load_or_create_log_key
    from service.settings import load_settings

    settings = load_settings()
    path = key_file or settings.resolved_log_key_file
    private = load_or_create_log_key(path) if create else load_log_key(path)
    typer.echo(str(Signer(origin or settings.log_origin, private).verifier_key))
