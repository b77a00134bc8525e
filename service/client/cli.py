"""`evx` client commands: packages, transfers, custody and the ledger monitor.

Server and token come from ``--url``/``--token`` or ``EVX_URL``/``EVX_TOKEN``. Every command
prints readable output by default and one JSON document with ``--json``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.markup import escape
from rich.table import Table

from service.client.errors import EXIT_CODES_HELP, ClientError, UsageError
from service.client.http import DEFAULT_URL, Api, package_path
from service.client.render import Output
from service.client.state import TrustState, default_state_dir

T = TypeVar("T")

package_app = typer.Typer(help="Evidence packages: create, list, show.", no_args_is_help=True)

_URL = typer.Option(DEFAULT_URL, "--url", envvar="EVX_URL", show_envvar=True,
                    help="The evidence-exchange server.")
_TOKEN = typer.Option(None, "--token", envvar="EVX_TOKEN", show_envvar=True,
                      show_default=False,
                      help="Your bearer token (prefer the environment variable: command lines "
                           "are visible to other users).")
_JSON = typer.Option(False, "--json", help="One JSON document on stdout, for scripts.")


def register(app: typer.Typer) -> None:
    """Mount the client commands on the root ``evx`` app."""
    from service.ledger_cli import ledger_app

    app.add_typer(package_app, name="package")
    for name, command in (("upload", upload), ("seal", seal), ("share", share),
                          ("revoke", revoke), ("download", download), ("custody", custody)):
        app.command(name, epilog=EXIT_CODES_HELP)(command)
    for name, command in (("sync", ledger_sync), ("export", ledger_export),
                          ("key", ledger_key)):
        ledger_app.command(name, epilog=EXIT_CODES_HELP)(command)


def _run(output: Output, work: Callable[[], T]) -> T:
    try:
        return work()
    except ClientError as exc:
        output.error(exc)
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        output.err.print("interrupted; run the same command again to resume")
        raise typer.Exit(130) from None


def _trust(api: Api) -> TrustState:
    return TrustState(default_state_dir(), api.origin)


def _when(value: Any) -> str:
    if not value:
        return ""
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).strftime(
            "%Y-%m-%d %H:%M:%S %Z").strip()
    except ValueError:
        return str(value)


def _row(table: Table, *cells: str) -> None:
    """Add a row of server-supplied text: escaped, so names cannot inject rich markup; long
    values (digests, item names) fold onto more lines instead of being cut."""
    for column in table.columns:
        column.overflow = "fold"
    table.add_row(*(escape(c) for c in cells))


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)


# -- packages --------------------------------------------------------------------------------

def _package_summary(p: dict[str, Any]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    _row(table, "package", p["id"])
    _row(table, "title", p["title"])
    _row(table, "case", p["case_reference"])
    if p.get("description"):
        _row(table, "description", p["description"])
    _row(table, "owner", f"{p['owner_authority']} ({p['created_by']}), "
                           f"created {_when(p['created_at'])}")
    _row(table, "sealed", f"yes, {_when(p['sealed_at'])} manifest {p['manifest_sha256']}"
                  if p["sealed"] else "no")
    return table


@package_app.command("create", epilog=EXIT_CODES_HELP)
def package_create(
    case_reference: str = typer.Option(..., "--case-ref", help="Your case reference."),
    title: str = typer.Option(..., "--title", help="What the package holds."),
    description: str = typer.Option("", "--description"),
    quiet: bool = typer.Option(False, "--quiet", "-q",
                               help="Print only the package id (PKG=$(evx package create -q ...))."),
    url: str = _URL, token: str | None = _TOKEN, as_json: bool = _JSON,
) -> None:
    """Create an evidence package owned by your authority (investigators)."""
    output = Output(as_json=as_json)

    def work() -> None:
        with Api(url, token) as api:
            p = api.json("POST", "/v1/packages", json={"case_reference": case_reference,
                                                       "title": title,
                                                       "description": description})
        if quiet and not as_json:
            print(p["id"])
            return
        output.result(p, escape(f"created package {p['id']}  ({p['title']}, case "
                                f"{p['case_reference']})\nnext: evx upload {p['id']} "
                                "FILE-OR-DIR..."))

    _run(output, work)


@package_app.command("list", epilog=EXIT_CODES_HELP)
def package_list(url: str = _URL, token: str | None = _TOKEN, as_json: bool = _JSON,
                 limit: int = typer.Option(100, min=1, max=500)) -> None:
    """Packages your authority owns or that are shared with it."""
    output = Output(as_json=as_json)

    def work() -> None:
        with Api(url, token) as api:
            packages = api.json("GET", "/v1/packages", params={"limit": limit})["packages"]
        table = Table("id", "title", "case", "owner", "sealed", "items", "size", "shared with")
        for p in packages:
            shares = p.get("shares") or ([p["share"]] if p.get("share") else [])
            _row(table, p["id"], p["title"], p["case_reference"], p["owner_authority"],
                          "yes" if p["sealed"] else "no", str(len(p["items"])),
                          _size(sum(i["size"] for i in p["items"])),
                          ", ".join(s["authority"] + ("" if s["active"] else " (inactive)")
                                    for s in shares))
        output.result({"packages": packages}, table if packages else "no packages")

    _run(output, work)


@package_app.command("show", epilog=EXIT_CODES_HELP)
def package_show(package_id: str = typer.Argument(..., metavar="PACKAGE"),
                 url: str = _URL, token: str | None = _TOKEN, as_json: bool = _JSON) -> None:
    """A package's metadata, items (name, size, SHA-256) and shares."""
    output = Output(as_json=as_json)

    def work() -> None:
        with Api(url, token) as api:
            p = api.json("GET", package_path(package_id))
        if as_json:
            output.result(p)
            return
        output.out.print(_package_summary(p))
        items = Table("item", "size", "sha256", "uploaded", "by", title="items")
        for i in p["items"]:
            _row(items, i["name"], _size(i["size"]), i["sha256"], _when(i["uploaded_at"]),
                          i["uploaded_by"])
        output.out.print(items)
        shares = p.get("shares") or ([p["share"]] if p.get("share") else [])
        if shares:
            table = Table("authority", "legal basis", "request", "expires", "state",
                          title="shares")
            for s in shares:
                state = "active" if s["active"] else (
                    f"revoked {_when(s['revoked_at'])}" if s["revoked_at"] else "expired")
                _row(table, s["authority"], s["legal_basis"], s["request_reference"],
                              _when(s["expires_at"]) or "never", state)
            output.out.print(table)

    _run(output, work)


