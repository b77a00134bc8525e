"""The download record: what a recipient keeps beside the evidence, and re-checks offline.

``evx download PKG -o DIR`` writes ``DIR/.evx/PKG/`` (its files: evx/protocol/record.py):

* ``manifest.json`` -- every item received: name as stored (text form), local path where it
  was mapped, kind, size, SHA-256, link target; the manifest hash computed here over them and
  the one recorded at seal;
* ``custody.json`` -- the package's custody pages as served (entries, inclusion proofs, signed
  checkpoint) and the log key they were verified against, at that moment;
* ``SHA256SUMS`` -- the files in ``sha256sum -c`` format, paths relative to ``DIR``.

``evx verify DIR`` checks the folder against its records months later, without the server:
every file's bytes, every link's target, every directory; the manifest hash; the custody
record; and that what the ledger says was uploaded is what is here.

The custody record carries the log key it was verified with. That key is the recorder's word
only: a folder the hub assembled (``GET /v1/packages/{id}/archive``) carries the hub's own key,
and a hub that forged a whole record would sign it with a key of its own. So the record is
verified under the key this machine trusts for the record's server -- given for the run, or
pinned by ``evx trust log`` / first use -- and a record under any other key is a difference.
Only where this machine trusts no key for that server is the recorded key used, and the report
says so (``log_key_source`` "record"), for the key to be compared out of band.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from custody.note import VerifierKey
from evx.client.errors import IntegrityFailure, UsageError
from evx.client.outdir import OutputFolder
from evx.protocol.localnames import PARTIAL_DIR, RECORD_DIR
from evx.protocol.manifest import manifest_sha256
from evx.protocol.names import decode_text, display, encode_bytes

BLOCK_BYTES = 1024 * 1024


# -- evx verify DIR ---------------------------------------------------------------------------

@dataclass
class FolderReport:
    """What ``evx verify DIR`` found."""

    packages: list[str] = field(default_factory=list)
    checked: int = 0
    problems: list[dict[str, str]] = field(default_factory=list)
    custody_entries: int = 0
    #: per package: the log key its custody record was verified under, and where it came from
    log_keys: dict[str, dict[str, str]] = field(default_factory=dict)

    def problem(self, what: str, name: str, detail: str) -> None:
        self.problems.append({"problem": what, "item": name, "detail": detail})

    def to_json(self) -> dict[str, Any]:
        return {"ok": not self.problems, "packages": self.packages, "items_checked": self.checked,
                "custody_entries_verified": self.custody_entries, "log_keys": self.log_keys,
                "problems": self.problems}

    def unpinned(self) -> list[str]:
        """The packages whose custody was verified only under the key their record carries."""
        return [pkg for pkg, key in self.log_keys.items() if key["source"] == "record"]


KeySource = Literal["given", "pinned", "record"]


@dataclass(frozen=True)
class TrustedKeys:
    """Where ``evx verify`` takes the log key of a record's server from: the key given for the
    run (``--log-key`` / ``EVX_LOG_KEY``), else what this machine pinned for that server."""

    given: VerifierKey | None = None
    state_dir: Path | None = None

    def for_server(self, server: object) -> tuple[VerifierKey, KeySource] | None:
        """The trusted key for ``server`` (a record's ``server`` field), if any.

        Raises:
            UsageError: The pin file for that server exists but is unreadable.
        """
        if self.given is not None:
            return self.given, "given"
        if self.state_dir is None or not isinstance(server, str) or not server:
            return None
        from evx.client.state import TrustState

        pinned = TrustState(self.state_dir, server).pinned_key()
        return (pinned, "pinned") if pinned is not None else None


def _hash_fd(fd: int) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    while block := os.read(fd, BLOCK_BYTES):
        digest.update(block)
        size += len(block)
    return digest.hexdigest(), size


def _check_item(out: OutputFolder, item: dict[str, Any], report: FolderReport) -> None:
    name = item["name"]
    local = tuple(decode_text(item.get("local", name)).split(b"/"))
    kind = item.get("kind", "file")
    try:
        st = out.lstat(local)
    except (OSError, UsageError) as exc:
        report.problem("unreadable", name, str(exc))
        return
    if st is None:
        report.problem("missing", name, f"{out.shown(local)} is missing")
        return
    if kind == "directory":
        if not stat.S_ISDIR(st.st_mode):
            report.problem("changed", name, f"{out.shown(local)} is no longer a directory")
        return
    if kind == "link":
        if not stat.S_ISLNK(st.st_mode):
            report.problem("changed", name, f"{out.shown(local)} is no longer a symbolic link")
            return
        fd = out.directory(local[:-1], create=False)
        try:
            target = os.readlink(local[-1], dir_fd=fd)
        finally:
            os.close(fd)
        if encode_bytes(target) != item["target"]:
            report.problem("changed", name, f"{out.shown(local)} points to "
                           f"{display(encode_bytes(target))}, not {display(item['target'])}")
        return
    opened = out.open_existing(local)
    if opened is None:
        report.problem("changed", name, f"{out.shown(local)} is no longer a regular file")
        return
    try:
        sha256, size = _hash_fd(opened)
    finally:
        os.close(opened)
    if size != item["size"] or not hmac.compare_digest(sha256, item["sha256"]):
        report.problem("changed", name, f"{out.shown(local)} has sha256 {sha256} ({size} "
                       f"bytes); received with {item['sha256']} ({item['size']} bytes)")


def _check_custody(package_id: str, custody: dict[str, Any], manifest: dict[str, Any],
                   trusted: TrustedKeys, report: FolderReport) -> None:
    from evx.client.trust import verify_custody_pages

    try:
        recorded = VerifierKey.parse(custody["log_key"])
    except Exception as exc:  # noqa: BLE001 - any unreadable key is a failed check
        report.problem("custody", package_id, f"the recorded log key is unusable: {exc}")
        return
    found = trusted.for_server(manifest.get("server"))
    key, source = found if found is not None else (recorded, "record")
    report.log_keys[package_id] = {"key": str(key), "source": source,
                                   "server": str(manifest.get("server") or "")}
    if key != recorded:
        report.problem("custody", package_id, f"the custody record is under the log key "
                       f"{recorded.name}+{recorded.key_id:08x}, not the {source} key "
                       f"{key.name}+{key.key_id:08x} of {manifest.get('server')}")
        return
    pages = custody.get("pages") or []
    try:
        entries = verify_custody_pages(pages, key, package_id)
    except (IntegrityFailure, IndexError) as exc:
        report.problem("custody", package_id, f"the custody record does not verify: {exc}")
        return
    report.custody_entries += len(entries)
    uploaded = {e.item: e.details for e in entries
                if e.action == "item.uploaded" and e.outcome == "allowed" and e.item}
    sealed = [e.details.get("manifest_sha256") for e in entries
              if e.action == "package.sealed" and e.outcome == "allowed"]
    at_seal = manifest.get("sealed_manifest_sha256")
    if at_seal is not None and sealed != [at_seal]:
        report.problem("custody", package_id, "the manifest recorded at seal is not the one in "
                       "the custody record")
    for item in manifest["items"]:
        details = uploaded.get(item["name"])
        if details is None or details.get("sha256") != item["sha256"]:
            report.problem("custody", item["name"], "the custody record has no upload of this "
                           "item with this SHA-256")


def verify_folder(root: Path, trusted: TrustedKeys | None = None) -> FolderReport:
    """Check a received folder against its download records, offline; each custody record
    under the key ``trusted`` gives for its server (see the module's docstring).

    Raises:
        UsageError: ``root`` holds no download record.
    """
    report = FolderReport()
    record_root = root / RECORD_DIR
    try:
        packages = sorted(p.name for p in record_root.iterdir()
                          if (p / "manifest.json").is_file() and not p.is_symlink())
    except OSError:
        packages = []
    if not packages:
        raise UsageError(f"{root} holds no download record ({RECORD_DIR}/PACKAGE/manifest.json)",
                         hint="evx download writes one; give the folder given to -o.",
                         slug="no-record")
    expected: set[bytes] = set()
    with OutputFolder(root) as out:
        for package_id in packages:
            report.packages.append(package_id)
            folder = record_root / package_id
            try:
                manifest = json.loads((folder / "manifest.json").read_bytes())
                custody = json.loads((folder / "custody.json").read_bytes())
            except (OSError, ValueError) as exc:
                report.problem("record", package_id, f"the download record is unreadable: {exc}")
                continue
            if manifest_sha256(package_id, manifest["items"]) != manifest["manifest_sha256"]:
                report.problem("record", package_id, "manifest.json does not hash to its "
                               "recorded manifest_sha256")
            if manifest.get("complete") and manifest.get("sealed_manifest_sha256") not in (
                    None, manifest["manifest_sha256"]):
                report.problem("record", package_id, "the items received are not the sealed "
                               "manifest")
            for item in manifest["items"]:
                report.checked += 1
                local = decode_text(item.get("local", item["name"]))
                expected.add(local)
                parts = local.split(b"/")
                expected.update(b"/".join(parts[:i]) for i in range(1, len(parts)))
                _check_item(out, item, report)
            _check_custody(package_id, custody, manifest, trusted or TrustedKeys(), report)
        for extra in _extra_paths(out, expected):
            report.problem("extra", encode_bytes(extra),
                           f"{out.shown(tuple(extra.split(b'/')))} is not in any download "
                           "record")
    return report


def _extra_paths(out: OutputFolder, expected: set[bytes]) -> list[bytes]:
    """Paths below -o that no record lists (the client's own folders aside)."""
    extra: list[bytes] = []

    def walk(fd: int, prefix: tuple[bytes, ...]) -> None:
        with os.scandir(fd) as scan:
            names = sorted(os.fsencode(e.name) for e in scan)
        for raw in names:
            here = (*prefix, raw)
            if not prefix and raw in (RECORD_DIR.encode(), PARTIAL_DIR.encode()):
                continue
            path = b"/".join(here)
            if path not in expected:
                extra.append(path)
                continue
            st = os.stat(raw, dir_fd=fd, follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                child = out.directory(here, create=False)
                try:
                    walk(child, here)
                finally:
                    os.close(child)

    top = os.dup(out.fd)
    try:
        walk(top, ())
    finally:
        os.close(top)
    return extra
