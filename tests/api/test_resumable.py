"""Resumable uploads over HTTP (draft-ietf-httpbis-resumable-upload): creation, offset
retrieval, appends that continue from the durable point, completion with the item's
Repr-Digest, refusals, cancellation and expiry -- each on the record."""

from __future__ import annotations

import base64
import hashlib
import os
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from service.packages.sweeper import sweep
from service.settings import Settings
from tests.api.conftest import OPERATOR, OWNER, RECIPIENT, World, _world

CHUNK = 64 * 1024
SIZE = 5 * 1024 * 1024 + 12345  # five segments of 1 MiB and a bit, the last chunk short


def _settings(tmp_path: Path, **extra: object) -> Settings:
    return Settings(data_dir=tmp_path / "data", operator_authority=OPERATOR, chunk_size=CHUNK,
                    max_item_bytes=64 * 1024 * 1024, upload_segment_mib=1, **extra)


@pytest.fixture
def rworld(tmp_path: Path) -> Iterator[World]:
    yield from _world(_settings(tmp_path))


@pytest.fixture
def pg_s3_rworld(tmp_path: Path, pg_migrated_url: str, seaweed,
                 s3_bucket: str) -> Iterator[World]:
    yield from _world(_settings(
        tmp_path, database_url=pg_migrated_url, object_store="s3", s3_endpoint=seaweed.endpoint,
        s3_access_key=seaweed.access_key, s3_secret_key=seaweed.secret_key,
        s3_bucket=s3_bucket))


def _digest(data: bytes) -> str:
    return f"sha-256=:{base64.b64encode(hashlib.sha256(data).digest()).decode()}:"


def _create(w: World, package_id: str, name: str, length: int, body: bytes = b"",
            authority: str = OWNER):
    return w.client.put(f"/v1/packages/{package_id}/items/{name}", content=body,
                        headers={**w.headers(authority), "Upload-Complete": "?0",
                                 "Upload-Length": str(length)})


def _append(w: World, location: str, offset: int, body: bytes, *, complete: bool,
            digest: str | None = None, authority: str = OWNER):
    headers = {**w.headers(authority), "Upload-Offset": str(offset),
               "Upload-Complete": "?1" if complete else "?0",
               "Content-Type": "application/partial-upload"}
    if digest:
        headers["Repr-Digest"] = digest
    return w.client.patch(location, content=body, headers=headers)


def _offset(w: World, location: str, authority: str = OWNER) -> int:
    r = w.client.head(location, headers=w.headers(authority))
    assert r.status_code == 204, r.text
    assert r.headers["cache-control"] == "no-store"
    return int(r.headers["upload-offset"])


def _uploaded_entries(w: World, start: int) -> list[tuple[str, str | None]]:
    return [(e["outcome"], e.get("reason")) for e in w.entries(start)
            if e["action"] == "item.uploaded"]


def _staged_objects(w: World) -> list[str]:
    return sorted(w.runtime.store.list("staging/"))


def _resume_round_trip(w: World) -> None:
    data = os.urandom(SIZE)
    package_id = w.create_package()
    start = w.ledger_size()
    r = _create(w, package_id, "images/disk.E01", SIZE, data[:1_500_000])
    assert r.status_code == 201, r.text
    location = r.headers["location"]
    assert location.startswith("/v1/uploads/upl_")
    assert r.headers["upload-complete"] == "?0"
    assert "max-size=" in r.headers["upload-limit"]
    # 1.5 MB sent: one whole segment of 1 MiB plus whole chunks after it are durable; the
    # partial chunk at the end is not
    durable = _offset(w, location)
    assert durable == 1_500_000 - 1_500_000 % CHUNK
    # an append that does not start at the durable offset is refused, and changes nothing
    r = _append(w, location, 1_500_000, data[1_500_000:], complete=True, digest=_digest(data))
    assert r.status_code == 409, r.text
    problem = r.json()
    assert problem["type"] == \
        "https://iana.org/assignments/http-problem-types#mismatching-upload-offset"
    assert (problem["expected-offset"], problem["provided-offset"]) == (durable, 1_500_000)
    # a second append stopping in the middle, then the completing one
    r = _append(w, location, durable, data[durable:4_000_000], complete=False)
    assert r.status_code == 204, r.text
    second = int(r.headers["upload-offset"])
    assert second == _offset(w, location) == 4_000_000 - 4_000_000 % CHUNK
    assert _uploaded_entries(w, start) == []  # nothing on the record until it is complete
    r = _append(w, location, second, data[second:], complete=True, digest=_digest(data))
    assert r.status_code == 201, r.text
    assert r.json()["sha256"] == hashlib.sha256(data).hexdigest()
    assert r.json()["size"] == SIZE
    assert r.headers["upload-complete"] == "?1"
    got = w.client.get(f"/v1/packages/{package_id}/items/images/disk.E01/content",
                       headers=w.headers(OWNER))
    assert got.status_code == 200 and got.content == data
    assert _uploaded_entries(w, start) == [("allowed", None)]
    entry = next(e for e in w.entries(start) if e["action"] == "item.uploaded")
    assert entry["details"] == {"size": SIZE, "sha256": hashlib.sha256(data).hexdigest()}
    assert _staged_objects(w) == []
    assert w.client.head(location, headers=w.headers(OWNER)).status_code == 404


