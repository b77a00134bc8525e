"""`evx webhook ...`: the hub's administrator registers an authority's webhook endpoints (on the
server's machine, like `evx authority add`). The authority's auditors see the delivery log at
`GET /v1/webhooks`."""

from __future__ import annotations

import base64
import json
import os
from datetime import UTC, datetime

import typer

from evx.cli.app import PANEL_SERVER, command, group
from evx.cli.options import OUTPUT, WIDE
from evx.cli.render import Column, Output, when
from evx.client.errors import DeniedError, UsageError

group("webhook", "Webhook endpoints of partner authorities (Standard Webhooks).",
      panel=PANEL_SERVER)

SECRET_BYTES = 32  # Standard Webhooks: secrets of 24 to 64 bytes, base64, prefixed whsec_
_JSON = typer.Option(False, "--json", help="Machine-readable.")


@command("add", group="webhook", server=True)
def webhook_add(
    authority: str = typer.Argument(..., help="The authority the events concern, e.g. DE-BKA."),
    url: str = typer.Argument(..., help="http(s) URL that receives the POSTs."),
    events: str = typer.Option("", "--events", help="Comma-separated event types (default all)."),
    as_json: bool = _JSON,
) -> None:
    """Register an endpoint; prints its signing secret once (hand it to the authority)."""
    from evx.cli.identity import _registry_session
    from service.events.repository import add_endpoint
    from service.identity.registry import TrustRegistry

    if not url.startswith(("http://", "https://")) or len(url) > 2000:
        raise UsageError("the URL must be http:// or https:// (at most 2000 characters)")
    secret = "whsec_" + base64.b64encode(os.urandom(SECRET_BYTES)).decode()
    types = [t.strip() for t in events.split(",") if t.strip()]
    with _registry_session() as (conn, _):
        TrustRegistry(conn).get_authority(authority)  # unknown: refused by the exit table
        endpoint = add_endpoint(conn, authority=authority, url=url, secret=secret,
                                event_types=types, now=datetime.now(UTC))
    if as_json:
        typer.echo(json.dumps({"id": endpoint.id, "authority": authority, "url": url,
                               "secret": secret, "event_types": types}))
    else:
        typer.echo(f"added {endpoint.id} for {authority}: {url}\nsecret: {secret}")


#: ``evx webhook list`` (rows: the --json objects; secrets are never listed).
ENDPOINT_COLUMNS = (
    Column("id", lambda e: e["id"], id=True),
    Column("authority", lambda e: e["authority"]),
    Column("state", lambda e: "disabled" if e["disabled_at"] else "active"),
    Column("url", lambda e: e["url"]),
    Column("events", lambda e: ",".join(e["event_types"]) or "all events"),
    Column("created (UTC)", lambda e: when(e["created_at"]), wide=True),
    Column("disabled (UTC)", lambda e: when(e["disabled_at"]), wide=True),
)


@command("list", group="webhook", server=True)
def webhook_list(as_json: bool = _JSON, output_format: str = OUTPUT, wide: bool = WIDE) -> None:
    """Every endpoint (secrets not shown)."""
    from evx.cli.identity import _registry_session
    from service.events.repository import endpoints

    output = Output(as_json=as_json, fmt=output_format, wide=wide)
    with _registry_session() as (conn, _):
        rows = endpoints(conn)
    data = [{"id": e.id, "authority": e.authority, "url": e.url, "event_types": e.event_types,
             "created_at": e.created_at.isoformat(),
             "disabled_at": e.disabled_at.isoformat() if e.disabled_at else None} for e in rows]
    output.rows({"endpoints": data}, data, ENDPOINT_COLUMNS, empty="no webhook endpoints")


@command("disable", group="webhook", server=True)
def webhook_disable(endpoint_id: str = typer.Argument(..., metavar="ID"),
                    as_json: bool = _JSON) -> None:
    """Stop sending to an endpoint (its log stays)."""
    from evx.cli.identity import _registry_session
    from service.events.repository import disable_endpoint

    with _registry_session() as (conn, _):
        changed = disable_endpoint(conn, endpoint_id, datetime.now(UTC))
    if not changed:
        raise DeniedError(f"no active webhook endpoint {endpoint_id}")
    typer.echo(json.dumps({"disabled": endpoint_id}) if as_json else f"disabled {endpoint_id}")
