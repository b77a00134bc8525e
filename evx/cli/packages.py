"""`evx` client commands: packages and transfers (custody and the ledger: ``audit``).

Server and token come from ``--url``/``--token`` or ``EVX_URL``/``EVX_TOKEN``. Every command
prints readable output by default and one JSON document with ``--json``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from evx.cli.app import PANEL_EVIDENCE, command, group
from evx.cli.board import Board
from evx.cli.options import JSON, OUTPUT, RETRIES, TOKEN, URL, WIDE, connect, trust_state
from evx.cli.render import Column, Output, add_row
from evx.cli.render import size as _size
from evx.cli.render import when as _when
from evx.client.directory import check_partner
from evx.client.errors import DeniedError, UsageError
from evx.client.http import Api, package_path

group("package", "Evidence packages: create, list, show.", panel=PANEL_EVIDENCE)


# -- packages --------------------------------------------------------------------------------

def _package_summary(p: dict[str, Any]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold")
    table.add_column()
    add_row(table, "package", p["id"])
    add_row(table, "title", p["title"])
    add_row(table, "case", p["case_reference"])
    if p.get("description"):
        add_row(table, "description", p["description"])
    add_row(table, "owner", f"{p['owner_authority']} ({p['created_by']}), "
                           f"created {_when(p['created_at'])}")
    add_row(table, "sealed", f"yes, {_when(p['sealed_at'])} manifest {p['manifest_sha256']}"
                  if p["sealed"] else "no")
    return table


@command("create", group="package")
def package_create(
    case_reference: str = typer.Option(..., "--case-ref", help="Your case reference."),
    title: str = typer.Option(..., "--title", help="What the package holds."),
    description: str = typer.Option("", "--description"),
    quiet: bool = typer.Option(
        False, "--quiet", "-q", help="Print only the package id (PKG=$(evx package create -q ...))."
    ),
    url: str = URL,
    token: str | None = TOKEN,
    as_json: bool = JSON,
    retries: int = RETRIES,
) -> None:
    """Create an evidence package owned by your authority (investigators)."""
    output = Output(as_json=as_json)

    with connect(url, token, output, retries) as api:
        p = api.json("POST", "/v1/packages", json={"case_reference": case_reference,
                                                   "title": title,
                                                   "description": description})
    if quiet and not as_json:
        print(p["id"])
        return
    output.result(p, escape(f"created package {p['id']}  ({p['title']}, case "
                            f"{p['case_reference']})\nnext: evx upload {p['id']} "
                            "FILE-OR-DIR..."))


def _shares(p: dict[str, Any]) -> list[dict[str, Any]]:
    return p.get("shares") or ([p["share"]] if p.get("share") else [])


#: ``evx package list``: the id in full on one line (it is copied by hand); the others fold.
PACKAGE_COLUMNS = (
    Column("id", lambda p: p["id"], id=True),
    Column("title", lambda p: p["title"]),
    Column("case", lambda p: p["case_reference"]),
    Column("owner", lambda p: p["owner_authority"]),
    Column("sealed", lambda p: "yes" if p["sealed"] else "no"),
    Column("items", lambda p: str(len(p["items"]))),
    Column("size", lambda p: _size(sum(i["size"] for i in p["items"]))),
    Column("shared with", lambda p: ", ".join(
        s["authority"] + ("" if s["active"] else " (inactive)") for s in _shares(p))),
    Column("created (UTC)", lambda p: _when(p["created_at"]), wide=True),
    Column("created by", lambda p: p["created_by"], wide=True),
    Column("sealed (UTC)", lambda p: _when(p["sealed_at"]), wide=True),
    Column("manifest sha256", lambda p: p["manifest_sha256"] or "", id=True, wide=True),
)


def _item_name(i: dict[str, Any]) -> str:
    """The name displayed escaped, a link's or directory's kind (and target) beside it."""
    from evx.protocol.names import display

    kind = "" if i.get("kind", "file") == "file" else f"  [{i['kind']}" + (
        f" -> {display(i['target'])}]" if i.get("target") else "]")
    return display(i["name"]) + kind


#: ``evx package show``'s items: names displayed escaped; the digest whole.
ITEM_COLUMNS = (
    Column("item", _item_name),
    Column("size", lambda i: _size(i["size"])),
    Column("bytes", lambda i: str(i["size"]), wide=True),
    Column("sha256", lambda i: i["sha256"], id=True),
    Column("uploaded (UTC)", lambda i: _when(i["uploaded_at"])),
    Column("by", lambda i: i["uploaded_by"]),
)


def _share_state(s: dict[str, Any]) -> str:
    return "active" if s["active"] else (
        f"revoked {_when(s['revoked_at'])}" if s["revoked_at"] else "expired")


SHARE_COLUMNS = (
    Column("authority", lambda s: s["authority"], id=True),
    Column("legal basis", lambda s: s["legal_basis"]),
    Column("request", lambda s: s["request_reference"]),
    Column("expires (UTC)", lambda s: _when(s["expires_at"]) or "never"),
    Column("state", _share_state),
)


@command("list", group="package")
def package_list(url: str = URL, token: str | None = TOKEN, as_json: bool = JSON,
                 retries: int = RETRIES,
                 limit: int = typer.Option(100, min=1, max=500),
                 output_format: str = OUTPUT, wide: bool = WIDE) -> None:
    """Packages your authority owns or that are shared with it."""
    output = Output(as_json=as_json, fmt=output_format, wide=wide)

    with connect(url, token, output, retries) as api:
        packages = api.json("GET", "/v1/packages", params={"limit": limit})["packages"]
    output.rows({"packages": packages}, packages, PACKAGE_COLUMNS, empty="no packages")


@command("show", group="package")
def package_show(package_id: str = typer.Argument(..., metavar="PACKAGE"),
                 url: str = URL, token: str | None = TOKEN, as_json: bool = JSON,
                 retries: int = RETRIES, output_format: str = OUTPUT,
                 wide: bool = WIDE) -> None:
    """A package's metadata, items (name, size, SHA-256) and shares (-o tsv: the items)."""
    output = Output(as_json=as_json, fmt=output_format, wide=wide)

    with connect(url, token, output, retries) as api:
        p = api.json("GET", package_path(package_id))
    if output.as_json or output.tsv:
        output.rows(p, p["items"], ITEM_COLUMNS, empty="")
        return
    output.out.print(_package_summary(p))
    output.rows(p, p["items"], ITEM_COLUMNS, empty="no items", title="items")
    if _shares(p):
        output.rows(p, _shares(p), SHARE_COLUMNS, empty="", title="shares")


