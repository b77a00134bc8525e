"""Item names of every script and byte, links and directories as items, name conflicts, and the
recipient's receipt -- over the API on the embedded backends."""

from __future__ import annotations

import hashlib
from urllib.parse import quote, unquote

import pytest
import sqlalchemy as sa

from evx.protocol.manifest import manifest_sha256
from evx.protocol.names import encode_bytes
from service.packages.tables import items
from tests.api.conftest import OWNER, RECIPIENT, World

# One name per class of issue 9.1 (text form); the raw bytes are what a file system holds.
NAME_CLASSES = {
    "colon and reserved": 'IMG 2026-11-02 06:10:00 *?"<>|.jpg',
    "backslash": "C:\\Users\\anna\\notes.txt",
    "trailing dot and space": "trailing. ",
    "leading space": " lead",
    "NFC": "caf\u00e9.txt",
    "NFD": "cafe\u0301.txt",
    "case A": "Readme.TXT",
    "case B": "README.txt",
    "greek (M6)": "κατάθεση.txt",
    "cyrillic": "протокол.doc",
    "cjk": "証拠.png",
    "emoji": "😀.jpg",
    "bidi override (M6)": "name-with-\u202e-rtl-override-txt.exe",
    "zero width (M6)": "zero\u200bwidth",
    "fullwidth solidus (M6)": "a\uff0fb",
    "division slash (M6)": "a\u2215b",
    "C0 control": "ctl\x01\x1b[31m",
    "C1 control": "c1\u0085\u009b",
    "newline": "two\nlines",
    "percent": "100%25 done",
    "latin-1 byte": encode_bytes(b"bad\xffbyte.txt"),
    "lone continuation": encode_bytes(b"x\x80y"),
    "surrogate bytes": encode_bytes(b"\xed\xa0\x80"),
    "max segment": "s" * 255,
}


def _put(w: World, package_id: str, name: str, data: bytes):
    return w.client.put(f"/v1/packages/{package_id}/items/{quote(name, safe='/')}",
                        content=data, headers=w.headers(OWNER))


def test_every_name_class_round_trips(world: World) -> None:
    """M6: names outside Latin-1 used to 500 after being stored and recorded. Every class is
    stored exactly, Location is percent-encoded ASCII, and the content comes back."""
    package_id = world.create_package()
    start = world.ledger_size()
    for label, name in NAME_CLASSES.items():
        data = label.encode()
        r = _put(world, package_id, name, data)
        assert r.status_code == 201, (label, r.status_code, r.text)
        assert r.json()["name"] == name
        location = r.headers["location"]
        assert location.isascii()
        assert unquote(location) == f"/v1/packages/{package_id}/items/{name}/content"
        got = world.client.get(location, headers=world.headers(OWNER))
        assert got.status_code == 200 and got.content == data, label
        disposition = got.headers["content-disposition"]
        assert disposition.isascii() and "filename*=UTF-8''" in disposition
    listed = world.client.get(f"/v1/packages/{package_id}", headers=world.headers(OWNER)).json()
    assert sorted(i["name"] for i in listed["items"]) == sorted(NAME_CLASSES.values())
    uploads = [e for e in world.entries(start) if e["action"] == "item.uploaded"]
    assert sorted(e["item"] for e in uploads) == sorted(NAME_CLASSES.values())
    assert {e["outcome"] for e in uploads} == {"allowed"}


def test_deep_and_long_names(world: World) -> None:
    package_id = world.create_package()
    deep = "/".join(f"level{i:02d}" + "x" * 100 for i in range(30)) + "/leaf"
    assert len(deep.encode()) < 4096
    assert _put(world, package_id, deep, b"deep").status_code == 201
    too_long = "/".join(["y" * 255] * 17)  # 4351 bytes
    r = _put(world, package_id, too_long, b"x")
    assert r.status_code == 422 and "4096" in r.json()["detail"]


def test_refused_name_stores_and_allows_nothing(world: World) -> None:
    package_id = world.create_package()
    start = world.ledger_size()
    with world.runtime.engine.connect() as conn:
        before = conn.execute(sa.select(sa.func.count()).select_from(items)).scalar_one()
    r = _put(world, package_id, "caf%C3%A9", b"x")  # "é" spelt as escapes: not canonical
    assert r.status_code == 422
    assert "canonical" in r.json()["detail"]
    with world.runtime.engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(items)).scalar_one() == before
    assert [(e["action"], e["outcome"]) for e in world.entries(start)] == [
        ("item.uploaded", "failed")]


