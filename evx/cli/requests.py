"""`evx request ...` (mutual legal assistance requests) and `evx events` (the event feed).

Times are shown in UTC and in the time zone the request's deadlines are counted in. Every command
prints tables by default and one JSON document with ``--json`` (`evx events --follow --json`:
one JSON object per line, per event).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import typer
from rich.markup import escape
from rich.table import Table

from evx.cli.app import PANEL_EVIDENCE, command, group
from evx.cli.options import JSON, OUTPUT, TOKEN, URL, WIDE
from evx.cli.render import Column, Output, add_row, when
from evx.client.errors import UsageError
from evx.client.http import Api, package_path

group("request", "Mutual legal assistance requests: file, follow, answer.", panel=PANEL_EVIDENCE)

INSTRUMENTS = ("eio", "mla-treaty", "budapest-art29", "budapest-art31",
               "eu-2023-1543-production", "eu-2023-1543-preservation")
URGENCIES = ("normal", "urgent", "emergency")
STATES = ("filed", "acknowledged", "info_requested", "recognised", "postponed",
          "partially_executed", "executed", "refused", "withdrawn")
FOLLOW_SECONDS = 2.0  # how often `evx events --follow` asks


def request_path(request_id: str) -> str:
    return f"/v1/requests/{quote(request_id, safe='')}"


def _choice(value: str | None, allowed: tuple[str, ...], option: str) -> None:
    if value is not None and value not in allowed:
        raise UsageError(f"{option} must be one of {', '.join(allowed)} (not {value!r})")


def _deadline(r: dict[str, Any]) -> str:
    upcoming = r.get("next_deadline")
    if not upcoming:
        return "none"
    text = f"{upcoming['milestone']} by {when(upcoming['due_at'])}"
    return text + (" OVERDUE" if upcoming["overdue"] else "")


def _summary(r: dict[str, Any]) -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    add_row(grid, "request", r["id"])
    add_row(grid, "reference", f"{r['reference']}  (case {r['case_reference']})")
    add_row(grid, "from -> to", f"{r['requesting_authority']} -> {r['executing_authority']}")
    add_row(grid, "instrument", f"{r['instrument']}: {r['legal_basis']}")
    add_row(grid, "offence", r["offence_category"])
    add_row(grid, "measures", "; ".join(r["measures"]))
    add_row(grid, "urgency", r["urgency"])
    if r.get("confidentiality"):
        add_row(grid, "confidentiality", r["confidentiality"])
    if r.get("attachments_package"):
        add_row(grid, "attachments", r["attachments_package"])
    add_row(grid, "state", r["state"])
    add_row(grid, "filed", f"{when(r['filed_at'])} by {r['filed_by']}")
    upcoming = r.get("next_deadline")
    add_row(grid, "next deadline", "none" if not upcoming else
            f"{upcoming['milestone']} by {when(upcoming['due_at'])} = {upcoming['due_local']}"
            + ("  OVERDUE" if upcoming["overdue"] else ""))
    return grid


def _changed(output: Output, r: dict[str, Any], verb: str) -> None:
    output.result(r, escape(f"{r['id']} {verb}: now {r['state']}; next deadline "
                            f"{_deadline(r)}"))


@command("create", group="request")
def request_create(
    to: str = typer.Option(..., "--to", help="The executing authority, e.g. DE-BKA."),
    instrument: str = typer.Option(..., "--instrument", help=" | ".join(INSTRUMENTS)),
    reference: str = typer.Option(..., "--reference", help="Your reference of the request."),
    case_reference: str = typer.Option(..., "--case-ref", help="Your case reference."),
    offence: str = typer.Option(..., "--offence", help="Offence category."),
    measures: list[str] = typer.Option(..., "--measure", help="A measure requested (repeat)."),
    urgency: str = typer.Option("normal", "--urgency", help=" | ".join(URGENCIES)),
    confidentiality: str = typer.Option("", "--confidentiality",
                                        help="Confidentiality note for the executing side."),
    forms: list[Path] = typer.Option([], "--form", help="The signed request form or an annex "
                                     "(repeat): uploaded, encrypted and sealed in a package "
                                     "that goes with the request."),
    attachments: str | None = typer.Option(None, "--attachments",
                                           help="Or: a sealed package of yours to attach."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the request id."),
    url: str = URL, token: str | None = TOKEN, as_json: bool = JSON,
) -> None:
    """File a request to another authority (investigators); with --form the signed form is
    stored as evidence and shared with the executing authority under the request's basis."""
    from evx.cli.packages import _board
    from evx.client.sources import collect_sources
    from evx.client.uploads import upload_file

    _choice(instrument, INSTRUMENTS, "--instrument")
    _choice(urgency, URGENCIES, "--urgency")
    if forms and attachments:
        raise UsageError("give --form or --attachments, not both")
    output = Output(as_json=as_json, quiet=quiet)
    sources = collect_sources(forms) if forms else []
    with Api(url, token) as api:
        if sources:
            package = api.json("POST", "/v1/packages", json={
                "case_reference": case_reference, "title": f"Request {reference}: signed form",
                "description": f"Attachments of request {reference} to {to}"})
            attachments = package["id"]
            board = _board(output, "uploading", len(sources), sum(x.size for x in sources))
            with board:
                for source in sources:
                    _, length, _ = upload_file(api, package["id"], source, None, board)
                    board.file_done(length, transferred=True)
            api.json("POST", package_path(package["id"]) + "/seal")
        r = api.json("POST", "/v1/requests", json={
            "executing_authority": to, "instrument": instrument, "reference": reference,
            "case_reference": case_reference, "offence_category": offence,
            "measures": measures, "urgency": urgency, "confidentiality": confidentiality,
            "attachments_package": attachments})
    if quiet and not as_json:
        print(r["id"])
        return
    output.result(r, escape(f"filed request {r['id']} ({reference}) to {to}; next deadline "
                            f"{_deadline(r)}"))


