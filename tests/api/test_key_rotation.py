"""`evx keys rotate`: a new KEK, every item rewrapped, content untouched, still readable, and
the rotation on the record."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.api.conftest import OWNER, RECIPIENT, World


def test_rotate_rewraps_and_keeps_everything_readable(world: World) -> None:
    data = os.urandom(150_000)
    package_id = world.sealed_shared_package({"a.bin": data, "b.bin": b"small"})
    root = world.settings.objects_dir
    contents = {p: p.read_bytes() for p in root.rglob("*") if p.is_file()
                and not p.name.endswith(".keys")}
    envelopes = {p: p.read_bytes() for p in root.rglob("*.keys")}
    old_active = world.runtime.keyring.active_key_id
    size = world.ledger_size()
    env = {**os.environ, "EVX_DATA_DIR": str(world.settings.data_dir),
           "EVX_OPERATOR_AUTHORITY": world.settings.operator_authority}
    out = subprocess.run([sys.executable, "-m", "evx", "keys", "rotate", "--json"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["new_key"] != old_active and report["active_key"] == report["new_key"]
    assert report["rewrapped"] == 2 and report["failed"] == 0
    # Content objects untouched, every envelope rewritten.
    assert {p: p.read_bytes() for p in contents} == contents
    assert all(p.read_bytes() != before for p, before in envelopes.items())
    # The running service (still holding the old keyring) reads the rewrapped items.
    r = world.client.get(f"/v1/packages/{package_id}/items/a.bin/content",
                         headers=world.headers(RECIPIENT))
    assert r.status_code == 200 and r.content == data
    assert world.runtime.keyring.active_key_id == report["new_key"]
    rotated = [e for e in world.entries(size) if e["action"] == "key.rotated"]
    assert len(rotated) == 1 and rotated[0]["details"]["rewrapped"] == 2
    assert rotated[0]["actor"]["role"] == "operator"
    # New uploads are wrapped with the new key.
    second = world.create_package(OWNER)
    world.upload(second, "c.bin", b"after rotation")
    r = world.client.get(f"/v1/packages/{second}/items/c.bin/content",
                         headers=world.headers(OWNER))
    assert r.content == b"after rotation"