@pytest.mark.parametrize("first,second", [("dir", "dir/file"), ("dir/file", "dir"),
                                          ("a/b", "a/b/c/d")])
def test_file_as_directory_of_another_is_a_conflict(world: World, first: str,
                                                    second: str) -> None:
    """L2: ``dir`` and ``dir/file`` used to be accepted and crash the recipient's download."""
    package_id = world.create_package()
    assert _put(world, package_id, first, b"1").status_code == 201
    start = world.ledger_size()
    r = _put(world, package_id, second, b"2")
    assert r.status_code == 409, r.text
    assert r.json()["type"].endswith("/name-conflict")
    assert [(e["action"], e["outcome"]) for e in world.entries(start)] == [
        ("item.uploaded", "failed")]


def _entry(w: World, package_id: str, body: dict):
    return w.client.post(f"/v1/packages/{package_id}/items", json=body,
                         headers=w.headers(OWNER))


def test_links_and_directories_are_items(world: World) -> None:
    package_id = world.create_package()
    world.upload(package_id, "case/b.txt", b"bee")
    outside = encode_bytes(b"/storage/emulated/0/\xff")
    r = _entry(world, package_id, {"name": "case/sdcard", "kind": "link", "target": outside})
    assert r.status_code == 201, r.text
    link = r.json()
    assert (link["kind"], link["target"]) == ("link", outside)
    assert link["sha256"] == hashlib.sha256(b"/storage/emulated/0/\xff").hexdigest()
    assert link["size"] == len(b"/storage/emulated/0/\xff")
    assert _entry(world, package_id, {"name": "case/in-link", "kind": "link",
                                      "target": "b.txt"}).status_code == 201
    empty = _entry(world, package_id, {"name": "case/empty dir", "kind": "directory"})
    assert empty.status_code == 201 and empty.json()["size"] == 0
    # A link is never a directory of another item: that would let a download write through it.
    r = world.client.put(f"/v1/packages/{package_id}/items/case/sdcard/x", content=b"x",
                         headers=world.headers(OWNER))
    assert r.status_code == 409 and r.json()["type"].endswith("/name-conflict")
    # Links and directories have no content.
    r = world.client.get(f"/v1/packages/{package_id}/items/case/sdcard/content",
                         headers=world.headers(OWNER))
    assert r.status_code == 409 and r.json()["type"].endswith("/not-a-file")
    bad = _entry(world, package_id, {"name": "case/nul", "kind": "link", "target": "a\x00b"})
    assert bad.status_code == 422
    sealed = world.client.post(f"/v1/packages/{package_id}/seal", headers=world.headers(OWNER))
    listed = world.client.get(f"/v1/packages/{package_id}", headers=world.headers(OWNER)).json()
    assert sealed.json()["manifest_sha256"] == manifest_sha256(package_id, listed["items"])
    uploaded = [e for e in world.entries() if e["package"] == package_id
                and e["action"] == "item.uploaded" and e["item"] == "case/sdcard"]
    assert uploaded[0]["details"]["kind"] == "link"
    assert uploaded[0]["details"]["target"] == outside


def test_receipt_records_the_recipients_verification(world: World) -> None:
    package_id = world.sealed_shared_package({"a.txt": b"a", "d/b.txt": b"b"})
    listed = world.client.get(f"/v1/packages/{package_id}",
                              headers=world.headers(RECIPIENT)).json()
    manifest = manifest_sha256(package_id, listed["items"])
    start = world.ledger_size()
    r = world.client.post(f"/v1/packages/{package_id}/receipts",
                          json={"manifest_sha256": manifest, "items": 2, "bytes": 2},
                          headers=world.headers(RECIPIENT))
    assert r.status_code == 201, r.text
    assert r.json()["matches_seal"] is True
    other = world.client.post(f"/v1/packages/{package_id}/receipts",
                              json={"manifest_sha256": "0" * 64, "items": 1, "bytes": 1},
                              headers=world.headers(RECIPIENT))
    assert other.json()["matches_seal"] is False
    entries = world.entries(start)
    assert [(e["action"], e["actor"]["authority"], e["details"]["matches_seal"])
            for e in entries] == [("download.verified", RECIPIENT, True),
                                  ("download.verified", RECIPIENT, False)]
    assert entries[0]["details"]["manifest_sha256"] == manifest
    # Auditors never read content, so they cannot claim to have verified it.
    denied = world.client.post(f"/v1/packages/{package_id}/receipts",
                               json={"manifest_sha256": manifest, "items": 2, "bytes": 2},
                               headers=world.headers(RECIPIENT, "auditor"))
    assert denied.status_code == 403