# -- transfers -------------------------------------------------------------------------------

PARALLEL = typer.Option(4, "--parallel", "-P", min=1, max=64,
                        help="Files transferred at the same time.")
# Per-file lines in a terminal only for small jobs: a folder of 100,000 files gets the bounded
# display and one summary line (--json lists every item; piped output lists every file).
NOTES_IN_TERMINAL_UP_TO = 20


def _board(output: Output, verb: str, files: int, total: int) -> Board:
    enabled = not (output.as_json or output.quiet) and output.err.is_terminal
    return Board(output.err, verb=verb, files=files, total_bytes=total, enabled=enabled)


def _per_file_notes(output: Output, files: int) -> bool:
    return not output.err.is_terminal or files <= NOTES_IN_TERMINAL_UP_TO


@command("upload", panel=PANEL_EVIDENCE)
def upload(
    package_id: str = typer.Argument(..., metavar="PACKAGE"),
    paths: list[Path] = typer.Argument(..., metavar="FILE...",
                                       help="Files and directories (uploaded recursively)."),
    parallel: int = PARALLEL,
    follow_links: bool = typer.Option(False, "--follow-links",
                                      help="Upload what links to files point to instead of the "
                                           "links themselves."),
    url: str = URL, token: str | None = TOKEN, as_json: bool = JSON,
    retries: int = RETRIES,
) -> None:
    """Upload files and directories as items, names exactly as they are, digest-checked, N at a
    time.

    Each file is read once: hashed while it is sent. Files of 16 MiB and more go through the
    service's resumable uploads: an interrupted upload continues where the service stored it
    when the command is run again. The service checks the SHA-256 (a mismatch stores nothing).
    A directory becomes items named <dir>/<relative path>, byte for byte (no name is changed);
    its symbolic links become link items (the target recorded, never followed) and its empty
    directories directory items. Each file is opened without following links and checked to be
    the file listed. An item already there with the same digest is skipped; with a different
    digest it is an error."""
    from evx.client.parallel import run_parallel
    from evx.client.sources import collect_sources
    from evx.client.uploads import upload_file
    from evx.protocol.names import display

    output = Output(as_json=as_json)
    sources = collect_sources(paths, follow_links=follow_links)
    results: list[dict[str, Any]] = []
    notes = _per_file_notes(output, len(sources))
    with connect(url, token, output, retries) as api:
        package = api.json("GET", package_path(package_id))
        existing = {i["name"]: i for i in package["items"]}
        if package["sealed"] and any(s.name not in existing for s in sources):
            raise UsageError(f"package {package_id} is sealed and cannot take new items",
                             hint="Create a new package.", slug="package-sealed")
        board = _board(output, "uploading", len(sources), sum(s.size for s in sources))

        def one(source: Any) -> tuple[str, int, str]:
            return upload_file(api, package_id, source, existing.get(source.name), board)

        def done(source: Any, outcome: tuple[str, int, str]) -> None:
            status, length, sha256 = outcome
            results.append({"name": source.name, "kind": source.kind, "size": length,
                            "sha256": sha256, "status": status})
            board.file_done(length, transferred=status == "uploaded")
            if notes:
                output.note(escape(
                    f"skipped {display(source.name)}: already in the package with the same "
                    "SHA-256" if status == "skipped" else
                    f"uploaded {display(source.name)}"
                    f"{'' if source.kind == 'file' else f' ({source.kind})'}  {_size(length)}  "
                    f"sha256 {sha256}"))

        with board:
            run_parallel(sources, one, parallel, done)
    uploaded = [r for r in results if r["status"] == "uploaded"]
    output.result({"package": package_id, "items": results},
                  escape(f"{len(uploaded)} uploaded, {len(results) - len(uploaded)} "
                         f"skipped ({_size(sum(r['size'] for r in uploaded))}) to "
                         f"{package_id}"))