@command("list", group="request")
def request_list(
    incoming: bool = typer.Option(False, "--incoming", help="Only requests you execute."),
    outgoing: bool = typer.Option(False, "--outgoing", help="Only requests you filed."),
    state: list[str] = typer.Option([], "--state", help="Only these states (repeat)."),
    open_only: bool = typer.Option(False, "--open", help="Only requests not yet closed."),
    due_within: str | None = typer.Option(None, "--due-within",
                                          help="Next deadline within, e.g. 7d, 36h."),
    overdue: bool = typer.Option(False, "--overdue", help="Only those past their deadline."),
    sort: str = typer.Option("due", "--sort", help="due | filed | updated"),
    limit: int = typer.Option(100, min=1, max=500),
    url: str = URL, token: str | None = TOKEN, as_json: bool = JSON,
    output_format: str = OUTPUT, wide: bool = WIDE,
) -> None:
    """Requests your authority filed or must execute, next deadline first."""
    if incoming and outgoing:
        raise UsageError("give --incoming or --outgoing, not both")
    for s in state:
        _choice(s, STATES, "--state")
    _choice(sort, ("due", "filed", "updated"), "--sort")
    params: dict[str, Any] = {"sort": sort, "limit": limit, "state": state}
    if incoming or outgoing:
        params["side"] = "incoming" if incoming else "outgoing"
    if open_only:
        params["open"] = "true"
    if due_within:
        params["due_within"] = due_within
    if overdue:
        params["overdue"] = "true"
    output = Output(as_json=as_json, fmt=output_format, wide=wide)
    with Api(url, token) as api:
        rows = api.json("GET", "/v1/requests", params=params)["requests"]
    output.rows({"requests": rows}, rows, REQUEST_COLUMNS, empty="no requests")


REQUEST_COLUMNS = (
    Column("id", lambda r: r["id"], id=True),
    Column("reference", lambda r: r["reference"]),
    Column("from -> to", lambda r: f"{r['requesting_authority']} -> {r['executing_authority']}"),
    Column("instrument", lambda r: r["instrument"]),
    Column("urgency", lambda r: r["urgency"]),
    Column("state", lambda r: r["state"]),
    Column("next deadline (UTC)", _deadline),
    Column("case", lambda r: r["case_reference"], wide=True),
    Column("filed (UTC)", lambda r: when(r["filed_at"]), wide=True),
    Column("updated (UTC)", lambda r: when(r["updated_at"]), wide=True),
)


