"""The two-authority flow of the issue, end to end, on the embedded defaults and on real
PostgreSQL + SeaweedFS: create, upload with digests, seal, share, retrieve, audit, export,
verify."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from custody.checkpoint import Checkpoint
from custody.cli import verify_file
from custody.note import VerifierKey
from tests.api.conftest import OPERATOR, OWNER, RECIPIENT, World
from tests.api.custody_check import verify_custody_response

ITEMS = {
    "extraction/phone.ufdr": os.urandom(700_000),
    "extraction/notes.txt": b"seized 2026-11-02 at 06:10\n",
    "empty.bin": b"",
}


def _flow(w: World, tmp_path: Path) -> None:
    key = w.client.get("/v1/ledger/key").text.strip()
    package_id = w.create_package(OWNER)
    for name, data in ITEMS.items():
        item = w.upload(package_id, name, data)
        assert item["sha256"] == hashlib.sha256(data).hexdigest()
        assert item["size"] == len(data)
    r = w.client.post(f"/v1/packages/{package_id}/seal", headers=w.headers(OWNER))
    assert r.status_code == 200, r.text
    r = w.client.post(f"/v1/packages/{package_id}/shares", headers=w.headers(OWNER),
                      json={"authority": RECIPIENT, "legal_basis": "EIO 2014/41/EU",
                            "request_reference": "MLA-FR-2026-0042"})
    assert r.status_code == 201, r.text

    # The recipient sees the package and retrieves every item with matching digests.
    r = w.client.get(f"/v1/packages/{package_id}", headers=w.headers(RECIPIENT))
    assert r.status_code == 200
    listed = {i["name"]: i for i in r.json()["items"]}
    assert set(listed) == set(ITEMS)
    for name, data in ITEMS.items():
        r = w.client.get(f"/v1/packages/{package_id}/items/{name}/content",
                         headers=w.headers(RECIPIENT))
        assert r.status_code == 200, r.text
        assert r.content == data
        want = base64.b64encode(hashlib.sha256(data).digest()).decode()
        assert r.headers["repr-digest"] == f"sha-256=:{want}:"
        assert hashlib.sha256(r.content).hexdigest() == listed[name]["sha256"]

    # Both authorities' auditors read the custody record and verify it offline.
    for authority in (OWNER, RECIPIENT):
        r = w.client.get(f"/v1/packages/{package_id}/custody",
                         headers=w.headers(authority, "auditor"))
        assert r.status_code == 200, r.text
        verified = verify_custody_response(r.json(), key, package_id)
        actions = [e.action.value for e in verified.entries]
        assert actions[0] == "package.created"
        assert actions.count("item.uploaded") == len(ITEMS)
        assert "package.sealed" in actions and "share.created" in actions
        assert actions.count("download.started") == len(ITEMS)
        assert actions.count("download.completed") == len(ITEMS)
        assert actions[-1] == "custody.read"
        shared = next(e for e in verified.entries if e.action.value == "share.created")
        assert shared.legal is not None and shared.legal.request_reference == "MLA-FR-2026-0042"

    # The operator's auditor exports the whole ledger; `evx ledger verify` accepts it.
    saved = Checkpoint.verify(w.client.get("/v1/ledger/checkpoint",
                                           headers=w.headers(OPERATOR, "auditor")).text,
                              VerifierKey.parse(key))
    r = w.client.get("/v1/ledger/export", headers=w.headers(OPERATOR, "auditor"))
    assert r.status_code == 200, r.text
    export = tmp_path / "ledger.jsonl"
    export.write_bytes(r.content)
    result = verify_file(export, VerifierKey.parse(key), saved)
    assert result.entry_count == result.tree_size >= saved.size
    proc = subprocess.run([sys.executable, "-m", "evx", "ledger", "verify", str(export),
                           "--key", key], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "VERIFIED" in proc.stdout


def test_two_authorities_embedded(world: World, tmp_path: Path) -> None:
    _flow(world, tmp_path)


@pytest.mark.postgres
@pytest.mark.s3
def test_two_authorities_postgres_seaweedfs(pg_s3_world: World, tmp_path: Path) -> None:
    _flow(pg_s3_world, tmp_path)
