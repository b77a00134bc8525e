"""GET /v1/packages/{id}/archive: the whole package as one ZIP, each item a recorded download,
hostile names kept inside the archive's folder, the download record inside for ``evx verify``.

(A share revoked while the archive streams is tested against a real server, in
tests/web/test_folder_download.py: the test client here buffers whole responses.)
"""

from __future__ import annotations

import hashlib
import io
import os
import zipfile
from pathlib import Path

from evx.client.download_record import verify_folder
from service.packages.archive import ARCHIVE_PROFILE, archive_folder
from tests.api.conftest import OWNER, RECIPIENT, STRANGER, World
from tests.api.test_fail_closed import _break, _fix
from tests.api.test_item_names import NAME_CLASSES

HOSTILE = {**NAME_CLASSES, "record folder": ".evx/PKG/manifest.json",
           "windows device": "CON.txt", "reserved char": "a:b|c?.txt",
           "deep": "handset-17/extraction/phone.ufdr"}


def _archive(w: World, package_id: str, authority: str = RECIPIENT):
    return w.client.get(f"/v1/packages/{package_id}/archive", headers=w.headers(authority))


def _extract(content: bytes, into: Path) -> Path:
    """Extract as an unzip tool would, refusing any entry that would land outside ``into``."""
    with zipfile.ZipFile(io.BytesIO(content)) as archive:
        assert archive.testzip() is None  # every entry's CRC-32
        for info in archive.infolist():
            target = (into / info.filename).resolve()
            assert target.is_relative_to(into.resolve()), info.filename
            assert info.compress_type == zipfile.ZIP_STORED
            assert info.flag_bits & 0x800 or info.filename.isascii()  # names flagged UTF-8
        archive.extractall(into)
    return into


def test_archive_holds_every_item_under_safe_names_and_verifies_offline(
        world: World, tmp_path: Path) -> None:
    files = {name: f"{label}\n".encode() + os.urandom(100) for label, name in HOSTILE.items()}
    files["big.bin"] = os.urandom(300 * 1024)  # several chunks of 64 KiB
    package_id = world.sealed_shared_package(files)
    start = world.ledger_size()

    r = _archive(world, package_id)

    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    top = archive_folder(package_id)
    assert r.headers["content-disposition"] == f'attachment; filename="{top}.zip"'
    root = _extract(r.content, tmp_path / "out") / top
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [top]  # one folder, no more
    # Every name a portable local name: no component a Windows, macOS or Linux system refuses.
    for path in root.rglob("*"):
        for part in path.relative_to(root).parts:
            assert not set(part) & set('<>:"\\|?*') and len(part.encode()) <= 255, part
            assert part.split(".")[0].upper() not in ("CON", "NUL", "PRN", "AUX"), part
    # The bytes of every item, found through the record's own name -> local mapping.
    report = verify_folder(root)
    assert report.problems == [] and report.checked == len(files), report.problems
    assert report.custody_entries > 0
    sums = (root / ".evx" / package_id / "SHA256SUMS").read_bytes().splitlines()
    assert len(sums) == len(files)
    for line in sums:
        digest, local = line.lstrip(b"\\").split(b"  ", 1)
        if line.startswith(b"\\"):
            local = local.replace(b"\\n", b"\n").replace(b"\\\\", b"\\")
        assert hashlib.sha256((root / os.fsdecode(local)).read_bytes()).hexdigest() == \
            digest.decode()
    assert sorted(hashlib.sha256(d).hexdigest() for d in files.values()) == \
        sorted(line.split(b"  ")[0].lstrip(b"\\").decode() for line in sums)
    # One recorded download per item: started before, completed after, with the bytes.
    entries = world.entries(start)
    started = [e["item"] for e in entries if e["action"] == "download.started"]
    completed = {e["item"]: e["details"]["bytes_sent"] for e in entries
                 if e["action"] == "download.completed"}
    assert sorted(started) == sorted(files)
    assert completed == {name: len(data) for name, data in files.items()}
    assert all(e["actor"]["authority"] == RECIPIENT for e in entries)
    assert [e["action"] for e in entries][-1] == "custody.read"  # the record inside covers all


def test_archive_is_refused_without_a_share_and_nothing_is_sent(world: World) -> None:
    secret = b"witness statement, protected identity"
    package_id = world.sealed_shared_package({"statement.txt": secret})
    start = world.ledger_size()

    r = _archive(world, package_id, STRANGER)

    assert r.status_code == 404
    assert r.headers["content-type"] == "application/problem+json"
    assert secret not in r.content
    entries = world.entries(start)
    assert [(e["action"], e["outcome"]) for e in entries] == [("download.started", "denied")]
    auditor = world.client.get(f"/v1/packages/{package_id}/archive",
                               headers=world.headers(RECIPIENT, "auditor"))
    assert auditor.status_code == 403  # same rule as one item: auditors read custody only


def test_archive_refused_when_the_ledger_cannot_be_written(world: World) -> None:
    secret = b"protected witness identity " * 100
    package_id = world.sealed_shared_package({"statement.txt": secret})
    size_before = world.ledger_size()
    _break(world)
    try:
        r = _archive(world, package_id)
    finally:
        _fix(world)
    assert r.status_code == 503
    assert r.json()["type"].endswith("/ledger-unavailable")
    assert b"protected witness" not in r.content
    assert world.ledger_size() == size_before


def test_archive_profile_is_the_strictest() -> None:
    assert ARCHIVE_PROFILE.windows and ARCHIVE_PROFILE.case_insensitive
    assert ARCHIVE_PROFILE.normalizing and ARCHIVE_PROFILE.utf8_only


def test_owner_archive_of_a_draft_is_marked_unsealed(world: World, tmp_path: Path) -> None:
    package_id = world.create_package()
    world.upload(package_id, "a.txt", b"draft")
    r = _archive(world, package_id, OWNER)
    assert r.status_code == 200
    root = _extract(r.content, tmp_path) / archive_folder(package_id)
    assert (root / "a.txt").read_bytes() == b"draft"
    assert verify_folder(root).problems == []