def _deadline_status(d: dict[str, Any]) -> str:
    return ("OVERDUE" if d["overdue"] else "open") if d["open"] else (
        f"met {when(d['met_at'])}" if d["met_at"] else "closed")


def _deadline_columns(zone: str) -> tuple[Column, ...]:
    return (Column("milestone", lambda d: d["milestone"]),
            Column("due (UTC)", lambda d: when(d["due_at"])),
            Column(f"due ({zone})", lambda d: d["due_local"]),
            Column("rule", lambda d: d["rule"]),
            Column("status", _deadline_status),
            Column("source", lambda d: d["source"]))


#: ``evx request show``'s history (also its ``-o tsv``): the request's record.
HISTORY_COLUMNS = (
    Column("when (UTC)", lambda h: when(h["at"])),
    Column("step", lambda h: h["action"]),
    Column("state", lambda h: h["state"]),
    Column("by", lambda h: f"{h['authority']} ({h['subject']})"),
    Column("note", lambda h: h["note"]),
)

DELIVERY_COLUMNS = (
    Column("package", lambda d: d["package"], id=True),
    Column("delivered (UTC)", lambda d: when(d["delivered_at"])),
    Column("by", lambda d: d["delivered_by"]),
    Column("items downloaded", lambda d: str(d["items_downloaded"])),
    Column("manifest", lambda d: d["manifest_sha256"], id=True),
)


@command("show", group="request")
def request_show(request_id: str = typer.Argument(..., metavar="REQUEST"),
                 url: str = URL, token: str | None = TOKEN, as_json: bool = JSON,
                 output_format: str = OUTPUT, wide: bool = WIDE) -> None:
    """A request with its deadlines (UTC and local), history and the packages answering it
    (-o tsv: the history)."""
    output = Output(as_json=as_json, fmt=output_format, wide=wide)
    with Api(url, token) as api:
        r = api.json("GET", request_path(request_id))
    if output.as_json or output.tsv:
        output.rows(r, r["history"] or [], HISTORY_COLUMNS, empty="")
        return
    output.out.print(_summary(r))
    output.rows(r, r["deadlines"] or [], _deadline_columns(r["timezone"]), empty="no deadlines",
                title="deadlines")
    output.rows(r, r["history"] or [], HISTORY_COLUMNS, empty="no history", title="history")
    if r.get("deliveries"):
        output.rows(r, r["deliveries"], DELIVERY_COLUMNS, empty="", title="delivered")


def _step(step: str, verb: str, request_id: str, note: str, url: str, token: str | None,
          as_json: bool, until: str | None = None) -> None:
    output = Output(as_json=as_json)
    body: dict[str, Any] = {"note": note}
    if until:
        body["until"] = until
    with Api(url, token) as api:
        r = api.json("POST", f"{request_path(request_id)}/{step}", json=body)
    _changed(output, r, verb)


_REQ = typer.Argument(..., metavar="REQUEST")
_NOTE = typer.Option("", "--note", help="A note on the record of the request.")


@command("ask", group="request")
def request_ask(request_id: str = _REQ,
                note: str = typer.Option(..., "--note", help="What you need to know."),
                url: str = URL, token: str | None = TOKEN, as_json: bool = JSON) -> None:
    """Ask the requesting authority for more information (executing side)."""
    _step("ask", "information asked", request_id, note, url, token, as_json)


@command("answer", group="request")
def request_answer(request_id: str = _REQ,
                   note: str = typer.Option(..., "--note", help="The information asked for."),
                   url: str = URL, token: str | None = TOKEN, as_json: bool = JSON) -> None:
    """Give the information the executing authority asked for (requesting side)."""
    _step("answer", "answered", request_id, note, url, token, as_json)


@command("refuse", group="request")
def request_refuse(request_id: str = _REQ,
                   grounds: str = typer.Option(..., "--grounds", help="The grounds for refusal."),
                   url: str = URL, token: str | None = TOKEN, as_json: bool = JSON) -> None:
    """Refuse the request with its grounds (executing side)."""
    _step("refuse", "refused", request_id, grounds, url, token, as_json)


