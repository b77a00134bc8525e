"""`evx login`, `evx logout`, `evx authorities`: officers sign in with their own authority's
identity provider and see the partner directory."""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from typing import Any

import typer
from rich.markup import escape

from evx.cli.app import PANEL_EVIDENCE, command
from evx.cli.options import JSON, OUTPUT, TOKEN, URL, WIDE
from evx.cli.render import Column, Output
from evx.client.http import Api


def _browser_at_hand() -> bool:
    """A browser this process can open: a desktop session, not a remote shell."""
    if os.environ.get("BROWSER"):
        return True
    if os.environ.get("SSH_CONNECTION") or os.environ.get("SSH_TTY"):
        return False
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _claims(token: str) -> dict[str, Any]:
    """The access token's claims, for telling the officer who they are signed in as. Not
    verified here: the server verifies every token it receives."""
    try:
        payload = token.split(".")[1]
        value = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return value if isinstance(value, dict) else {}
    except (IndexError, ValueError):
        return {}


@command("login", panel=PANEL_EVIDENCE)
def login(
    authority: str = typer.Option(..., "--authority", "-a", envvar="EVX_AUTHORITY",
                                  show_envvar=True,
                                  help="Your authority's id on the hub, e.g. FR-OCRTEH."),
    device: bool = typer.Option(False, "--device",
                                help="Sign in with a code on another device (RFC 8628)."),
    browser: bool = typer.Option(False, "--browser",
                                 help="Sign in in this machine's browser (PKCE, loopback)."),
    url: str = URL, as_json: bool = JSON,
) -> None:
    """Sign in with your authority's identity provider; the session is kept for this server
    and renewed by itself, so long transfers never stop on an expired token.

    Default: the browser when one is at hand, else a code to enter on any device. Scripts
    can keep using EVX_TOKEN; `evx token` is for development only."""
    from evx.client.sessions import default_store
    from evx.client.signin import (
        DeviceCode,
        browser_sign_in,
        device_sign_in,
        discover,
        sign_in_target,
    )

    output = Output(as_json=as_json)
    if device and browser:
        raise typer.BadParameter("give --device or --browser, not both")

    def show(code: DeviceCode) -> None:
        minutes = max(1, code.expires_in // 60)
        output.err.print(f"To sign in, open {escape(code.verification_uri)} on any device and "
                         f"enter the code (valid {minutes} min):")
        output.err.print(f"code: [bold]{escape(code.user_code)}[/bold]")
        if code.verification_uri_complete:
            output.err.print(f"or open {escape(code.verification_uri_complete)}")
        output.err.print("waiting for approval...")

    def open_browser(address: str) -> None:
        import webbrowser

        output.err.print("Opening your browser to sign in; if it does not open, visit:\n"
                         f"{escape(address)}")
        webbrowser.open(address)

    def work() -> None:
        import httpx

        with Api(url, None) as api:
            target = sign_in_target(api, authority)
            with httpx.Client(timeout=15.0) as http:
                metadata = discover(target.issuer, http)
            use_browser = browser or (not device and _browser_at_hand() and
                                      "authorization_endpoint" in metadata)
            if use_browser:
                session = browser_sign_in(api.origin, target, metadata,
                                          open_browser=open_browser)
            else:
                session = device_sign_in(api.origin, target, metadata, show=show)
            # The hub has the last word: a token it refuses is not a sign-in.
            with Api(url, session.access_token) as check:
                check.json("GET", "/v1/authorities")
            path = default_store().save(session)
        claims = _claims(session.access_token)
        who = {"server": api.origin, "authority": session.authority,
               "subject": claims.get("sub"), "role": claims.get("role"),
               "issuer": session.issuer, "method": "browser" if use_browser else "device",
               "renewable": session.refresh_token is not None,
               "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                           time.gmtime(session.expires_at)),
               "session_file": str(path)}
        output.result(who, escape(
            f"signed in to {api.origin} as {who['subject']} ({session.authority}, "
            f"{who['role']}); renewed automatically"
            + ("" if session.refresh_token else " -- no refresh token: sign in again when "
               "it expires")))

    work()


@command("logout", panel=PANEL_EVIDENCE)
def logout(url: str = URL, as_json: bool = JSON) -> None:
    """Sign out of this server: the session is revoked at your identity provider and removed."""
    from evx.client.http import server_origin
    from evx.client.sessions import default_store
    from evx.client.signin import revoke

    output = Output(as_json=as_json)

    def work() -> None:
        origin = server_origin(url)
        session = default_store().remove(origin)
        revoked = revoke(session) if session is not None else False
        output.result({"server": origin, "signed_out": session is not None,
                       "revoked": revoked},
                      f"signed out of {origin}" + (" (revoked at the identity provider)"
                                                   if revoked else "")
                      if session is not None else f"not signed in to {origin}")

    work()


#: ``evx authorities``: the partner directory (ids whole: they go into --authority).
DIRECTORY_COLUMNS = (
    Column("id", lambda a: a["id"], id=True),
    Column("name", lambda a: a["name"]),
    Column("country", lambda a: a["country"]),
    Column("roles", lambda a: ",".join(a["roles"])),
)


@command("authorities", panel=PANEL_EVIDENCE)
def authorities(url: str = URL, token: str | None = TOKEN, as_json: bool = JSON,
                output_format: str = OUTPUT, wide: bool = WIDE) -> None:
    """The partner authorities of this server (id, name, country, roles): who a package can
    be shared with (evx share PACKAGE --authority ID)."""
    from evx.client.directory import list_authorities

    output = Output(as_json=as_json, fmt=output_format, wide=wide)
    with Api(url, token) as api:
        found = list_authorities(api)
    output.rows({"authorities": found}, found, DIRECTORY_COLUMNS, empty="no authorities")


def complete_authority(ctx: typer.Context, incomplete: str) -> list[str]:
    """Shell completion of --authority from the server's directory (silent on any failure)."""
    from evx.client.directory import list_authorities
    from evx.client.errors import ClientError

    url = ctx.params.get("url") or os.environ.get("EVX_URL") or "http://127.0.0.1:8000"
    token = ctx.params.get("token") or os.environ.get("EVX_TOKEN")
    try:
        with Api(url, token) as api:
            ids = [a["id"] for a in list_authorities(api)]
    except (ClientError, OSError):
        return []
    return [i for i in ids if i.upper().startswith(incomplete.upper())]