# -- transfers -------------------------------------------------------------------------------

def upload(
    package_id: str = typer.Argument(..., metavar="PACKAGE"),
    paths: list[Path] = typer.Argument(..., metavar="FILE...",
                                       help="Files and directories (uploaded recursively)."),
    url: str = _URL, token: str | None = _TOKEN, as_json: bool = _JSON,
) -> None:
    """Upload files and directories as items, digest-checked.

    The SHA-256 is computed here first, then the file is streamed with an RFC 9530
    Content-Digest the service checks (a mismatch stores nothing). A directory becomes items
    named <dir>/<relative path>; links leaving it are refused. An item already there with the
    same digest is skipped; with a different digest it is an error."""
    from service.client.files import collect_sources
    from service.client.transfer import upload_one

    output = Output(as_json=as_json)

    def work() -> None:
        sources = collect_sources(paths)
        results = []
        with Api(url, token) as api:
            package = api.json("GET", package_path(package_id))
            existing = {i["name"]: i for i in package["items"]}
            if package["sealed"] and any(s.name not in existing for s in sources):
                raise UsageError(f"package {package_id} is sealed and cannot take new items",
                                 hint="Create a new package.", slug="package-sealed")
            with output.progress() as transfers:
                for source in sources:
                    result = upload_one(api, package_id, source, existing.get(source.name),
                                        transfers)
                    results.append(result)
                    if result.status == "skipped":
                        output.note(escape(f"skipped {result.name}: already in the package "
                                           "with the same SHA-256"))
                    else:
                        output.note(escape(f"uploaded {result.name}  {_size(result.size)}  "
                                           f"sha256 {result.sha256}"))
        uploaded = [r for r in results if r.status == "uploaded"]
        output.result({"package": package_id, "items": [r.to_json() for r in results]},
                      escape(f"{len(uploaded)} uploaded, {len(results) - len(uploaded)} "
                             f"skipped ({_size(sum(r.size for r in uploaded))}) to "
                             f"{package_id}"))

    _run(output, work)