@command("postpone", group="request")
def request_postpone(request_id: str = _REQ,
                     grounds: str = typer.Option(..., "--grounds", help="Why it is postponed."),
                     until: str | None = typer.Option(None, "--until",
                                                      help="Until when (RFC 3339 with zone)."),
                     url: str = URL, token: str | None = TOKEN, as_json: bool = JSON) -> None:
    """Postpone recognition or execution (executing side); `recognise` resumes it."""
    _step("postpone", "postponed", request_id, grounds, url, token, as_json, until)


@command("deliver", group="request")
def request_deliver(request_id: str = _REQ,
                    package_id: str = typer.Argument(..., metavar="PACKAGE"),
                    expires: str | None = typer.Option(None, "--expires",
                                                       help="When the share ends (RFC 3339)."),
                    url: str = URL, token: str | None = TOKEN, as_json: bool = JSON) -> None:
    """Share a sealed package with the requesting authority as (part of) the answer; the share
    takes the request's legal basis and reference (executing side)."""
    output = Output(as_json=as_json)
    with Api(url, token) as api:
        r = api.json("POST", f"{request_path(request_id)}/deliveries",
                     json={"package": package_id, "expires_at": expires})
    output.result(r, escape(f"{package_id} shared with {r['requesting_authority']} for "
                            f"{r['id']} ({r['reference']})"))


@command("fulfil", group="request")
def request_fulfil(request_id: str = _REQ,
                   partly: bool = typer.Option(False, "--partly",
                                               help="Executed in part; more is to come."),
                   note: str = _NOTE, url: str = URL, token: str | None = TOKEN,
                   as_json: bool = JSON) -> None:
    """Mark the request executed in full (or in part with --partly) (executing side)."""
    _step("execute-partly" if partly else "fulfil",
          "executed in part" if partly else "fulfilled", request_id, note, url, token, as_json)


def _simple_step(name: str, step: str, verb: str, doc: str) -> None:
    """``evx request NAME REQUEST [--note]``: a step that needs nothing but the request."""

    def run(request_id: str = _REQ, note: str = _NOTE, url: str = URL,
            token: str | None = TOKEN, as_json: bool = JSON) -> None:
        _step(step, verb, request_id, note, url, token, as_json)

    run.__doc__ = doc
    run.__name__ = f"request_{step.replace('-', '_')}"
    command(name, group="request")(run)


for _args in [("ack", "acknowledge", "acknowledged", "Acknowledge receipt (executing side)."),
              ("recognise", "recognise", "recognised",
               "Recognise the request: it will be executed (executing side)."),
              ("withdraw", "withdraw", "withdrawn", "Withdraw the request (requesting side).")]:
    _simple_step(*_args)


# -- the event feed --------------------------------------------------------------------------------

def _event_line(e: dict[str, Any]) -> str:
    data = e["data"]
    subject = data.get("request") or data.get("package") or ""
    extra = data.get("reference") or data.get("item") or ""
    return f"{e['seq']:>6}  {when(e['timestamp'])}  {e['type']:<30} {subject}  {extra}".rstrip()


@command("events", panel=PANEL_EVIDENCE)
def events(
    after: int = typer.Option(0, "--after", min=0, help="Only events after this seq."),
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep reading (Ctrl-C stops)."),
    event_type: list[str] = typer.Option([], "--type", help="Only this event type (repeat)."),
    limit: int = typer.Option(100, min=1, max=500),
    url: str = URL, token: str | None = TOKEN, as_json: bool = JSON,
) -> None:
    """Events concerning your authority: new requests and their steps, shares, downloads of
    your packages, deadlines approaching and passed, shares expiring. With --follow, new ones
    as they come (--json: one JSON object per line)."""
    output = Output(as_json=as_json)
    with Api(url, token) as api:
        while True:
            feed = api.json("GET", "/v1/events", params={"after": after, "limit": limit,
                                                         "type": event_type})
            if not follow:
                output.result(feed, "\n".join(escape(_event_line(e)) for e in feed["events"])
                              or "no events")
                return
            for e in feed["events"]:
                if as_json:
                    sys.stdout.write(json.dumps(e, default=str) + "\n")
                else:
                    output.out.print(escape(_event_line(e)))
            sys.stdout.flush()
            after = feed["last"]
            if len(feed["events"]) < limit:
                time.sleep(FOLLOW_SECONDS)
