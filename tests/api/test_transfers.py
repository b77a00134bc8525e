"""Uploads and downloads: digests, limits, names, immutability, ranges -- and nothing
half-written survives a refused upload."""

from __future__ import annotations

import base64
import hashlib
import os

import pytest
import sqlalchemy as sa

from service.packages.tables import items, pending_objects
from tests.api.conftest import OWNER, RECIPIENT, World


def _digest(data: bytes) -> str:
    return "sha-256=:" + base64.b64encode(hashlib.sha256(data).digest()).decode() + ":"


def _stored_state(w: World) -> tuple[list[str], int, int]:
    root = w.settings.objects_dir
    objects = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    with w.runtime.engine.connect() as conn:
        n_items = conn.execute(sa.select(sa.func.count()).select_from(items)).scalar_one()
        n_pending = conn.execute(sa.select(sa.func.count()).select_from(pending_objects)
                                 ).scalar_one()
    return objects, n_items, n_pending


def test_digest_mismatch_stores_nothing(world: World) -> None:
    package_id = world.create_package()
    before = _stored_state(world)
    size = world.ledger_size()
    r = world.client.put(f"/v1/packages/{package_id}/items/x.bin", content=b"real bytes",
                         headers={**world.headers(OWNER), "Content-Digest": _digest(b"other")})
    assert r.status_code == 422
    assert r.json()["type"].endswith("/digest-mismatch")
    assert _stored_state(world) == before
    failed = world.entries(size)
    assert [(e["action"], e["outcome"]) for e in failed] == [("item.uploaded", "failed")]


@pytest.mark.parametrize("header", ["sha-256=:not base64!:", "md5=:AAAA:", "sha-256=:AAAA:",
                                    "garbage"])
def test_malformed_content_digest(world: World, header: str) -> None:
    package_id = world.create_package()
    r = world.client.put(f"/v1/packages/{package_id}/items/x.bin", content=b"x",
                         headers={**world.headers(OWNER), "Content-Digest": header})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"


def test_too_large_declared_and_streamed(world: World) -> None:
    package_id = world.create_package()
    limit = world.settings.max_item_bytes
    before = _stored_state(world)
    big = os.urandom(limit + 1)
    r = world.client.put(f"/v1/packages/{package_id}/items/big.bin", content=big,
                         headers=world.headers(OWNER))
    assert r.status_code == 413
    assert r.json()["type"].endswith("/too-large")

    def chunked():  # no Content-Length: the limit is enforced while streaming
        for i in range(0, len(big), 65536):
            yield big[i:i + 65536]

    r = world.client.put(f"/v1/packages/{package_id}/items/big.bin", content=chunked(),
                         headers=world.headers(OWNER))
    assert r.status_code == 413
    assert _stored_state(world) == before
    exactly = os.urandom(limit)
    assert world.upload(package_id, "exact.bin", exactly)["size"] == limit


@pytest.mark.parametrize("name", ["../escape", "a/../../b", "/abs", "a//b", "./a", "a/.",
                                  "nul\x00byte", "lone%", "low%c3%a9", "%41", "x" * 256,
                                  "a/" * 2048 + "b", "trail/"])
def test_unsafe_item_names_refused(world: World, name: str) -> None:
    package_id = world.create_package()
    before = _stored_state(world)
    from urllib.parse import quote

    # Dots percent-encoded so the client does not normalize the path before sending it.
    encoded = quote(name, safe="/").replace(".", "%2E")
    r = world.client.put(f"/v1/packages/{package_id}/items/{encoded}",
                         content=b"x", headers=world.headers(OWNER))
    # Each is refused by the item-name rules, not merely "not found" by the router.
    assert (r.status_code, r.json()["type"].rsplit("/", 1)[-1]) == (422, "validation"), \
        (name, r.status_code, r.text)
    assert r.headers["content-type"] == "application/problem+json"
    assert _stored_state(world) == before


def test_items_are_immutable_and_sealed_packages_frozen(world: World) -> None:
    package_id = world.create_package()
    world.upload(package_id, "a.bin", b"first")
    r = world.client.put(f"/v1/packages/{package_id}/items/a.bin", content=b"second",
                         headers=world.headers(OWNER))
    assert r.status_code == 409 and r.json()["type"].endswith("/item-exists")
    assert world.client.post(f"/v1/packages/{package_id}/seal",
                             headers=world.headers(OWNER)).status_code == 200
    r = world.client.put(f"/v1/packages/{package_id}/items/b.bin", content=b"late",
                         headers=world.headers(OWNER))
    assert r.status_code == 409 and r.json()["type"].endswith("/package-sealed")
    r = world.client.post(f"/v1/packages/{package_id}/seal", headers=world.headers(OWNER))
    assert r.status_code == 409
    r = world.client.get(f"/v1/packages/{package_id}/items/a.bin/content",
                         headers=world.headers(OWNER))
    assert r.content == b"first"


