"""Receiving a package: every item into ``-o`` under its exact name (or a safe mapped one),
verified; the custody record verified at that moment; the download record written beside the
files; and the recipient's verification put on the record (``download.verified``)."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evx.client.errors import DeniedError
from evx.client.http import Api, package_path
from evx.client.outdir import OutputFolder
from evx.client.state import TrustState
from evx.client.transfer import DownloadResult, download_one
from evx.protocol.localnames import Profile, local_paths
from evx.protocol.names import decode_text, display
from evx.protocol.record import record_files


def custody_pages(api: Api, package_id: str,
                  page_size: int | None = None) -> list[dict[str, Any]]:
    """Every page of a package's custody record as the service sends it (unverified);
    ``page_size`` entries a page (default: the service's)."""
    pages = []
    start = 0
    while True:
        params = {"start": start} if page_size is None else {"start": start, "limit": page_size}
        body = api.json("GET", package_path(package_id) + "/custody", params=params)
        pages.append(body)
        if body["complete"] or not body["entries"]:
            return pages
        start = body["entries"][-1]["index"] + 1


@dataclass
class VerifiedCustody:
    pages: list[dict[str, Any]]
    entries: list[Any]
    log_key: str
    newly_pinned: bool
    checkpoint: dict[str, Any]


def verified_custody(api: Api, state: TrustState, package_id: str) -> VerifiedCustody:
    """The package's custody, verified against the pinned log key; this machine's trusted
    checkpoint moves forward along consistency proofs -- through a checkpoint the configured
    witness policy accepts, when there is one (as ``evx custody`` does).

    Raises:
        IntegrityFailure, LogKeyChanged, LedgerInconsistent: it does not verify.
    """
    from custody.checkpoint import Checkpoint
    from evx.client.trust import (
        advance_checkpoint,
        pinned_log_key,
        verify_custody_pages,
    )
    from evx.client.witnessed import configured_policy, require_log_key, witnessed_checkpoint

    pages = custody_pages(api, package_id)
    pinned = pinned_log_key(api, state)
    entries = verify_custody_pages(pages, pinned.key, package_id)
    policy = configured_policy(None, state)
    if policy is None:
        advance = None
        for page in pages:
            advance = advance_checkpoint(api, state, pinned.key, page["checkpoint"])
    else:
        require_log_key(policy, pinned.key)
        covering = Checkpoint.verify(pages[-1]["checkpoint"], pinned.key)
        witnessed = witnessed_checkpoint(api, policy, covering=covering)
        advance = advance_checkpoint(api, state, pinned.key, witnessed.note)
    assert advance is not None
    return VerifiedCustody(pages, entries, str(pinned.key), pinned.newly_pinned,
                           advance.to_json())


def probe_profile(out: OutputFolder) -> Profile:
    """What the file system of ``-o`` cannot hold: by platform, and by trying a case pair."""
    if sys.platform == "win32":
        return Profile.windows_ntfs()
    base = Profile.macos() if sys.platform == "darwin" else Profile.posix()
    probe = f".evx-case-probe-{os.getpid()}".encode()
    try:
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600, dir_fd=out.fd)
        os.close(fd)
        try:
            os.stat(probe.upper(), dir_fd=out.fd, follow_symlinks=False)
            folded = True
        except FileNotFoundError:
            folded = False
        finally:
            os.unlink(probe, dir_fd=out.fd)
    except OSError:
        return base
    if folded and not base.case_insensitive:
        return Profile(case_insensitive=True, normalizing=base.normalizing,
                       utf8_only=base.utf8_only, windows=base.windows)
    return base


@dataclass
class Received:
    package: dict[str, Any]
    results: list[DownloadResult] = field(default_factory=list)
    mapped: int = 0
    manifest_sha256: str = ""
    matches_seal: bool = False
    receipt_index: int | None = None
    custody_entries: int = 0
    record_dir: str = ""
    did: dict[str, int] = field(default_factory=dict)
    newly_pinned: bool = False
    log_key: str = ""


def wanted_items(package: dict[str, Any], wanted: list[str] | None) -> list[str]:
    """The item names asked for (all when None), checked to be in the package.

    Raises:
        DeniedError: An item asked for is not in the package.
    """
    names = {i["name"] for i in package["items"]}
    chosen = list(wanted) if wanted else sorted(names)
    missing = [n for n in chosen if n not in names]
    if missing:
        raise DeniedError(f"package {package['id']} has no item {display(missing[0])}",
                          hint=f"See evx package show {package['id']}.", slug="not-found")
    return chosen


def receive(api: Api, package: dict[str, Any], names: list[str], out_dir: Path,
            progress: Any, *, limit_rate: int | None, state: TrustState, parallel: int = 1,
            on_item: Callable[[DownloadResult], None] | None = None) -> Received:
    """Download the items ``names`` of ``package`` into ``out_dir`` (``parallel`` at a time),
    verify the package's custody, write the download record and put the verification on the
    record (``download.verified``).

    Raises:
        ClientError: Whatever a transfer, the output folder or the custody check raise.
    """
    from evx.client.parallel import run_parallel

    package_id = package["id"]
    by_name = {i["name"]: i for i in package["items"]}
    result = Received(package)
    with OutputFolder(out_dir) as out:
        profile = probe_profile(out)
        # Mapped over every item of the package, so a partial download maps names as a full
        # one would.
        raw = {name: decode_text(name) for name in by_name}
        mapping = local_paths(raw.values(), profile)

        def one(name: str) -> DownloadResult:
            return download_one(api, package_id, by_name[name], out,
                                tuple(mapping[raw[name]].split(b"/")), progress,
                                limit_rate=limit_rate)

        def done(name: str, got: DownloadResult) -> None:
            result.results.append(got)
            if got.local != got.name:
                result.mapped += 1
            if on_item is not None:
                on_item(got)

        run_parallel(names, one, parallel, done)
        custody = verified_custody(api, state, package_id)
        result.custody_entries = len(custody.entries)
        result.newly_pinned = custody.newly_pinned
        result.log_key = custody.log_key
        received = [{"name": r.name, "local": r.local, "kind": r.kind, "size": r.size,
                     "sha256": r.sha256, "target": by_name[r.name].get("target")}
                    for r in result.results]
        complete = set(names) == set(by_name)
        files, computed = record_files(package, api.origin, received, custody.pages,
                                       custody.log_key, complete=complete)
        for filename, data in files.items():
            out.write_record_file(package_id, filename, data)
        result.manifest_sha256 = computed
        result.record_dir = str(out_dir / ".evx" / package_id)
        receipt = api.json("POST", package_path(package_id) + "/receipts",
                           json={"manifest_sha256": computed, "items": len(received),
                                 "bytes": sum(r.size for r in result.results
                                              if r.kind == "file")})
        result.receipt_index = int(receipt["ledger_index"])
        result.matches_seal = bool(receipt["matches_seal"])
        result.did = dict(out.did)
    return result
