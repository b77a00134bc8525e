"""`evx verify-bundle`: check a custody bundle offline against your own policy."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from evx.cli.app import PANEL_AUDIT, command
from evx.cli.options import JSON
from evx.cli.render import Output

MAX_READ = 64 * 1024 * 1024 + 1


@command("verify-bundle", panel=PANEL_AUDIT)
def verify_bundle_command(
    bundle_file: Path = typer.Argument(..., metavar="FILE", help="The custody bundle."),
    policy_file: Path = typer.Option(..., "--policy", help="Your C2SP tlog-policy: the log "
                                     "key, the witnesses and the quorum you require."),
    report_file: Path | None = typer.Option(None, "--report",
                                            help="Also write the verified timeline as a PDF "
                                                 "with the bundle attached."),
    as_json: bool = JSON,
) -> None:
    """Verify a custody bundle with no network: the policy's log signature and witness quorum
    on its checkpoint, every entry's inclusion proof, the package chain from its first entry,
    the sealed manifest; then print the timeline.

    Exit status 1 names the first thing that does not verify."""
    from custody.bundle import verify_bundle
    from custody.errors import VerificationError
    from evx.cli.audit import TIMELINE_COLUMNS
    from evx.client.errors import IntegrityFailure, UsageError
    from evx.client.witnessed import load_policy

    output = Output(as_json=as_json)
    policy = load_policy(policy_file)
    try:
        with bundle_file.open("rb") as handle:
            data = handle.read(MAX_READ)
    except OSError as exc:
        raise UsageError(f"cannot read {bundle_file}: {exc.strerror}") from None
    try:
        verified = verify_bundle(data, policy)
    except VerificationError as exc:
        raise IntegrityFailure(f"the bundle {bundle_file} does NOT verify: "
                               f"{type(exc).__name__}: {exc}", slug="bundle-not-verified",
                               details={"reason": exc.reason, "index": exc.index,
                                        "check": type(exc).__name__}) from exc
    if report_file is not None:
        from evx.client.report import render_report
        from evx.client.state import write_atomically

        write_atomically(report_file, render_report(verified, data, policy), 0o644)
    checkpoint = verified.witnessed.checkpoint
    entries = [e.to_dict() for e in verified.entries]
    result: dict[str, Any] = {
        "ok": True, "verified": True, "package": verified.package_id,
        "checkpoint": {"origin": checkpoint.origin, "tree_size": checkpoint.size,
                       "root": base64.b64encode(checkpoint.root).decode()},
        "cosigned_by": dict(sorted(verified.witnessed.cosigned.items())),
        "quorum": policy.describe_quorum(), "manifest": verified.manifest,
        "violations": [str(v) for v in verified.violations], "entries": entries}
    if as_json:
        output.result(result)
        return
    output.rows(result, entries, TIMELINE_COLUMNS, empty="no entries",
                title=f"custody of {verified.package_id}")
    names = ", ".join(sorted(verified.witnessed.cosigned)) or "no witness"
    output.out.print(escape(
        f"VERIFIED {len(entries)} entries of {verified.package_id}: inclusion proofs and the "
        f"package chain in the checkpoint of {checkpoint.size} entries of {checkpoint.origin}, "
        f"signed by the log key and cosigned by {names} (policy: "
        f"{policy.describe_quorum()})"
        + (f"; sealed manifest of {len(verified.manifest['items'])} items matches the seal"
           if verified.manifest else "") + "."))
    for violation in verified.violations:
        output.out.print(escape(f"RULE BROKEN: {violation}"))
    if report_file is not None:
        output.out.print(escape(f"report written to {report_file}"))
