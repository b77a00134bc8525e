"""Fail closed: when the ledger cannot be written, nothing happens and no evidence byte leaves.

The ledger is made to fail for real -- the database refuses inserts into the entries table (a
trigger that aborts, as a full disk or a lost primary would) -- not by mocking anything.
"""

from __future__ import annotations

import sqlalchemy as sa

from tests.api.conftest import OWNER, RECIPIENT, World

BREAK_SQLITE = ("CREATE TRIGGER evx_test_ledger_down BEFORE INSERT ON ledger_entries "
                "BEGIN SELECT RAISE(ABORT, 'ledger storage unavailable'); END")
FIX_SQLITE = "DROP TRIGGER evx_test_ledger_down"


def _break(w: World) -> None:
    with w.runtime.engine.begin() as conn:
        conn.execute(sa.text(BREAK_SQLITE))


def _fix(w: World) -> None:
    with w.runtime.engine.begin() as conn:
        conn.execute(sa.text(FIX_SQLITE))


def _objects(w: World) -> list[str]:
    root = w.settings.objects_dir
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_download_refused_with_zero_bytes_when_ledger_fails(world: World) -> None:
    secret = b"protected witness identity " * 1000
    package_id = world.sealed_shared_package({"statement.txt": secret})
    size_before = world.ledger_size()
    _break(world)
    r = world.client.get(f"/v1/packages/{package_id}/items/statement.txt/content",
                         headers=world.headers(RECIPIENT))
    assert r.status_code == 503
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["type"].endswith("/ledger-unavailable")
    assert secret[:20] not in r.content
    assert b"protected witness" not in r.content
    _fix(world)
    assert world.ledger_size() == size_before
    assert world.runtime.metrics.ledger_failures._value.get() >= 1


def test_every_operation_refused_when_ledger_fails(world: World) -> None:
    package_id = world.create_package()
    world.upload(package_id, "a.bin", b"a")
    objects_before = _objects(world)
    size_before = world.ledger_size()
    _break(world)
    h = world.headers(OWNER)
    responses = {
        "create": world.client.post("/v1/packages", headers=h, json={
            "case_reference": "C-1", "title": "t"}),
        "upload": world.client.put(f"/v1/packages/{package_id}/items/b.bin", content=b"b" * 5000,
                                   headers=h),
        "metadata": world.client.get(f"/v1/packages/{package_id}", headers=h),
        "list": world.client.get("/v1/packages", headers=h),
        "seal": world.client.post(f"/v1/packages/{package_id}/seal", headers=h),
        "custody": world.client.get(f"/v1/packages/{package_id}/custody", headers=h),
    }
    _fix(world)
    for name, r in responses.items():
        assert r.status_code == 503, (name, r.text)
        assert r.json()["type"].endswith("/ledger-unavailable"), name
    assert world.ledger_size() == size_before
    # Nothing half-done: no new package, no item row, no orphan object, not sealed.
    r = world.client.get(f"/v1/packages/{package_id}", headers=h)
    assert [i["name"] for i in r.json()["items"]] == ["a.bin"]
    assert r.json()["sealed"] is False
    assert _objects(world) == objects_before
    r = world.client.get("/v1/packages", headers=h)
    assert [p["id"] for p in r.json()["packages"]] == [package_id]


def test_tampered_object_is_a_clear_integrity_error_before_any_byte(world: World) -> None:
    package_id = world.sealed_shared_package({"t.bin": b"evidence " * 50_000})
    root = world.settings.objects_dir
    content = next(p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".keys"))
    raw = bytearray(content.read_bytes())
    raw[100] ^= 0x01  # inside the first chunk
    content.write_bytes(bytes(raw))
    size = world.ledger_size()
    r = world.client.get(f"/v1/packages/{package_id}/items/t.bin/content",
                         headers=world.headers(RECIPIENT))
    assert r.status_code == 500
    assert r.json()["type"].endswith("/integrity-failure")
    assert b"evidence evidence" not in r.content
    recorded = [(e["action"], e["outcome"]) for e in world.entries(size)]
    assert recorded == [("download.started", "allowed"), ("download.aborted", "failed")]


def test_replaced_log_key_is_refused_not_served(world: World) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from service.ledger.ledger import Ledger

    h = world.headers(RECIPIENT)
    assert world.client.get("/v1/ledger/checkpoint", headers=h).status_code == 200
    world.sealed_shared_package()  # the tree grows past the signed checkpoint
    # The operator swaps the signing key under a running replica.
    world.runtime.ledger = Ledger(world.runtime.engine, Ed25519PrivateKey.generate(),
                                  origin=world.settings.log_origin)
    world.runtime.recorder._ledger = world.runtime.ledger
    r = world.client.get("/readyz")
    assert r.status_code == 503 and r.json()["checks"]["log_key"].startswith("mismatch")
    r = world.client.get("/v1/ledger/checkpoint", headers=h)
    assert r.status_code == 500 and r.json()["type"].endswith("/ledger-inconsistent")


def test_integrity_errors_name_no_object_or_key_to_the_caller(world: World) -> None:
    # Review L7: a recipient was shown "object not found: items/92/a30337a3..." and "data key
    # does not unwrap under kek-20261128-...". The cause is the operator's, in the log.
    first = world.sealed_shared_package({"a.bin": b"a" * 1000})
    second = world.sealed_shared_package({"b.bin": b"b" * 1000})
    root = world.settings.objects_dir
    envelopes = sorted(root.rglob("*.keys"), key=lambda p: p.stat().st_mtime_ns)
    flipped = bytearray(envelopes[0].read_bytes())
    flipped[-1] ^= 0x01  # the wrapped data key: it no longer unwraps under the KEK
    envelopes[0].write_bytes(bytes(flipped))
    envelopes[1].unlink()  # the other item's key envelope is gone
    kek_ids = [p.name for p in world.settings.resolved_kek_dir.iterdir()]
    for package_id, name, cause in ((first, "a.bin", "unwrap"), (second, "b.bin", "not found")):
        r = world.client.get(f"/v1/packages/{package_id}/items/{name}/content",
                             headers=world.headers(RECIPIENT))
        assert r.status_code == 500 and r.json()["type"].endswith("/integrity-failure"), r.text
        detail = r.json()["detail"]
        assert cause not in detail and "items/" not in detail and "kek" not in detail.lower()
        assert not any(k in r.text for k in kek_ids)
        assert "request id" in detail
