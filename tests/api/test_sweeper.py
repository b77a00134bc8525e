"""Nothing half-written survives a crash: the sweeper removes what dead uploads left behind and
never touches an item's objects or an upload still in progress."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from service.packages import repository as repo
from service.packages.sweeper import sweep
from storage.evidence import ENVELOPE_SUFFIX
from tests.api.conftest import OWNER, World


def _objects(w: World) -> set[str]:
    root = w.settings.objects_dir
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def _crashed_upload(w: World, started: datetime, package_id: str = "pkg_x") -> str:
    """What a process killed after writing the object but before recording the item leaves."""
    vault = w.runtime.vault
    name = vault.new_object_name()
    with w.runtime.engine.begin() as conn:
        repo.add_pending_object(conn, name, started, package_id=package_id, item="x.bin",
                                authority=OWNER, subject="officer-9")
    vault.put_item(package_id, "x.bin", [b"half an upload"], object_name=name)
    return name


def _sweep(w: World, now: datetime, **kwargs: object):
    return sweep(w.runtime.engine, w.runtime.vault, now=now, grace=timedelta(hours=1),
                 recorder=w.runtime.recorder, operator_authority=w.settings.operator_authority,
                 **kwargs)


def test_sweeper_removes_dead_uploads_only(world: World) -> None:
    package_id = world.create_package()
    world.upload(package_id, "kept.bin", b"evidence that stays")
    kept = _objects(world)
    now = datetime.now(UTC)
    dead = _crashed_upload(world, now - timedelta(days=2), package_id)
    in_progress = _crashed_upload(world, now - timedelta(minutes=1), package_id)
    assert {dead, dead + ENVELOPE_SUFFIX} <= _objects(world)

    size = world.ledger_size()
    report = _sweep(world, now)
    assert report.stale_pending == 1
    recorded = world.entries(size)
    assert [(e["action"], e["outcome"], e["package"], e["item"]) for e in recorded] == [
        ("item.uploaded", "failed", package_id, "x.bin")]
    assert recorded[0]["actor"] == {"authority": world.settings.operator_authority,
                                    "subject": "evx-sweeper", "role": "system"}
    assert recorded[0]["details"]["uploader"] == "officer-9"
    remaining = _objects(world)
    assert dead not in remaining and dead + ENVELOPE_SUFFIX not in remaining
    assert in_progress in remaining
    assert kept <= remaining
    with world.runtime.engine.connect() as conn:
        assert repo.all_pending_objects(conn) == {in_progress}
    r = world.client.get(f"/v1/packages/{package_id}/items/kept.bin/content",
                         headers=world.headers(OWNER))
    assert r.content == b"evidence that stays"


def test_reconcile_removes_unowned_objects(world: World) -> None:
    package_id = world.create_package()
    world.upload(package_id, "kept.bin", b"stays")
    kept = _objects(world)
    orphan = world.runtime.vault.put_item("pkg_y", "y.bin", [b"owned by nobody"]).object_name
    now = datetime.now(UTC)
    report = _sweep(world, now, reconcile=True)
    assert report.unowned == 1
    assert orphan not in _objects(world)
    assert _objects(world) == kept
    with world.runtime.engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from package_items")).scalar_one() == 1


def test_half_written_temporaries_of_a_killed_writer_are_removed(world: World) -> None:
    import os

    root = world.settings.objects_dir / "items" / "ab"
    root.mkdir(parents=True, exist_ok=True)
    old, fresh = root / ".tmp-0123456789abcdef", root / ".tmp-fedcba9876543210"
    old.write_bytes(b"half of a ciphertext")
    fresh.write_bytes(b"a write in progress")
    now = datetime.now(UTC)
    two_days_ago = (now - timedelta(days=2)).timestamp()
    os.utime(old, (two_days_ago, two_days_ago))
    report = _sweep(world, now)
    assert report.temporaries == 1
    assert not old.exists() and fresh.exists()


def test_downloads_whose_server_died_are_recorded_as_aborted(world: World) -> None:
    from service.packages import repository as repo
    from tests.api.conftest import RECIPIENT

    package_id = world.sealed_shared_package({"d.bin": b"evidence"})
    r = world.client.get(f"/v1/packages/{package_id}/items/d.bin/content",
                         headers=world.headers(RECIPIENT))
    assert r.status_code == 200
    with world.runtime.engine.connect() as conn:  # a finished download leaves no open row
        assert repo.open_downloads_before(conn, datetime.now(UTC)
                                          + timedelta(days=1)) == []
    # What a replica killed mid-transfer leaves: a started entry and its open row.
    started = world.runtime.recorder.record(
        type("Officer", (), {"authority": RECIPIENT, "subject": "luc", "role": "investigator"})(),
        "download.started", package=package_id, item="d.bin")
    with world.runtime.engine.begin() as conn:
        repo.add_open_download(conn, started_index=started, package_id=package_id, item="d.bin",
                               authority=RECIPIENT, subject="luc", role="investigator",
                               started_at=datetime.now(UTC) - timedelta(days=2))
    size = world.ledger_size()
    report = _sweep(world, datetime.now(UTC))
    assert report.unfinished_downloads == 1
    (aborted,) = world.entries(size)
    assert (aborted["action"], aborted["outcome"], aborted["package"]) == (
        "download.aborted", "failed", package_id)
    assert aborted["details"]["started_index"] == started
    assert aborted["details"]["downloader"] == "luc"