def test_seal_records_manifest(world: World) -> None:
    package_id = world.create_package()
    world.upload(package_id, "b.bin", b"bb")
    world.upload(package_id, "a.bin", b"a")
    r = world.client.post(f"/v1/packages/{package_id}/seal", headers=world.headers(OWNER))
    manifest = r.json()["manifest_sha256"]
    from custody.jcs import canonicalize

    expected = hashlib.sha256(canonicalize({"package": package_id, "items": [
        {"name": "a.bin", "size": 1, "sha256": hashlib.sha256(b"a").hexdigest()},
        {"name": "b.bin", "size": 2, "sha256": hashlib.sha256(b"bb").hexdigest()}]})).hexdigest()
    assert manifest == expected
    sealed = world.entries(r.json()["ledger_index"])[0]
    assert sealed["action"] == "package.sealed"
    assert sealed["details"]["manifest_sha256"] == expected


def test_share_requires_seal_known_authority_and_future_expiry(world: World) -> None:
    package_id = world.create_package()
    body = {"authority": RECIPIENT, "legal_basis": "EIO", "request_reference": "R-1"}
    r = world.client.post(f"/v1/packages/{package_id}/shares", json=body,
                          headers=world.headers(OWNER))
    assert r.status_code == 409 and r.json()["type"].endswith("/package-not-sealed")
    world.client.post(f"/v1/packages/{package_id}/seal", headers=world.headers(OWNER))
    for bad in ({**body, "authority": "XX-NOBODY"}, {**body, "authority": OWNER},
                {**body, "expires_at": "2001-01-01T00:00:00Z"},
                {**body, "expires_at": "2099-01-01T00:00:00"}, {**body, "extra": 1},
                {"authority": RECIPIENT}):
        r = world.client.post(f"/v1/packages/{package_id}/shares", json=bad,
                              headers=world.headers(OWNER))
        assert r.status_code == 422, (bad, r.text)


DATA = os.urandom(300_000)


@pytest.mark.parametrize(("range_header", "start", "end"), [
    ("bytes=0-99", 0, 100), ("bytes=1000-", 1000, len(DATA)), ("bytes=-500", len(DATA) - 500,
                                                                len(DATA)),
    ("bytes=65530-65545", 65530, 65546), ("bytes=0-", 0, len(DATA)),
    ("bytes=299990-999999", 299990, len(DATA)),
])
def test_range_downloads(world: World, range_header: str, start: int, end: int) -> None:
    package_id = world.sealed_shared_package({"d.bin": DATA})
    r = world.client.get(f"/v1/packages/{package_id}/items/d.bin/content",
                         headers={**world.headers(RECIPIENT), "Range": range_header})
    partial = (start, end) != (0, len(DATA))
    assert r.status_code == (206 if partial else 200)
    assert r.content == DATA[start:end]
    assert r.headers["repr-digest"] == _digest(DATA)
    if partial:
        assert r.headers["content-range"] == f"bytes {start}-{end - 1}/{len(DATA)}"
    entries = [e for e in world.entries() if e["action"] == "download.completed"]
    assert entries[-1]["details"]["bytes_sent"] == end - start


def test_range_not_satisfiable_and_if_range(world: World) -> None:
    package_id = world.sealed_shared_package({"d.bin": DATA})
    url = f"/v1/packages/{package_id}/items/d.bin/content"
    r = world.client.get(url, headers={**world.headers(RECIPIENT),
                                       "Range": f"bytes={len(DATA)}-"})
    assert r.status_code == 416
    assert r.headers["content-range"] == f"bytes */{len(DATA)}"
    stale = world.client.get(url, headers={**world.headers(RECIPIENT), "Range": "bytes=10-",
                                           "If-Range": '"' + "0" * 64 + '"'})
    assert stale.status_code == 200 and stale.content == DATA
    etag = stale.headers["etag"]
    fresh = world.client.get(url, headers={**world.headers(RECIPIENT), "Range": "bytes=10-",
                                           "If-Range": etag})
    assert fresh.status_code == 206 and fresh.content == DATA[10:]


def test_head_gives_size_and_digest_without_bytes(world: World) -> None:
    package_id = world.sealed_shared_package({"d.bin": DATA})
    r = world.client.head(f"/v1/packages/{package_id}/items/d.bin/content",
                          headers=world.headers(RECIPIENT))
    assert r.status_code == 200 and r.content == b""
    assert r.headers["repr-digest"] == _digest(DATA)
    assert r.headers["content-length"] == str(len(DATA))
    r = world.client.head(f"/v1/packages/{package_id}/items/nope.bin/content",
                          headers=world.headers(RECIPIENT))
    assert r.status_code == 404


def test_share_expiry_stored_in_utc(world: World) -> None:
    package_id = world.create_package()
    world.upload(package_id, "a", b"a")
    world.client.post(f"/v1/packages/{package_id}/seal", headers=world.headers(OWNER))
    r = world.client.post(f"/v1/packages/{package_id}/shares", headers=world.headers(OWNER),
                          json={"authority": RECIPIENT, "legal_basis": "EIO",
                                "request_reference": "R", "expires_at":
                                "2099-06-01T12:00:00+02:00"})
    assert r.status_code == 201
    assert r.json()["expires_at"].replace("+00:00", "Z") == "2099-06-01T10:00:00Z"
    share = [e for e in world.entries() if e["action"] == "share.created"][-1]
    assert share["details"]["expires_at"] == "2099-06-01T10:00:00+00:00"