@command("download", panel=PANEL_EVIDENCE)
def download(
    package_id: str = typer.Argument(..., metavar="PACKAGE"),
    items: list[str] = typer.Argument(None, metavar="[ITEM...]",
                                      help="Item names (default: all items)."),
    out_dir: Path = typer.Option(..., "-o", "--output", help="Directory to save into."),
    limit_rate: int | None = typer.Option(None, "--limit-rate", min=1,
                                          help="Bytes per second at most (per transfer)."),
    parallel: int = PARALLEL,
    policy_file: Path | None = typer.Option(
        None, "--policy", show_default=False,
        help="C2SP tlog-policy (default EVX_POLICY, else the trust state's policy file): after "
             "the download, accept the ledger's checkpoint only with the witness quorum it "
             "requires, and save it."),
    url: str = URL, token: str | None = TOKEN, as_json: bool = JSON,
    retries: int = RETRIES,
) -> None:
    """Download items, verified against the signed record, N at a time, resuming interrupted
    downloads.

    First the package's custody record is verified here (as `evx custody`); each item must be
    the one its item.uploaded entry records and, for a sealed package, the items must be the
    sealed manifest. Each file appears under -o only after its SHA-256 matched that entry and
    the service's Repr-Digest; links and empty directories are recreated as they were. Nothing
    is written outside -o, no link evx did not create is followed, no different existing file
    is replaced; a name this file system cannot hold gets a safe mapped name. -o/.evx/PACKAGE/
    keeps the download record (manifest.json, custody.json, SHA256SUMS for sha256sum -c) and
    the verification goes on the record (download.verified); re-check later, offline, with
    evx verify DIR. Interrupted downloads resume when the command is run again; a mismatch
    deletes the partial file and exits 1."""
    from evx.client.errors import IntegrityFailure
    from evx.client.receive import receive
    from evx.client.record import check_item, verified_record
    from evx.protocol.names import display

    output = Output(as_json=as_json)
    results: list[Any] = []
    with connect(url, token, output, retries) as api:
        package = api.json("GET", package_path(package_id))
        by_name = {i["name"]: i for i in package["items"]}
        wanted = list(items) if items else list(by_name)
        missing = [n for n in wanted if n not in by_name]
        if missing:
            raise DeniedError(f"package {package_id} has no item {missing[0]!r}",
                              hint=f"See evx package show {package_id}.", slug="not-found")
        record = verified_record(api, trust_state(api), package_id)
        uploads = record.uploads()
        if record.sealed_at() is not None and set(by_name) != set(uploads):
            extra = sorted(set(by_name) ^ set(uploads))
            raise IntegrityFailure(
                f"the service lists items of {package_id} other than the manifest sealed at "
                f"entry {record.sealed_at()}: {extra[:5]!r}; nothing was saved",
                slug="not-on-record", details={"index": record.sealed_at(), "items": extra[:50]})
        for name in wanted:
            check_item(record, by_name[name])
        notes = _per_file_notes(output, len(wanted))
        board = _board(output, "downloading", len(wanted),
                       sum(int(by_name[n]["size"]) for n in wanted))

        def done(result: Any) -> None:
            results.append(result)
            board.file_done(result.size, transferred=result.status == "downloaded")
            if notes:
                resumed = f" (resumed at byte {result.resumed_from})" \
                    if result.resumed_from else ""
                verb = "verified" if result.status == "downloaded" else \
                    "already present, verified"
                what = "" if result.kind == "file" else f" ({result.kind})"
                mapped = "" if result.local == result.name else f" as {display(result.local)}"
                output.note(escape(f"{verb} {display(result.name)}{what}{mapped}  "
                                   f"{_size(result.size)}  sha256 {result.sha256}{resumed}"))

        with board:
            # Into -o only through the client's own folder handling; then the download record
            # and the recipient's verification on the record (download.verified).
            got = receive(api, package, wanted, out_dir, board, limit_rate=limit_rate,
                          state=trust_state(api), parallel=parallel, on_item=done)
        witnessed = _witnessed_after_download(api, policy_file)
    seal = "equals the sealed manifest" if got.matches_seal else \
        "is NOT the sealed manifest (a partial download, or the package is not sealed)"
    output.result(
        {"package": package_id, "items": [r.to_json() for r in results], "mapped": got.mapped,
         "did": got.did, "record": got.record_dir, "manifest_sha256": got.manifest_sha256,
         "matches_seal": got.matches_seal, "receipt_ledger_index": got.receipt_index,
         **witnessed[0]},
        escape(f"{len(results)} item(s) of {package_id} in {out_dir}, all SHA-256 verified "
               f"against the signed record ({got.mapped} name(s) mapped for this file system)"
               f"\nmanifest sha256 {got.manifest_sha256} {seal}; download record in "
               f"{got.record_dir}; on the record as ledger entry {got.receipt_index}"
               + witnessed[1]))


