"""`evx custody` and `evx ledger sync|export|key`: what auditors run, verified offline."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import typer
from rich.markup import escape

from evx.cli.app import PANEL_AUDIT, command, group
from evx.cli.options import JSON, OUTPUT, RETRIES, TOKEN, URL, WIDE, connect, trust_state
from evx.cli.render import Column, Output
from evx.client.http import Api, package_path
from evx.protocol.names import display

group("ledger", "The custody ledger: monitor, export, and verify exports offline.",
      panel=PANEL_AUDIT)

POLICY = typer.Option(None, "--policy", show_default=False,
                      help="C2SP tlog-policy file (log key, witnesses, quorum): accept a "
                           "checkpoint only with the quorum of witness cosignatures it "
                           "requires. Default: EVX_POLICY, else the trust state's policy file; "
                           "none: the pinned log key alone.")
WITNESS_WAIT = typer.Option(30.0, "--witness-wait", min=0, max=3600,
                            help="With a policy: seconds to wait for the witnesses to cosign a "
                                 "checkpoint covering the records (they do so in the "
                                 "background, usually within seconds).")


# -- custody ---------------------------------------------------------------------------------

@command("custody", panel=PANEL_AUDIT)
def custody(
    package_id: str = typer.Argument(..., metavar="PACKAGE"),
    verify: bool = typer.Option(True, "--verify/--no-verify",
                                help="Verify offline (default): inclusion proofs, the package "
                                     "chain, the checkpoint signature under the pinned log "
                                     "key, and consistency with the checkpoint saved here."),
    policy_file: Path | None = POLICY, witness_wait: float = WITNESS_WAIT,
    bundle_file: Path | None = typer.Option(
        None, "--bundle", help="Also write the verified custody as a self-contained bundle "
        "(docs/ledger-format.md section 10) for `evx verify-bundle`."),
    report_file: Path | None = typer.Option(
        None, "--report", help="Also write the verified timeline as a PDF with the bundle "
        "attached (needs evidence-exchange[report])."),
    url: str = URL, token: str | None = TOKEN, as_json: bool = JSON,
    retries: int = RETRIES, output_format: str = OUTPUT, wide: bool = WIDE,
) -> None:
    """A package's (or a request's, req_...) chain of custody as a timeline, verified on this
    machine.

    Inclusion proofs, the package chain and the checkpoint signature are checked against the
    log key (EVX_LOG_KEY, `evx trust log --key`, or pinned on first use), and the checkpoint
    against the one saved here (consistency proof); then the rules of the exchange (every
    content read under a live share, no upload after the seal, the manifest is the uploads,
    ...), that the entry verified here last time is still there, and that no officer acted for
    an authority under a key it did not declare (`evx trust keys`). Any violation exits 1,
    naming the entry index."""
    from custody.checkpoint import Checkpoint
    from custody.policy import Policy
    from evx.client.errors import UsageError
    from evx.client.record import hold_record
    from evx.client.trust import (
        advance_checkpoint,
        pinned_log_key,
        verify_custody_pages,
    )
    from evx.client.witnessed import (
        configured_policy,
        describe,
        require_log_key,
        to_json,
        witnessed_checkpoint,
    )

    output = Output(as_json=as_json, fmt=output_format, wide=wide)
    if not verify and (bundle_file or report_file):
        raise UsageError("--bundle and --report need the verification (drop --no-verify)")

    with connect(url, token, output, retries) as api:
        pages = _custody_pages(api, package_id)
        result: dict[str, Any] = {"package": package_id, "verified": False}
        if verify:
            state = trust_state(api)
            pinned = pinned_log_key(api, state)
            if pinned.newly_pinned:
                output.note(escape(f"pinned the log key of {api.origin} on first use: "
                                   f"{pinned.key} (trust on first use: for development; "
                                   "give it with evx trust log --key or EVX_LOG_KEY)"))
            entries = verify_custody_pages(pages, pinned.key, package_id)
            policy = configured_policy(policy_file, state)
            if policy is None and (bundle_file or report_file):
                policy = Policy.for_log(pinned.key)  # the bundle records: no witnesses
            advance = None
            if policy is None:
                for page in pages:
                    advance = advance_checkpoint(api, state, pinned.key, page["checkpoint"])
            else:
                # Only a witnessed checkpoint is trusted: one that covers the pages' and
                # extends them, accepted by the policy, then consistent with the saved one.
                require_log_key(policy, pinned.key)
                proven_in = Checkpoint.verify(pages[-1]["checkpoint"], pinned.key)
                witnessed = witnessed_checkpoint(api, policy, covering=proven_in,
                                                 wait=witness_wait)
                advance = advance_checkpoint(api, state, pinned.key, witnessed.note)
                result["witnesses"] = to_json(witnessed, policy)
                output.note(escape(describe(witnessed, policy)))
                if bundle_file or report_file:
                    result.update(_write_proofs(api, package_id, entries, policy, witnessed,
                                                bundle_file, report_file))
            assert advance is not None
            previous = hold_record(state, package_id, entries)
            result.update(verified=True, checkpoint=advance.to_json(),
                          log_key=str(pinned.key), rules="kept")
            if previous is not None:
                result["extends_entry"] = previous.index
    raw_entries = [e["entry"] for page in pages for e in page["entries"]]
    result["entries"] = raw_entries
    if output.as_json or output.tsv:
        output.rows(result, raw_entries, TIMELINE_COLUMNS, empty="")
        if output.tsv:  # what was checked, beside the rows (stderr)
            output.note("VERIFIED" if verify else "NOT verified (--no-verify)")
        return
    output.rows(result, raw_entries, TIMELINE_COLUMNS, empty="no entries",
                title=f"custody of {package_id}")
    if verify:
        _print_verified(output, result, len(raw_entries))
    else:
        output.out.print("[yellow]NOT verified[/yellow] (--no-verify)")


def _custody_pages(api: Api, package_id: str) -> list[dict[str, Any]]:
    """Every page of the chain, as the service sent them (verified by the caller)."""
    # A request's chain (req_...) is verified exactly as a package's.
    subject = f"/v1/requests/{quote(package_id, safe='')}" \
        if package_id.startswith("req_") else package_path(package_id)
    pages = []
    start = 0
    while True:
        body = api.json("GET", subject + "/custody", params={"start": start})
        pages.append(body)
        if body["complete"] or not body["entries"]:
            return pages
        start = body["entries"][-1]["index"] + 1


def _print_verified(output: Output, result: dict[str, Any], entries: int) -> None:
    cp = result["checkpoint"]
    since = "" if cp["previous_size"] is None else \
        f", consistent with the {cp['previous_size']} entries verified here before"
    extends = "" if "extends_entry" not in result else \
        f"; still holds entry {result['extends_entry']} verified here before"
    output.out.print(f"[bold green]VERIFIED[/bold green] {entries} entries: "
                     f"inclusion proofs and package chain against the checkpoint of "
                     f"{cp['tree_size']} entries signed by the pinned log key{since}; "
                     f"every rule of the exchange kept{extends}.")
    if "witnesses" in result:
        output.out.print(escape("Witnessed: checkpoint of "
                                f"{result['witnesses']['tree_size']} entries cosigned by "
                                f"{', '.join(result['witnesses']['cosigned_by'])} (policy: "
                                f"{result['witnesses']['quorum']})."))
    for kind in ("bundle", "report"):
        if kind in result:
            output.out.print(escape(f"{kind} written to {result[kind]}"))


def _write_proofs(api: Api, package_id: str, entries: list[Any], policy: Any, witnessed: Any,
                  bundle_file: Path | None, report_file: Path | None) -> dict[str, Any]:
    from evx.client.bundle import build_bundle
    from evx.client.report import render_report
    from evx.client.state import write_atomically

    data, verified = build_bundle(api, package_id, entries, policy, witnessed)
    written: dict[str, Any] = {}
    if bundle_file is not None:
        write_atomically(bundle_file, data, 0o644)
        written["bundle"] = str(bundle_file)
    if report_file is not None:
        write_atomically(report_file, render_report(verified, data, policy), 0o644)
        written["report"] = str(report_file)
    return written


def _outcome(e: dict[str, Any]) -> str:
    return e["outcome"] if e["outcome"] == "allowed" else \
        f"{e['outcome']}: {e.get('reason') or ''}"


def _action(e: dict[str, Any]) -> str:
    details = e.get("details") or {}
    if e["action"] == "share.created" and details.get("authority"):
        return f"{e['action']} → {details['authority']}"
    return str(e["action"])


def _legal(e: dict[str, Any]) -> str:
    legal = e.get("legal")
    return f"{legal['basis']}; {legal['request_reference']}" if legal else ""


#: ``evx custody``'s timeline (also its ``-o tsv``): index and time never wrapped.
TIMELINE_COLUMNS = (
    Column("#", lambda e: str(e["index"]), id=True),
    Column("time (UTC)", lambda e: e["time"][:19].replace("T", " "), id=True),
    Column("authority / subject / role",
           lambda e: f"{e['actor']['authority']} / {e['actor']['subject']} / "
                     f"{e['actor']['role']}"),
    Column("action", _action),
    Column("outcome", _outcome),
    Column("item", lambda e: display(e.get("item") or "")),
    Column("legal reference", _legal),
)


# -- ledger ----------------------------------------------------------------------------------

@command("sync", group="ledger")
def ledger_sync(
    url: str = URL, token: str | None = TOKEN, as_json: bool = JSON,
    retries: int = RETRIES,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No output unless it fails "
                                                             "(for cron)."),
    policy_file: Path | None = POLICY, witness_wait: float = WITNESS_WAIT,
) -> None:
    """Monitor the ledger: refuse a rewritten history, an edited entry or a changed log key.

    Fetches the signed checkpoint, verifies it under the pinned log key (a changed key is
    refused), proves it extends the checkpoint saved here (consistency proof) and saves it.
    Then, for the operator's auditors, every entry appended since is checked to be the signed
    one and to act under declared keys (`evx trust keys`); for others, every package seen here
    must still hold the entry verified before. Any failure exits 1."""
    from evx.client.errors import DeniedError
    from evx.client.record import verify_appended, verify_package_pins
    from evx.client.trust import advance_checkpoint, pinned_log_key
    from evx.client.witnessed import configured_policy, describe, sync_witnessed, to_json

    output = Output(as_json=as_json, quiet=quiet)

    witnessed_text = ""
    witnesses: dict[str, Any] = {}
    with connect(url, token, output, retries) as api:
        state = trust_state(api)
        pinned = pinned_log_key(api, state)
        saved = state.saved_checkpoint(pinned.key)
        policy = configured_policy(policy_file, state)
        if policy is None:
            note = api.request("GET", "/v1/ledger/checkpoint").text
            advance = advance_checkpoint(api, state, pinned.key, note)
        else:
            advance, witnessed = sync_witnessed(api, state, policy, witness_wait)
            witnessed_text = "; " + describe(witnessed, policy)
            witnesses = {"witnesses": to_json(witnessed, policy)}
        checks: dict[str, Any] = {}
        try:
            checks["entries_verified"] = verify_appended(
                api, saved.checkpoint if saved else None, advance.checkpoint,
                state.authority_keys())
        except DeniedError:  # not the operator's auditors: the packages seen here instead
            checks["packages_verified"] = verify_package_pins(api, state)
    data = {"ok": True, "server": api.origin, "newly_pinned": pinned.newly_pinned,
            "log_key": str(pinned.key), **advance.to_json(), **witnesses, **checks}
    if advance.previous_size is None:
        text = (f"trusting {api.origin} from now on: log key pinned, checkpoint of "
                f"{advance.checkpoint.size} entries saved")
    else:
        text = (f"ledger consistent: {advance.previous_size} → {advance.checkpoint.size} "
                f"entries, signed by the pinned key")
    text += witnessed_text
    if "entries_verified" in checks:
        text += f"; {checks['entries_verified']} new entries verified"
    elif "packages_verified" in checks:
        text += f"; {checks['packages_verified']} packages seen here still hold"
    output.result(data, escape(text))


@command("export", group="ledger")
def ledger_export(
    out_file: Path = typer.Option(..., "-o", "--output", help="Where to write the export."),
    verify: bool = typer.Option(True, "--verify/--no-verify",
                                help="Verify the export with the pinned key and the "
                                     "checkpoint saved here (default), then save its "
                                     "checkpoint."),
    policy_file: Path | None = POLICY,
    url: str = URL, token: str | None = TOKEN, as_json: bool = JSON,
    retries: int = RETRIES,
) -> None:
    """Export the whole ledger to a file and verify it (operator's auditors).

    Streamed to the file, then verified offline; `evx ledger verify FILE --key "$(evx ledger key)"`
    repeats the check anywhere."""
    from evx.client.trust import advance_checkpoint, pinned_log_key

    output = Output(as_json=as_json)

    from custody.cli import verify_file
    from custody.errors import VerificationError
    from evx import durable
    from evx.client.errors import IntegrityFailure, LedgerInconsistent
    from evx.client.witnessed import configured_policy, require_log_key, to_json

    written = 0
    with connect(url, token, output, retries) as api:
        state = trust_state(api)
        pinned = pinned_log_key(api, state) if verify else None
        policy = configured_policy(policy_file, state)
        if policy is not None and pinned is not None:
            require_log_key(policy, pinned.key)
        # Streamed into a temporary file that replaces out_file only when the export is whole.
        with output.progress() as transfers, \
                api.stream("GET", "/v1/ledger/export",
                           params={"witnessed": "true"} if policy else None) as response, \
                durable.replacing(out_file, 0o644) as handle:
            task = transfers.start("exporting ledger", 0)
            for block in response.iter_bytes(1024 * 1024):
                handle.write(block)
                written += len(block)
                transfers.advance(task, len(block))
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
            if policy is not None:
                try:
                    witnessed = policy.verify_checkpoint(verified.checkpoint_note)
                except VerificationError as exc:
                    raise IntegrityFailure(f"the export's checkpoint is NOT WITNESSED as your "
                                           f"policy requires: {exc.reason}",
                                           slug="quorum-not-met") from exc
                result["witnesses"] = to_json(witnessed, policy)
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


@command("key", group="ledger")
def ledger_key(url: str = URL, as_json: bool = JSON, retries: int = RETRIES) -> None:
    """Print the log's verifier key pinned here (pinning it on first use).

    E.g. for
    `evx ledger verify FILE --key "$(evx ledger key)"`. A changed key is refused."""
    from evx.client.trust import pinned_log_key

    output = Output(as_json=as_json)

    with connect(url, None, output, retries) as api:
        state = trust_state(api)
        pinned = pinned_log_key(api, state)
    output.result({"server": api.origin, "log_key": str(pinned.key),
                   "newly_pinned": pinned.newly_pinned, "file": str(state.key_path)},
                  escape(str(pinned.key)))
