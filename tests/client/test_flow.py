"""The two-authority flow through the real `evx` CLI against a real server process:
DE-BKA uploads a directory, seals and shares it with FR-OCRTEH; FR-OCRTEH downloads and
verifies; both authorities' auditors verify the custody record; the operator exports and
verifies the whole ledger. On the embedded defaults and on PostgreSQL + SeaweedFS."""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import pytest

from tests.client.conftest import World, write_random
from tests.client.harness import RECIPIENT

pytestmark = pytest.mark.slow  # real `evx serve` processes and `evx` client processes

LEGAL_BASIS = "EIO Directive 2014/41/EU art. 1"
REQUEST_REF = "MLA-FR-2026-0042"


def _evidence(root: Path) -> dict[str, bytes]:
    """A seized-handset directory: nested files, an empty one, a non-ASCII name, an internal
    link."""
    ev = root / "handset-17"
    write_random(ev / "extraction" / "phone.ufdr", 3 * 1024 * 1024 + 17)
    (ev / "extraction" / "notes.txt").write_text("seized 2026-11-02 at 06:10\n")
    (ev / "empty.bin").write_bytes(b"")
    (ev / "rapport-été.txt").write_text("procès-verbal\n")
    os.symlink("extraction/notes.txt", ev / "notes-link.txt")  # uploaded as a link item
    files = {}
    for path in sorted(ev.rglob("*")):
        if path.is_file() and not path.is_symlink():
            files["handset-17/" + path.relative_to(ev).as_posix()] = path.read_bytes()
    return files


def test_two_authorities(world: World, tmp_path: Path) -> None:
    de, fr = world.investigator, world.recipient
    files = _evidence(tmp_path / "seized")

    created = de.json("package", "create", "--case-ref", "BKA-2026-17",
                      "--title", "Seized handset")
    package = created["id"]
    uploaded = de.json("upload", package, str(tmp_path / "seized" / "handset-17"))
    assert {i["name"]: i["sha256"] for i in uploaded["items"] if i["kind"] == "file"} == {
        name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    (link,) = [i for i in uploaded["items"] if i["kind"] == "link"]
    assert (link["name"], link["sha256"]) == (
        "handset-17/notes-link.txt", hashlib.sha256(b"extraction/notes.txt").hexdigest())
    assert {i["status"] for i in uploaded["items"]} == {"uploaded"}

    # Re-running is harmless: every item is already there with the same digest.
    again = de.run("upload", package, str(tmp_path / "seized" / "handset-17"))
    assert f"0 uploaded, {len(files) + 1} skipped" in again.stdout
    assert "skipped handset-17/empty.bin: already in the package" in again.stderr

    # A different file under an existing name is refused (exit 2), nothing changes.
    changed = tmp_path / "other" / "handset-17" / "empty.bin"
    changed.parent.mkdir(parents=True)
    changed.write_bytes(b"not empty")
    refused = de.run("upload", package, str(changed.parent), expect=2)
    assert "already holds a different item handset-17/empty.bin (file" in refused.stderr

    # The recipient cannot see it before it is shared (404-like: exit 4).
    assert fr.run("package", "show", package, expect=4).returncode == 4

    sealed = de.json("seal", package)
    assert len(sealed["manifest_sha256"]) == 64
    late = de.run("upload", package, str(changed), expect=2)
    assert "sealed" in late.stderr
    share = de.json("share", package, "--authority", RECIPIENT, "--legal-basis", LEGAL_BASIS,
                    "--request-ref", REQUEST_REF, "--expires", "2099-12-31T23:59:59+01:00")
    assert share["active"] and share["expires_at"].startswith("2099-12-31T22:59:59")
    shown = de.run("package", "show", package).stdout
    assert "FR-OCRTEH" in shown and "handset-17/extraction/phone.ufdr" in shown

    # FR-OCRTEH downloads everything; every file is verified and in place.
    out = tmp_path / "received"
    got = fr.json("download", package, "-o", str(out))
    assert {i["status"] for i in got["items"]} == {"downloaded"}
    for name, data in files.items():
        assert (out / name).read_bytes() == data
    assert os.readlink(out / "handset-17" / "notes-link.txt") == "extraction/notes.txt"
    assert got["matches_seal"] is True
    assert not any((out / ".evx-partial").rglob("*.part"))
    # A second run finds the verified files and leaves them alone.
    again = fr.json("download", package, "handset-17/empty.bin", "-o", str(out))
    assert again["items"][0]["status"] == "present"

    # Both authorities' auditors read the custody record, verified against their pinned key.
    for auditor in (world.owner_auditor, world.recipient_auditor):
        first = auditor.json("custody", package)
        assert first["verified"] is True
        actions = [e["action"] for e in first["entries"]]
        assert actions[0] == "package.created"
        assert actions.count("item.uploaded") == len(files) + 1
        assert "package.sealed" in actions and "share.created" in actions
        assert actions.count("download.completed") >= len(files)
        assert actions[-1] == "custody.read"
        shared = next(e for e in first["entries"] if e["action"] == "share.created")
        assert shared["legal"] == {"basis": LEGAL_BASIS, "request_reference": REQUEST_REF}
        # The second read checks the new checkpoint extends the one saved by the first.
        second = auditor.json("custody", package)
        assert second["checkpoint"]["previous_size"] == first["checkpoint"]["tree_size"]
        timeline = auditor.run("custody", package).stdout
        assert "VERIFIED" in timeline and "share.created" in timeline
        assert REQUEST_REF in timeline and "FR-OCRTEH / luc.martin" in timeline

    # The operator's auditor monitors, exports and verifies the whole ledger -- from a machine that
    # has not seen this server before (the session's server is shared with other tests).
    op = dataclasses.replace(world.operator_auditor, state_dir=tmp_path / "operator" / "state")
    synced = op.json("ledger", "sync")
    assert synced["ok"] and synced["newly_pinned"]
    export = tmp_path / "ledger.jsonl"
    exported = op.json("ledger", "export", "-o", str(export))
    assert exported["verified"] and exported["entries"] >= synced["tree_size"]
    assert exported["checkpoint"]["previous_size"] == synced["tree_size"]
    key = op.run("ledger", "key").stdout.strip()
    assert key == synced["log_key"]
    offline = op.run("ledger", "verify", str(export), "--key", key)
    assert "VERIFIED" in offline.stdout
    assert op.run("ledger", "sync", "--quiet").stdout == ""

    # Only the operator's auditors may export (exit 4), and a missing token is exit 3.
    denied = world.owner_auditor.run("ledger", "export", "-o", str(tmp_path / "x.jsonl"),
                                     expect=4)
    assert "only the operator's auditors" in denied.stderr
    assert not (tmp_path / "x.jsonl").exists()
    anonymous = de.run("package", "list", "--token", "", expect=3)
    assert "token" in anonymous.stderr