def _witnessed_after_download(api: Api, policy_file: Path | None) -> tuple[dict[str, Any], str]:
    """With a policy: the ledger (now holding this download) is witnessed as it requires."""
    from evx.cli.options import trust_state
    from evx.client.witnessed import configured_policy, describe, sync_witnessed, to_json

    state = trust_state(api)
    policy = configured_policy(policy_file, state)
    if policy is None:
        return {}, ""
    _, witnessed = sync_witnessed(api, state, policy)
    return ({"witnesses": to_json(witnessed, policy)},
            f"; ledger checkpoint {describe(witnessed, policy)}")


@command("verify", panel=PANEL_EVIDENCE)
def verify_dir(
    directory: Path = typer.Argument(..., metavar="DIR",
                                     help="A folder evx download wrote (its -o)."),
    log_key: str | None = typer.Option(
        None, "--log-key", envvar="EVX_LOG_KEY", metavar="KEY",
        help="The hub's log key (name+hex+base64, or a file holding it) to verify the custody "
             "record under; default: the key this machine pinned for the record's server."),
    as_json: bool = JSON,
) -> None:
    """Re-check a received folder offline against its download record.

    Every file's SHA-256 and size, every link's target, every directory; the manifest hash;
    the custody record under the log key this machine trusts for its server (the record's own
    key is only the recorder's word); that the ledger's uploads are what is here; and nothing
    extra. Exit 1 on any difference."""
    from evx.cli.options import parse_log_key
    from evx.client.download_record import TrustedKeys, verify_folder
    from evx.client.errors import IntegrityFailure
    from evx.client.state import default_state_dir

    output = Output(as_json=as_json)
    trusted = TrustedKeys(given=parse_log_key(log_key) if log_key else None,
                          state_dir=default_state_dir())
    report = verify_folder(directory, trusted)
    if report.problems:
        for problem in report.problems:
            output.note(escape(f"{problem['problem']}: {problem['detail']}"))
        raise IntegrityFailure(
            f"{directory} does NOT match its download record: {len(report.problems)} "
            f"difference(s) in {report.checked} item(s)", slug="folder-changed",
            details={"problems": report.problems[:100], "packages": report.packages})
    for package in report.unpinned():
        key = report.log_keys[package]
        output.warn(escape(
            f"warning: the custody record of {package} was verified under the log key it "
            f"carries ({key['key']}); this machine has no key pinned for "
            f"{key['server'] or 'its server'}: compare that key with the one the hub's operator "
            f"published, or pass --log-key"))
    sources = sorted({key["source"] for key in report.log_keys.values()})
    output.result(report.to_json(), escape(
        f"VERIFIED {report.checked} item(s) of {', '.join(report.packages)} in {directory}: "
        f"bytes, names, links and directories as received; custody record "
        f"({report.custody_entries} entries) verified offline under the "
        f"{' / '.join(sources)} log key"))


