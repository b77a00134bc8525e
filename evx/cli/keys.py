"""`evx keys`: key-encryption keys -- list, rotate, rewrap. Every change is on the record."""

from __future__ import annotations

import json

import typer

from evx.cli.app import PANEL_SERVER, command, group
from evx.cli.options import JSON, OUTPUT, WIDE
from evx.cli.render import Column, Output
from evx.client.errors import IntegrityFailure

group("keys", "Key-encryption keys (KEKs) of the evidence store.", panel=PANEL_SERVER)


class _Operator:
    """The system actor of key-management entries."""

    def __init__(self, authority: str) -> None:
        self.authority, self.subject, self.role = authority, "evx-keys", "operator"


KEK_COLUMNS = (
    Column("key", lambda k: k["id"], id=True),
    Column("active", lambda k: "yes" if k["active"] else ""),
)


@command("list", group="keys", server=True)
def list_keys(as_json: bool = JSON, output_format: str = OUTPUT, wide: bool = WIDE) -> None:
    """The KEK ids and which one wraps new items."""
    from service.settings import load_settings
    from storage.keyring import DirectoryKeySource, Keyring

    output = Output(as_json=as_json, fmt=output_format, wide=wide)
    keyring = Keyring(DirectoryKeySource(load_settings().resolved_kek_dir))
    rows = [{"id": k, "active": k == keyring.active_key_id} for k in keyring.key_ids]
    output.rows({"active": keyring.active_key_id, "keys": list(keyring.key_ids)}, rows,
                KEK_COLUMNS, empty="no keys")


@command("rotate", group="keys", server=True)
def rotate(rewrap: bool = typer.Option(True, "--rewrap/--no-rewrap",
                                       help="Rewrap every item under the new key now."),
           as_json: bool = typer.Option(False, "--json")) -> None:
    """Make a new KEK active and (by default) rewrap every item's data key under it.

    Content is never re-encrypted: only the small key envelopes are rewritten. Old KEKs stay
    available for unwrapping; other replicas pick up the new key within a minute.
    """
    _run(rotate_first=True, rewrap=rewrap, as_json=as_json)


@command("rewrap", group="keys", server=True)
def rewrap_command(as_json: bool = typer.Option(False, "--json")) -> None:
    """Rewrap every item still under an older KEK (e.g. after replicas wrapped with it)."""
    _run(rotate_first=False, rewrap=True, as_json=as_json)


def _run(*, rotate_first: bool, rewrap: bool, as_json: bool) -> None:
    from service.runtime import build_runtime
    from service.settings import load_settings

    settings = load_settings()
    runtime = build_runtime(settings)
    actor = _Operator(settings.operator_authority)
    try:
        new_id = runtime.keyring.rotate() if rotate_first else None
        report = runtime.vault.rewrap_all() if rewrap else None
        details: dict[str, str | int | bool | None] = {"active_key": runtime.keyring.active_key_id}
        if report is not None:
            details.update(examined=report.examined, rewrapped=report.rewrapped,
                           already_current=report.already_current, failed=len(report.failed))
        runtime.recorder.record(actor, "key.rotated", outcome="allowed" if not (
            report and report.failed) else "failed",
            reason=f"{len(report.failed)} envelopes could not be opened" if report and
            report.failed else None, details=details)
    finally:
        runtime.close()
    if as_json:
        typer.echo(json.dumps({"new_key": new_id, **details,
                               "failed_objects": list(report.failed) if report else []}))
    else:
        if new_id:
            typer.echo(f"new active key: {new_id}")
        if report is not None:
            typer.echo(f"rewrapped {report.rewrapped} of {report.examined} items "
                       f"({report.already_current} already current, {len(report.failed)} failed)")
    if report is not None and report.failed:
        # envelopes that do not open under any KEK: stored key material is damaged
        raise IntegrityFailure(f"{len(report.failed)} key envelopes could not be opened: "
                               f"{', '.join(list(report.failed)[:5])}",
                               slug="rewrap-failed",
                               hint="They stay under their old key; see docs/operations.md.")
