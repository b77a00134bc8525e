"""`evx ledger sync` as a monitor: it catches a history rewritten behind the service's back
and a changed log key, against the state a user's machine saved earlier."""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from tests.client.harness import OPERATOR, OWNER, EvxServer, User
from tests.client.rewrite import rewrite_entry

pytestmark = pytest.mark.slow  # real `evx serve` processes and `evx` client processes


@pytest.fixture
def monitored(tmp_path: Path) -> Any:
    """A server with some history, an investigator and the operator's auditor (the monitor)."""
    server = EvxServer(tmp_path / "srv")
    server.root.mkdir()
    server.add_authority(OWNER, "DE", "investigator,auditor")
    server.add_authority(OPERATOR, "EU", "auditor")
    investigator, monitor = server.users([(OWNER, "investigator", "anna.schmidt"),
                                          (OPERATOR, "auditor", "olga.operator")])
    server.start()
    try:
        yield server, investigator, monitor
    finally:
        server.stop()


def _activity(investigator: User, tmp_path: Path, tag: str) -> str:
    package = investigator.json("package", "create", "--case-ref", f"CASE-{tag}",
                                "--title", "Seized laptop")["id"]
    evidence = tmp_path / tag / "hash-list.txt"
    evidence.parent.mkdir(parents=True)
    evidence.write_text(f"{tag}\n")
    investigator.run("upload", package, str(evidence))
    return package


def test_sync_catches_a_rewritten_ledger(monitored: Any, tmp_path: Path) -> None:
    server, investigator, monitor = monitored
    package = _activity(investigator, tmp_path, "one")
    first = monitor.json("ledger", "sync")
    assert first["newly_pinned"] and first["previous_size"] is None
    _activity(investigator, tmp_path, "two")
    second = monitor.json("ledger", "sync")
    assert second["previous_size"] == first["tree_size"] < second["tree_size"]
    assert second["consistency_proof_hashes"] > 0
    saved = (monitor.state_dir / "servers").rglob("checkpoint")
    (saved_path,) = list(saved)
    honest = saved_path.read_text()

    # The hostile administrator changes the digest recorded for the first upload.
    server.stop()
    db = server.data_dir / "evidence.db"
    with_sqlite = sqlite3.connect(db)
    (index,) = with_sqlite.execute(
        "SELECT idx FROM ledger_entries WHERE action = 'item.uploaded' AND package = ? "
        "ORDER BY idx LIMIT 1", (package,)).fetchone()
    with_sqlite.close()

    def forge(entry: dict[str, Any]) -> None:
        entry["details"]["sha256"] = "0" * 64

    rewrite_entry(db, index, forge)
    server.start()

    # The monitor's next run: the history it saw has another root (FORK at the same size, or
    # INCONSISTENT once the sync's own ledger.read entries grew the tree).
    fork = monitor.run("ledger", "sync", expect=1)
    assert ("FORK" in fork.stderr or "INCONSISTENT" in fork.stderr) \
        and "history was rewritten" in fork.stderr

    # The forged ledger verifies on its own: a fresh export under the real key is "VERIFIED"...
    export = tmp_path / "forged.jsonl"
    monitor.run("ledger", "export", "-o", str(export), "--no-verify")
    key = monitor.run("ledger", "key").stdout.strip()
    assert "VERIFIED" in monitor.run("ledger", "verify", str(export), "--key", key).stdout
    assert json.loads(export.read_text().splitlines()[index + 1])["entry"]["details"][
        "sha256"] == "0" * 64

    # ...but the tree has grown (the export is on the record) and no consistency proof from
    # what the monitor saw can lead to it.
    inconsistent = monitor.run("ledger", "sync", "--json", expect=1)
    assert "INCONSISTENT" in inconsistent.stderr
    assert json.loads(inconsistent.stdout)["error"] == "ledger-inconsistent"
    # An auditor's custody check of the package refuses it too.
    monitor_custody = monitor.run("custody", package, expect=None)
    assert monitor_custody.returncode == 1, monitor_custody.stderr
    assert "INCONSISTENT" in monitor_custody.stderr
    assert saved_path.read_text() == honest  # the trusted state never moves onto the fork
    # The saved checkpoint also makes the offline verifier refuse the forged export.
    refused = monitor.run("ledger", "verify", str(export), "--key", key, "--checkpoint",
                          str(saved_path), expect=1)
    assert "ForkError" in refused.stderr


def test_sync_refuses_a_changed_log_key(monitored: Any, tmp_path: Path) -> None:
    server, investigator, monitor = monitored
    _activity(investigator, tmp_path, "one")
    pinned = monitor.json("ledger", "sync")["log_key"]

    server.stop()
    key_file = server.data_dir / "keys" / "log-signing.key"
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption())
    key_file.unlink()
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, pem)
    os.close(fd)
    # The service itself reports the replaced key as not ready; a hostile operator could still
    # route traffic to it, so the client must catch it on its own.
    server.start(ready_path="/healthz")
    readiness = httpx.get(server.url + "/readyz", timeout=10)
    assert readiness.status_code == 503
    assert readiness.json()["checks"]["log_key"].startswith("mismatch")

    refused = monitor.run("ledger", "sync", expect=1)
    assert "THE LOG KEY OF" in refused.stderr and "CHANGED" in refused.stderr
    assert pinned in refused.stderr
    as_json = json.loads(monitor.run("ledger", "sync", "--json", "--quiet", expect=1).stdout)
    assert as_json["error"] == "log-key-changed" and as_json["pinned"] == pinned
    assert as_json["presented"] != pinned
    assert monitor.run("ledger", "key", expect=1).returncode == 1
    (pin,) = list((monitor.state_dir / "servers").rglob("log-key"))
    assert pin.read_text().strip() == pinned  # never re-pinned silently