def test_upload_resumes_from_the_durable_offset(rworld: World) -> None:
    _resume_round_trip(rworld)


@pytest.mark.s3
def test_upload_resumes_from_the_durable_offset_pg_s3(pg_s3_rworld: World) -> None:
    _resume_round_trip(pg_s3_rworld)


def test_digest_mismatch_at_completion_stores_nothing(rworld: World) -> None:
    data = os.urandom(3 * CHUNK + 7)
    package_id = rworld.create_package()
    location = _create(rworld, package_id, "a.bin", len(data)).headers["location"]
    start = rworld.ledger_size()
    r = _append(rworld, location, 0, data, complete=True, digest=_digest(data + b"x"))
    assert r.status_code == 422, r.text
    assert r.json()["type"].endswith("/digest-mismatch")
    assert _uploaded_entries(rworld, start) == [
        ("failed", "the received bytes do not match the Repr-Digest of the completing request; "
                   "nothing was stored")]
    assert rworld.client.head(location, headers=rworld.headers(OWNER)).status_code == 404
    assert list(rworld.runtime.store.list("")) == []  # envelope and segments removed
    package = rworld.client.get(f"/v1/packages/{package_id}", headers=rworld.headers(OWNER))
    assert package.json()["items"] == []


def test_completion_needs_the_repr_digest_and_the_right_length(rworld: World) -> None:
    data = os.urandom(2 * CHUNK)
    package_id = rworld.create_package()
    location = _create(rworld, package_id, "a.bin", len(data)).headers["location"]
    r = _append(rworld, location, 0, data, complete=True)
    assert r.status_code == 422 and "Repr-Digest" in r.json()["detail"]
    r = _append(rworld, location, 0, data + b"more", complete=True, digest=_digest(data))
    assert r.status_code == 400, r.text
    assert r.json()["type"].endswith("#inconsistent-upload-length")
    offset = _offset(rworld, location)
    assert offset == len(data)  # the declared bytes were stored; the surplus was refused
    r = _append(rworld, location, offset, b"", complete=True, digest=_digest(data))
    assert r.status_code == 201, r.text


def test_an_upload_belongs_to_its_officer(rworld: World) -> None:
    package_id = rworld.create_package()
    r = _create(rworld, package_id, "a.bin", 10 * CHUNK, b"x" * CHUNK)
    location = r.headers["location"]
    # the same officer asking again is told where to resume
    again = _create(rworld, package_id, "a.bin", 10 * CHUNK)
    assert again.status_code == 409, again.text
    assert again.headers["location"] == location
    assert (again.json()["upload"], again.json()["offset"]) == (location, CHUNK)
    # another authority's officer learns nothing about it
    assert rworld.client.head(location, headers=rworld.headers(RECIPIENT)).status_code == 404
    r = _append(rworld, location, CHUNK, b"y", complete=False, authority=RECIPIENT)
    assert r.status_code == 404
    r = rworld.client.patch(location, content=b"y", headers={
        **rworld.headers(OWNER), "Upload-Offset": str(CHUNK), "Upload-Complete": "?0",
        "Content-Type": "application/octet-stream"})
    assert r.status_code == 415


def test_cancel_and_expiry_are_recorded(rworld: World) -> None:
    package_id = rworld.create_package()
    cancelled = _create(rworld, package_id, "c.bin", 4 * CHUNK, b"c" * CHUNK).headers["location"]
    abandoned = _create(rworld, package_id, "d.bin", 4 * CHUNK, b"d" * CHUNK).headers["location"]
    assert len(_staged_objects(rworld)) == 2
    start = rworld.ledger_size()
    assert rworld.client.delete(cancelled, headers=rworld.headers(OWNER)).status_code == 204
    assert _uploaded_entries(rworld, start) == [
        ("failed", "upload cancelled by the uploader; nothing was stored")]
    assert len(_staged_objects(rworld)) == 1
    # the sweeper leaves an upload alone while it is not idle for longer than the grace...
    runtime = rworld.runtime
    now = datetime.now(UTC)
    report = sweep(runtime.engine, runtime.vault, now=now, grace=timedelta(hours=1),
                   recorder=runtime.recorder, operator_authority=OPERATOR)
    assert report.expired_uploads == 0
    assert _offset(rworld, abandoned) == CHUNK
    # ...and expires it after
    start = rworld.ledger_size()
    report = sweep(runtime.engine, runtime.vault, now=now + timedelta(hours=2),
                   grace=timedelta(hours=1), recorder=runtime.recorder,
                   operator_authority=OPERATOR, reconcile=True)
    assert report.expired_uploads == 1 and report.unowned == 0
    entries = [e for e in rworld.entries(start) if e["action"] == "item.uploaded"]
    assert [(e["outcome"], e["item"], e["actor"]["subject"]) for e in entries] == [
        ("failed", "d.bin", "evx-sweeper")]
    assert entries[0]["details"]["bytes_received"] == CHUNK
    assert _staged_objects(rworld) == []
    assert [n for n in runtime.store.list("items/")] == []
    assert rworld.client.head(abandoned, headers=rworld.headers(OWNER)).status_code == 404
