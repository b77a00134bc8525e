"""`evx ledger verify` (the offline verifier, the same checks as `python -m custody verify`) and
`evx ledger verifier-key` (operators: the key to publish)."""

from __future__ import annotations

import base64
from pathlib import Path

import typer

from evx.cli.app import PANEL_AUDIT, command, group
from evx.cli.options import JSON
from evx.cli.render import Output
from evx.client.errors import UsageError

group("ledger", "The custody ledger: monitor, export, and verify exports offline.",
      panel=PANEL_AUDIT)


@command("verify", group="ledger")
def verify(
    export: Path = typer.Argument(..., help="The JSON Lines export (GET /v1/ledger/export)."),
    key: str | None = typer.Option(None, "--key", help="The log's verifier key, inline or a "
                                   "file (default with --policy: the policy's log key)."),
    policy_file: Path | None = typer.Option(None, "--policy", help="A C2SP tlog-policy: the "
                                            "export's checkpoint must carry the quorum of "
                                            "witness cosignatures it requires (export with a "
                                            "policy: `evx ledger export --policy`)."),
    checkpoint: Path | None = typer.Option(None, "--checkpoint",
                                           help="A signed checkpoint saved earlier: the export "
                                                "must extend it (catches rollback/rewrites)."),
    save_checkpoint: Path | None = typer.Option(None, "--save-checkpoint",
                                                help="Save the verified checkpoint here."),
    as_json: bool = JSON,
) -> None:
    """Verify a ledger export with nothing but the export and the log's public key.

    Also applies the rules of the exchange to every package; each violation is listed with its
    entry index. A malformed or tampered export or checkpoint exits 1, like a bad proof."""
    from custody.cli import (
        available_cpus,
        check_file_rules,
        load_checkpoint,
        load_verifier_key,
        verify_file,
    )
    from custody.errors import VerificationError
    from custody.rules import RulesViolated

    output = Output(as_json=as_json)
    policy = None
    if policy_file is not None:
        from evx.client.witnessed import load_policy

        policy = load_policy(policy_file)
        if key is None:
            if len(policy.logs) != 1:
                raise UsageError("the policy names several logs: give --key", slug="bad-key")
            key = str(policy.logs[0].key)
    if key is None:
        raise UsageError("give --key (the log's verifier key) or --policy", slug="bad-key")
    try:
        verifier_key = load_verifier_key(key)
    except VerificationError as exc:
        raise UsageError(f"--key is not a verifier key: {exc}",
                         hint="Give name+hex+base64 or a file holding it (evx ledger key).",
                         slug="bad-key") from exc
    except OSError as exc:
        raise UsageError(f"--key {key}: {exc.strerror}", slug="bad-key") from exc
    for given in (export, checkpoint):
        if given is not None and not given.is_file():
            raise UsageError(f"{given}: no such file", slug="usage")
    # a checkpoint or export that does not verify is evidence failing: exit 1, by the table
    trusted = load_checkpoint(checkpoint, verifier_key) if checkpoint is not None else None
    result = verify_file(export, verifier_key, trusted, workers=available_cpus())
    violations = check_file_rules(export)
    if violations:
        raise RulesViolated(violations)
    witnessed_line = ""
    witnesses = {}
    if policy is not None:
        from evx.client.witnessed import require_log_key

        require_log_key(policy, verifier_key)
        # raises QuorumNotMet / SignatureError: exit 1 by the table, with the reason
        accepted = policy.verify_checkpoint(result.checkpoint_note)
        names = ", ".join(sorted(accepted.cosigned)) or "no witness"
        witnessed_line = f"\n  cosigned by {names} (policy: {policy.describe_quorum()})"
        witnesses = {"cosigned_by": sorted(accepted.cosigned),
                     "quorum": policy.describe_quorum()}
    if save_checkpoint is not None:
        save_checkpoint.write_text(result.checkpoint_note, encoding="utf-8")
    root = base64.b64encode(result.root).decode()
    output.result({"verified": True, "origin": result.origin, "tree_size": result.tree_size,
                   "entries": result.entry_count, "packages": result.package_count,
                   "root": root, **({"witnesses": witnesses} if witnesses else {})},
                  f"VERIFIED {result.entry_count} entries of {result.origin}\n"
                  f"  tree size {result.tree_size}, root {root}\n"
                  f"  {result.package_count} packages; checkpoint signed by {verifier_key}"
                  + witnessed_line)


@command("verifier-key", group="ledger", server=True)
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