# -- package state ---------------------------------------------------------------------------

@command("seal", panel=PANEL_EVIDENCE)
def seal(package_id: str = typer.Argument(..., metavar="PACKAGE"),
         url: str = URL, token: str | None = TOKEN, as_json: bool = JSON,
                 retries: int = RETRIES) -> None:
    """Seal a package: it never changes again; its manifest hash goes into the ledger."""
    output = Output(as_json=as_json)

    with connect(url, token, output, retries) as api:
        body = api.json("POST", package_path(package_id) + "/seal")
    output.result(body, escape(f"sealed {package_id}: manifest sha256 "
                               f"{body['manifest_sha256']} (ledger entry "
                               f"{body['ledger_index']})"))


def _complete_authority(ctx: typer.Context, incomplete: str) -> list[str]:
    from evx.cli.signin import complete_authority

    return complete_authority(ctx, incomplete)


@command("share", panel=PANEL_EVIDENCE)
def share(
    package_id: str = typer.Argument(..., metavar="PACKAGE"),
    authority: str = typer.Option(..., "--authority", help="Recipient authority id (see evx "
                                                           "authorities).",
                                  autocompletion=_complete_authority),
    legal_basis: str = typer.Option(..., "--legal-basis",
                                    help="e.g. 'EIO Directive 2014/41/EU art. 1'."),
    request_reference: str = typer.Option(..., "--request-ref",
                                          help="The mutual-assistance request reference."),
    expires: datetime | None = typer.Option(None, "--expires", formats=[
        "%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%dT%H:%M%z", "%Y-%m-%d"],
        help="ISO 8601 with a time zone, e.g. 2026-12-31T23:59:59+01:00 (or a date, UTC)."),
    url: str = URL, token: str | None = TOKEN, as_json: bool = JSON,
    retries: int = RETRIES,
) -> None:
    """Share a sealed package with another authority under a legal basis."""
    from datetime import UTC

    output = Output(as_json=as_json)

    body: dict[str, Any] = {"authority": authority, "legal_basis": legal_basis,
                            "request_reference": request_reference}
    if expires is not None:
        # Sent in UTC: the service's SQLite backend drops a non-UTC offset unconverted.
        aware = expires if expires.tzinfo else expires.replace(tzinfo=UTC)
        body["expires_at"] = aware.astimezone(UTC).isoformat()
    with connect(url, token, output, retries) as api:
        check_partner(api, authority)  # an unknown id: "did you mean", before anything
        s = api.json("POST", package_path(package_id) + "/shares", json=body)
    until = f" until {_when(s['expires_at'])}" if s.get("expires_at") else ""
    output.result(s, escape(f"shared {package_id} with {s['authority']}{until} "
                            f"({s['legal_basis']}; {s['request_reference']})"))


@command("revoke", panel=PANEL_EVIDENCE)
def revoke(package_id: str = typer.Argument(..., metavar="PACKAGE"),
           authority: str = typer.Option(..., "--authority"),
           url: str = URL, token: str | None = TOKEN, as_json: bool = JSON,
                 retries: int = RETRIES) -> None:
    """Revoke the share with an authority: its officers can no longer retrieve the package."""
    from urllib.parse import quote

    output = Output(as_json=as_json)

    with connect(url, token, output, retries) as api:
        s = api.json("DELETE", package_path(package_id) + "/shares/"
                     + quote(authority, safe=""))
    output.result(s, escape(f"revoked the share of {package_id} with "
                            f"{s['authority']}"))
