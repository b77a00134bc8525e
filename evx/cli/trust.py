"""`evx trust`: what this machine trusts, given out of band instead of on first use."""

from __future__ import annotations

from typing import Any

import typer
from rich.markup import escape

from evx.cli.app import PANEL_AUDIT, command, group
from evx.cli.options import JSON, URL, parse_log_key, trust_state
from evx.cli.render import Output
from evx.client.http import Api

group("trust", "What this machine trusts: the log key, the authorities' signing keys.",
      panel=PANEL_AUDIT)


@command("log", group="trust")
def trust_log(
    key: str = typer.Option(..., "--key", help="The log's verifier key (name+hex+base64), or a "
                                               "file holding it, obtained out of band."),
    url: str = URL, as_json: bool = JSON,
) -> None:
    """Trust this log key for the server, on purpose (replaces trust on first use).

    Fails if another key is pinned: run `evx trust reset` first, on purpose."""
    from evx.client.errors import LogKeyChanged

    output = Output(as_json=as_json)
    verifier = parse_log_key(key)
    with Api(url, None) as api:
        state = trust_state(api)
    pinned = state.pinned_key()
    if pinned is not None and pinned != verifier:
        raise LogKeyChanged(f"another log key is pinned for {api.origin}: {pinned}",
                            hint="If the change was announced out of band, run evx trust reset "
                                 "first (it forgets the saved checkpoint too).")
    state.pin_key(verifier, explicit=True)
    output.result({"server": api.origin, "log_key": str(verifier), "explicit": True},
                  escape(f"trusting {verifier} for {api.origin}"))


@command("keys", group="trust")
def trust_keys(
    authority: str = typer.Argument(..., help="The authority, e.g. FR-OCRTEH."),
    thumbprints: list[str] = typer.Option([], "--thumbprint",
                                          help="RFC 7638 SHA-256 thumbprint of one of its signing "
                                               "keys (repeat); none forgets the authority."),
    url: str = URL, as_json: bool = JSON,
) -> None:
    """Declare the signing keys that really are an authority's (its auditors do this).

    `evx custody`, `evx download` and `evx ledger sync` then fail (exit 1) on any entry acting
    for it under another key, and on any key added for it that is not declared here."""
    output = Output(as_json=as_json)
    with Api(url, None) as api:
        state = trust_state(api)
    state.declare_authority_keys(authority, list(thumbprints))
    output.result({"server": api.origin, "authority": authority,
                   "thumbprints": sorted(set(thumbprints))},
                  escape(f"{authority}: {len(set(thumbprints))} key(s) declared"))


@command("show", group="trust")
def trust_show(url: str = URL, as_json: bool = JSON) -> None:
    """What this machine trusts for the server."""
    output = Output(as_json=as_json)
    with Api(url, None) as api:
        state = trust_state(api)
    pinned = state.configured_key or state.pinned_key()
    data: dict[str, Any] = {
        "server": api.origin, "log_key": str(pinned) if pinned else None,
        "how": "EVX_LOG_KEY" if state.configured_key else
        ("explicit" if state.key_is_explicit else ("first use" if pinned else None)),
        "authority_keys": {k: sorted(v) for k, v in state.authority_keys().items()},
        "packages": {p: {"index": pin.index, "leaf_hash": pin.leaf_hash}
                     for p, pin in state.package_pins().items()}}
    output.result(data, escape(f"log key {data['log_key']} ({data['how']}); "
                               f"{len(data['authority_keys'])} authorities with declared keys; "
                               f"{len(data['packages'])} packages pinned"))


@command("reset", group="trust")
def trust_reset(url: str = URL, as_json: bool = JSON,
                yes: bool = typer.Option(False, "--yes", help="Really forget.")) -> None:
    """Forget the pinned log key, the saved checkpoint and the package pins, on purpose.

    The next command re-pins (on first use, or set it with `evx trust log --key`)."""
    from evx.client.errors import UsageError

    output = Output(as_json=as_json)
    if not yes:
        raise UsageError("evx trust reset forgets what this machine verified before",
                         hint="Run it with --yes if the log key change was announced out of band.")
    with Api(url, None) as api:
        state = trust_state(api)
    removed = state.reset()
    output.result({"server": api.origin, "removed": [str(p) for p in removed]},
                  escape(f"forgot {len(removed)} file(s) of trust in {api.origin}"))