def download(
    package_id: str = typer.Argument(..., metavar="PACKAGE"),
    items: list[str] = typer.Argument(None, metavar="[ITEM...]",
                                      help="Item names (default: all items)."),
    out_dir: Path = typer.Option(..., "-o", "--output", help="Directory to save into."),
    limit_rate: int | None = typer.Option(None, "--limit-rate", min=1,
                                          help="Bytes per second at most (per transfer)."),
    url: str = _URL, token: str | None = _TOKEN, as_json: bool = _JSON,
) -> None:
    """Download items, verified, resuming interrupted downloads.

    Each file appears under -o only after its SHA-256 matched the package's record and the service's Repr-Digest. Interrupted downloads resume from
    DIR/.evx-partial when the command is run again; a mismatch deletes the partial file."""
    from service.client.transfer import download_one

    output = Output(as_json=as_json)

    def work() -> None:
        results = []
        with Api(url, token) as api:
            package = api.json("GET", package_path(package_id))
            by_name = {i["name"]: i for i in package["items"]}
            wanted = list(items) if items else list(by_name)
            missing = [n for n in wanted if n not in by_name]
            if missing:
                raise UsageError(f"package {package_id} has no item {missing[0]!r}",
                                 hint=f"See evx package show {package_id}.", slug="not-found")
            out_dir.mkdir(parents=True, exist_ok=True)
            with output.progress() as transfers:
                for name in wanted:
                    result = download_one(api, package_id, by_name[name], out_dir, transfers,
                                          limit_rate=limit_rate)
                    results.append(result)
                    resumed = f" (resumed at byte {result.resumed_from})" \
                        if result.resumed_from else ""
                    verb = "verified" if result.status == "downloaded" else "already present, " \
                                                                            "verified"
                    output.note(escape(f"{verb} {result.path}  {_size(result.size)}  sha256 "
                                       f"{result.sha256}{resumed}"))
        output.result({"package": package_id, "items": [r.to_json() for r in results]},
                      escape(f"{len(results)} item(s) of {package_id} in {out_dir}, all "
                             "SHA-256 verified"))

    _run(output, work)


# -- package state ---------------------------------------------------------------------------

def seal(package_id: str = typer.Argument(..., metavar="PACKAGE"),
         url: str = _URL, token: str | None = _TOKEN, as_json: bool = _JSON) -> None:
    """Seal a package: it never changes again; its manifest hash goes into the ledger."""
    output = Output(as_json=as_json)

    def work() -> None:
        with Api(url, token) as api:
            body = api.json("POST", package_path(package_id) + "/seal")
        output.result(body, escape(f"sealed {package_id}: manifest sha256 "
                                   f"{body['manifest_sha256']} (ledger entry "
                                   f"{body['ledger_index']})"))

    _run(output, work)


def share(
    package_id: str = typer.Argument(..., metavar="PACKAGE"),
    authority: str = typer.Option(..., "--authority", help="Recipient authority id."),
    legal_basis: str = typer.Option(..., "--legal-basis",
                                    help="e.g. 'EIO Directive 2014/41/EU art. 1'."),
    request_reference: str = typer.Option(..., "--request-ref",
                                          help="The mutual-assistance request reference."),
    expires: datetime | None = typer.Option(None, "--expires", formats=[
        "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z", "%Y-%m-%d"],
        help="ISO 8601 with a time zone, e.g. 2026-12-31T23:59:59+01:00 (or a date, UTC)."),
    url: str = _URL, token: str | None = _TOKEN, as_json: bool = _JSON,
) -> None:
    """Share a sealed package with another authority under a legal basis."""
    from datetime import UTC

    output = Output(as_json=as_json)

    def work() -> None:
        body: dict[str, Any] = {"authority": authority, "legal_basis": legal_basis,
                                "request_reference": request_reference}
        if expires is not None:
            # Sent in UTC: the service's SQLite backend drops a non-UTC offset unconverted.
            aware = expires if expires.tzinfo else expires.replace(tzinfo=UTC)
            body["expires_at"] = aware.astimezone(UTC).isoformat()
        with Api(url, token) as api:
            s = api.json("POST", package_path(package_id) + "/shares", json=body)
        until = f" until {_when(s['expires_at'])}" if s.get("expires_at") else ""
        output.result(s, escape(f"shared {package_id} with {s['authority']}{until} "
                                f"({s['legal_basis']}; {s['request_reference']})"))

    _run(output, work)


def revoke(package_id: str = typer.Argument(..., metavar="PACKAGE"),
           authority: str = typer.Option(..., "--authority"),
           url: str = _URL, token: str | None = _TOKEN, as_json: bool = _JSON) -> None:
    """Revoke the share with an authority: its officers can no longer retrieve the package."""
    from urllib.parse import quote

    output = Output(as_json=as_json)

    def work() -> None:
        with Api(url, token) as api:
            s = api.json("DELETE", package_path(package_id) + "/shares/"
                         + quote(authority, safe=""))
        output.result(s, escape(f"revoked the share of {package_id} with "
                                f"{s['authority']}"))

    _run(output, work)


