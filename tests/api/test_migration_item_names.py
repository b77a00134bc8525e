"""Migration 0006: item names as text form, long names, kinds -- on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from service.db import downgrade, upgrade
from service.packages import repository as repo
from service.packages.tables import items
from tests.api.conftest import OWNER, World

NOW = datetime(2026, 11, 28, tzinfo=UTC)


def _legacy_rows(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "INSERT INTO packages (id, owner_authority, case_reference, title, description, "
            "created_by, created_at) VALUES ('pkg_1', 'DE-BKA', 'C', 'T', '', 'anna', :t)"),
            {"t": NOW})
        for name, obj in (("100% done/report.txt", "obj1"), ("plain/a.txt", "obj2")):
            conn.execute(sa.text(
                "INSERT INTO package_items (package_id, name, size, sha256, object_name, "
                "storage, uploaded_by, uploaded_at) VALUES ('pkg_1', :n, 1, :h, :o, :s, 'anna',"
                " :t)"), {"n": name, "h": "0" * 64, "o": obj, "t": NOW,
                          "s": f'{{"object_name": "{obj}", "key_ids": []}}'})
    engine.dispose()


def _check(url: str) -> None:
    upgrade(url, "0005_open_downloads")
    _legacy_rows(url)
    upgrade(url)
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = {r.name: r for r in repo.package_items(conn, "pkg_1")}
        assert set(rows) == {"100%25 done/report.txt", "plain/a.txt"}
        legacy = rows["100%25 done/report.txt"]
        assert legacy.storage is not None
        assert legacy.storage["binding_item"] == "100% done/report.txt"
        assert legacy.name_key == hashlib.sha256(legacy.name.encode()).hexdigest()
        assert "binding_item" not in (rows["plain/a.txt"].storage or {})
        assert rows["plain/a.txt"].kind == "file"
        assert repo.has_items_under(conn, "pkg_1", "100%25 done")
        assert repo.has_items_under(conn, "pkg_1", "plain")
        assert not repo.has_items_under(conn, "pkg_1", "plain/a.txt")
    long_name = "/".join(["n" * 255] * 16)  # 4095 bytes: beyond any b-tree entry
    with engine.begin() as conn:
        repo.insert_item(conn, package_id="pkg_1", name=long_name, kind="file", target=None,
                         size=0, sha256="0" * 64, object_name=None, storage=None,
                         uploaded_by="anna", uploaded_at=NOW)
    with engine.connect() as conn:
        assert repo.get_item(conn, "pkg_1", long_name) is not None
    with engine.begin() as conn:
        conn.execute(items.delete().where(items.c.name == long_name))
    engine.dispose()
    downgrade(url, "0005_open_downloads")
    upgrade(url)


def test_migration_on_sqlite(tmp_path: Path) -> None:
    _check(f"sqlite:///{tmp_path / 'm.db'}")


@pytest.mark.postgres
def test_migration_on_postgres(pg_url: str) -> None:
    _check(pg_url)


def test_item_named_before_0006_still_decrypts(world: World) -> None:
    """A legacy name with '%' is renamed to its text form; its ciphertext stays bound to the
    old spelling (storage.binding_item), and the content is served."""
    from service.packages.transfers import stored_to_json

    package_id = world.create_package()
    vault = world.runtime.vault
    stored = vault.put_item(package_id, "50% off.txt", iter([b"legacy bytes"]))
    with world.runtime.engine.begin() as conn:
        repo.insert_item(conn, package_id=package_id, name="50%25 off.txt", kind="file",
                         target=None, size=stored.plaintext_size, sha256=stored.sha256,
                         object_name=stored.object_name,
                         storage={**stored_to_json(stored), "binding_item": "50% off.txt"},
                         uploaded_by="anna", uploaded_at=NOW)
    r = world.client.get(f"/v1/packages/{package_id}/items/50%2525%20off.txt/content",
                         headers=world.headers(OWNER))
    assert r.status_code == 200 and r.content == b"legacy bytes"