# -- custody ---------------------------------------------------------------------------------

def custody(
    package_id: str = typer.Argument(..., metavar="PACKAGE"),
    verify: bool = typer.Option(True, "--verify/--no-verify",
                                help="Verify offline (default): inclusion proofs, the package "
                                     "chain, the checkpoint signature under the pinned log "
                                     "key, and consistency with the checkpoint saved here."),
    url: str = _URL, token: str | None = _TOKEN, as_json: bool = _JSON,
) -> None:
    """A package's chain of custody as a timeline, verified offline.

    Inclusion proofs, the package chain and the checkpoint signature are checked against the
    log key pinned on first use, and the checkpoint against the one saved here (consistency
    proof); then the newer checkpoint is saved."""
    from service.client.trust import (
        advance_checkpoint,
        pinned_log_key,
        verify_continuation,
        verify_custody,
    )

    output = Output(as_json=as_json)

    def work() -> None:
        with Api(url, token) as api:
            pages = []
            start = 0
            while True:
                body = api.json("GET", package_path(package_id) + "/custody",
                                params={"start": start})
                pages.append(body)
                if body["complete"] or not body["entries"]:
                    break
                start = body["entries"][-1]["index"] + 1
            result: dict[str, Any] = {"package": package_id, "verified": False}
            if verify:
                state = _trust(api)
                pinned = pinned_log_key(api, state)
                if pinned.newly_pinned:
                    output.note(escape(f"pinned the log key of {api.origin} on first use: "
                                       f"{pinned.key}"))
                entries = verify_custody(pages[0], pinned.key, package_id)
                for page in pages[1:]:
                    entries += verify_continuation(page, pinned.key, package_id,
                                                   entries[-1].leaf_hash().hex())
                advance = None
                for page in pages:
                    advance = advance_checkpoint(api, state, pinned.key, page["checkpoint"])
                assert advance is not None
                result.update(verified=True, checkpoint=advance.to_json(),
                              log_key=str(pinned.key))
        raw_entries = [e["entry"] for page in pages for e in page["entries"]]
        result["entries"] = raw_entries
        if as_json:
            output.result(result)
            return
        output.out.print(_timeline(package_id, raw_entries))
        if verify:
            cp = result["checkpoint"]
            since = "" if cp["previous_size"] is None else \
                f", consistent with the {cp['previous_size']} entries verified here before"
            output.out.print(f"[bold green]VERIFIED[/bold green] {len(raw_entries)} entries: "
                             f"inclusion proofs and package chain against the checkpoint of "
                             f"{cp['tree_size']} entries signed by the pinned log key{since}.")
        else:
            output.out.print("[yellow]NOT verified[/yellow] (--no-verify)")

    _run(output, work)


def _timeline(package_id: str, entries: list[dict[str, Any]]) -> Table:
    table = Table("#", "time (UTC)", "authority / subject / role", "action", "outcome",
                  "item", "legal reference", title=escape(f"custody of {package_id}"))
    table.columns[0].no_wrap = table.columns[1].no_wrap = True
    for e in entries:
        actor = e["actor"]
        outcome = e["outcome"] if e["outcome"] == "allowed" else \
            f"{e['outcome']}: {e.get('reason') or ''}"
        legal = e.get("legal")
        details = e.get("details") or {}
        extra = ""
        if e["action"] == "share.created" and details.get("authority"):
            extra = f" → {details['authority']}"
        _row(table, str(e["index"]), e["time"][:19].replace("T", " "),
                      f"{actor['authority']} / {actor['subject']} / {actor['role']}",
                      e["action"] + extra, outcome, e.get("item") or "",
                      f"{legal['basis']}; {legal['request_reference']}" if legal else "")
    return table


# -- ledger ----------------------------------------------------------------------------------

def ledger_sync(
    url: str = _URL, token: str | None = _TOKEN, as_json: bool = _JSON,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No output unless it fails "
                                                             "(for cron)."),
) -> None:
    """Monitor the ledger: refuse a rewritten history or a changed log key.

    Fetches the signed checkpoint, verifies it under the pinned log key (pinned on first use; a changed key is refused), prove it extends the checkpoint saved
    here (consistency proof), then save it. Any inconsistency exits non-zero."""
    from service.client.trust import advance_checkpoint, pinned_log_key

    output = Output(as_json=as_json, quiet=quiet)

    def work() -> None:
        with Api(url, token) as api:
            state = _trust(api)
            pinned = pinned_log_key(api, state)
            note = api.request("GET", "/v1/ledger/checkpoint").text
            advance = advance_checkpoint(api, state, pinned.key, note)
        data = {"ok": True, "server": api.origin, "newly_pinned": pinned.newly_pinned,
                "log_key": str(pinned.key), **advance.to_json()}
        if advance.previous_size is None:
            text = (f"trusting {api.origin} from now on: log key pinned, checkpoint of "
                    f"{advance.checkpoint.size} entries saved")
        else:
            text = (f"ledger consistent: {advance.previous_size} → {advance.checkpoint.size} "
                    f"entries, signed by the pinned key")
        output.result(data, escape(text))

    _run(output, work)


def ledger_export(
    out_file: Path = typer.Option(..., "-o", "--output", help="Where to write the export."),
    verify: bool = typer.Option(True, "--verify/--no-verify",
                                help="Verify the export with the pinned key and the "
                                     "checkpoint saved here (default), then save its "
                                     "checkpoint."),
    url: str = _URL, token: str | None = _TOKEN, as_json: bool = _JSON,
) -> None:
    """Export the whole ledger to a file and verify it (operator's auditors).

    Streamed to the file, then verified offline; `evx ledger verify FILE --key "$(evx ledger key)"` repeats the check anywhere."""
    from service.client.trust import advance_checkpoint, pinned_log_key

    output = Output(as_json=as_json)

    def work() -> None:
        from custody.cli import verify_file
        from custody.errors import VerificationError

        from service.client.errors import IntegrityFailure, LedgerInconsistent

        temporary = out_file.with_name(f".{out_file.name}.{os.getpid()}.part")
        written = 0
        with Api(url, token) as api:
            state = _trust(api)
            pinned = pinned_log_key(api, state) if verify else None
            try:
                with output.progress() as transfers, \
                        api.stream("GET", "/v1/ledger/export") as response, \
                        temporary.open("wb") as handle:
                    task = transfers.start("exporting ledger", 0)
                    for block in response.iter_bytes(1024 * 1024):
                        handle.write(block)
                        written += len(block)
                        transfers.advance(task, len(block))
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(temporary, out_file)
            finally:
                temporary.unlink(missing_ok=True)
            result: dict[str, Any] = {"file": str(out_file), "bytes": written,
                                      "verified": False}
            if pinned is not None:
                saved = state.saved_checkpoint(pinned.key)
                try:
                    verified = verify_file(out_file, pinned.key,
                                           saved.checkpoint if saved else None)
                except VerificationError as exc:
                    kind = LedgerInconsistent if type(exc).__name__ in (
                        "ForkError", "RollbackError") else IntegrityFailure
                    raise kind(f"the export {out_file} does NOT verify: "
                               f"{type(exc).__name__}: {exc}",
                               hint="Keep the file as evidence and report it.") from exc
                advance = advance_checkpoint(api, state, pinned.key, verified.checkpoint_note)
                result.update(verified=True, entries=verified.entry_count,
                              packages=verified.package_count, checkpoint=advance.to_json())
        text = escape(f"exported {written} bytes to {out_file}")
        if result["verified"]:
            text += (f"\n[bold green]VERIFIED[/bold green] {result['entries']} entries, "
                     f"{result['packages']} packages, under the pinned log key"
                     + ("" if result["checkpoint"]["previous_size"] is None else
                        f"; extends the {result['checkpoint']['previous_size']} entries "
                        "verified here before"))
        output.result(result, text)

    _run(output, work)


def ledger_key(url: str = _URL, as_json: bool = _JSON) -> None:
    """Print the log's verifier key pinned here (pinning it on first use).

    E.g. for
    `evx ledger verify FILE --key "$(evx ledger key)"`. A changed key is refused."""
    from service.client.trust import pinned_log_key

    output = Output(as_json=as_json)

    def work() -> None:
        with Api(url, None) as api:
            state = _trust(api)
            pinned = pinned_log_key(api, state)
        output.result({"server": api.origin, "log_key": str(pinned.key),
                       "newly_pinned": pinned.newly_pinned, "file": str(state.key_path)},
                      escape(str(pinned.key)))

    _run(output, work)
