"""Queries of the package domain: the only place that touches its tables."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from service.packages.policy import ShareState
from service.packages.tables import (
    item_dirs,
    items,
    open_downloads,
    packages,
    pending_objects,
    shares,
    upload_segments,
    upload_sessions,
)


@dataclass(frozen=True)
class PackageRow:
    id: str
    owner_authority: str
    case_reference: str
    title: str
    description: str
    created_by: str
    created_at: datetime
    sealed_at: datetime | None
    sealed_by: str | None
    manifest_sha256: str | None


@dataclass(frozen=True)
class ItemRow:
    package_id: str
    name_key: str
    name: str  # text form (evx/protocol/names.py)
    kind: str  # "file" | "link" | "directory"
    target: str | None  # a link's target, text form
    size: int
    sha256: str
    object_name: str | None  # None for links and directories
    storage: dict[str, Any] | None
    uploaded_by: str
    uploaded_at: datetime


def name_key(name: str) -> str:
    """The key of an item name: SHA-256 of its text (a long name does not fit an index entry)."""
    return hashlib.sha256(name.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ShareRow:
    package_id: str
    authority: str
    legal_basis: str
    request_reference: str
    expires_at: datetime | None
    created_by: str
    created_at: datetime
    revoked_at: datetime | None
    revoked_by: str | None

    def state(self) -> ShareState:
        return ShareState(self.authority, _aware(self.expires_at), _aware(self.revoked_at))


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything stored here is UTC.

    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _row(cls: type, row: sa.Row[Any]) -> Any:
    data = dict(row._mapping)
    for key, value in data.items():
        if isinstance(value, datetime):
            data[key] = _aware(value)
    return cls(**data)


def insert_package(conn: Connection, **values: Any) -> None:
    conn.execute(packages.insert().values(**values))


# The statements every metadata read runs, built once: building a SELECT per call (operator
# overloading, coercions, a cache key) cost more CPU than executing it on SQLite.
_PACKAGE = sa.select(packages).where(packages.c.id == sa.bindparam("package_id"))
_ITEMS = (sa.select(items).where(items.c.package_id == sa.bindparam("package_id"))
          .order_by(items.c.name))
_SHARE = sa.select(shares).where(shares.c.package_id == sa.bindparam("package_id"),
                                 shares.c.authority == sa.bindparam("authority"))
_SHARES = (sa.select(shares).where(shares.c.package_id == sa.bindparam("package_id"))
           .order_by(shares.c.authority))


def get_package(conn: Connection, package_id: str) -> PackageRow | None:
    row = conn.execute(_PACKAGE, {"package_id": package_id}).first()
    return None if row is None else _row(PackageRow, row)


def lock_package(conn: Connection, package_id: str) -> PackageRow | None:
    """Read the package row for update (serializes seal against uploads on PostgreSQL)."""
    stmt = sa.select(packages).where(packages.c.id == package_id).with_for_update()
    row = conn.execute(stmt).first()
    return None if row is None else _row(PackageRow, row)


def visible_packages(conn: Connection, authority: str, *, all_packages: bool,
                     limit: int, offset: int) -> list[PackageRow]:
    """Packages owned by ``authority`` or ever shared with it (or all, for the operator)."""
    stmt = sa.select(packages).order_by(packages.c.created_at, packages.c.id)
    if not all_packages:
        shared = sa.select(shares.c.package_id).where(shares.c.authority == authority)
        stmt = stmt.where(sa.or_(packages.c.owner_authority == authority,
                                 packages.c.id.in_(shared)))
    rows = conn.execute(stmt.limit(limit).offset(offset)).all()
    return [_row(PackageRow, r) for r in rows]


def seal(conn: Connection, package_id: str, *, sealed_at: datetime, sealed_by: str,
         manifest_sha256: str) -> bool:
    """Mark the package sealed; False if it already was (nothing changed)."""
    result = conn.execute(
        packages.update()
        .where(packages.c.id == package_id, packages.c.sealed_at.is_(None))
        .values(sealed_at=sealed_at, sealed_by=sealed_by, manifest_sha256=manifest_sha256)
    )
    return result.rowcount == 1


def package_items(conn: Connection, package_id: str) -> list[ItemRow]:
    rows = conn.execute(_ITEMS, {"package_id": package_id}).all()
    return [_row(ItemRow, r) for r in rows]


def get_item(conn: Connection, package_id: str, name: str) -> ItemRow | None:
    row = conn.execute(
        sa.select(items).where(items.c.package_id == package_id,
                               items.c.name_key == name_key(name))
    ).first()
    return None if row is None else _row(ItemRow, row)


def insert_item(conn: Connection, **values: Any) -> None:
    conn.execute(items.insert().values(name_key=name_key(values["name"]), **values))


def items_named(conn: Connection, package_id: str, names: list[str]) -> list[ItemRow]:
    """The package's items whose name is one of ``names``."""
    if not names:
        return []
    keys = [name_key(n) for n in names]
    rows = conn.execute(sa.select(items).where(items.c.package_id == package_id,
                                               items.c.name_key.in_(keys))).all()
    return [_row(ItemRow, r) for r in rows]


def has_items_under(conn: Connection, package_id: str, name: str) -> bool:
    """Whether some item's name lies below ``name`` (``name/...``): ``name`` is a directory."""
    row = conn.execute(sa.select(item_dirs.c.dir_key).where(
        item_dirs.c.package_id == package_id, item_dirs.c.dir_key == name_key(name))).first()
    return row is not None


def add_item_dirs(conn: Connection, package_id: str, dir_names: list[str]) -> None:
    """Record the directories an item lies in (callers hold the package lock)."""
    wanted = {name_key(n) for n in dir_names}
    if not wanted:
        return
    have = set(conn.execute(sa.select(item_dirs.c.dir_key).where(
        item_dirs.c.package_id == package_id, item_dirs.c.dir_key.in_(wanted))).scalars())
    missing = sorted(wanted - have)
    if missing:
        conn.execute(item_dirs.insert(), [{"package_id": package_id, "dir_key": key}
                                          for key in missing])


def get_share(conn: Connection, package_id: str, authority: str) -> ShareRow | None:
    row = conn.execute(_SHARE, {"package_id": package_id, "authority": authority}).first()
    return None if row is None else _row(ShareRow, row)


def package_shares(conn: Connection, package_id: str) -> list[ShareRow]:
    rows = conn.execute(_SHARES, {"package_id": package_id}).all()
    return [_row(ShareRow, r) for r in rows]


def upsert_share(conn: Connection, **values: Any) -> None:
    """Create the share, or renew a revoked/expired one with the new legal basis."""
    existing = get_share(conn, values["package_id"], values["authority"])
    if existing is None:
        conn.execute(shares.insert().values(**values))
    else:
        conn.execute(
            shares.update()
            .where(shares.c.package_id == values["package_id"],
                   shares.c.authority == values["authority"])
            .values(**values, revoked_at=None, revoked_by=None)
        )


def revoke_share(conn: Connection, package_id: str, authority: str, *, revoked_at: datetime,
                 revoked_by: str) -> bool:
    result = conn.execute(
        shares.update()
        .where(shares.c.package_id == package_id, shares.c.authority == authority,
               shares.c.revoked_at.is_(None))
        .values(revoked_at=revoked_at, revoked_by=revoked_by)
    )
    return result.rowcount == 1


@dataclass(frozen=True)
class PendingUpload:
    object_name: str
    started_at: datetime
    package_id: str | None
    item: str | None
    authority: str | None
    subject: str | None


def add_pending_object(conn: Connection, object_name: str, started_at: datetime, *,
                       package_id: str | None = None, item: str | None = None,
                       authority: str | None = None, subject: str | None = None) -> None:
    conn.execute(pending_objects.insert().values(
        object_name=object_name, started_at=started_at, package_id=package_id, item=item,
        authority=authority, subject=subject))


def remove_pending_object(conn: Connection, object_name: str) -> None:
    conn.execute(pending_objects.delete().where(pending_objects.c.object_name == object_name))


def pending_uploads_before(conn: Connection, cutoff: datetime) -> list[PendingUpload]:
    rows = conn.execute(
        sa.select(pending_objects).where(pending_objects.c.started_at < cutoff)
        .order_by(pending_objects.c.started_at)
    ).all()
    return [_row(PendingUpload, r) for r in rows]


def known_object_names(conn: Connection) -> set[str]:
    return set(conn.execute(sa.select(items.c.object_name)).scalars())


def all_pending_objects(conn: Connection) -> set[str]:
    return set(conn.execute(sa.select(pending_objects.c.object_name)).scalars())


@dataclass(frozen=True)
class OpenDownload:
    started_index: int
    package_id: str
    item: str
    authority: str
    subject: str
    role: str
    started_at: datetime


def add_open_download(conn: Connection, **values: Any) -> None:
    conn.execute(open_downloads.insert().values(**values))


def remove_open_download(conn: Connection, started_index: int) -> None:
    conn.execute(open_downloads.delete().where(
        open_downloads.c.started_index == started_index))


def open_downloads_before(conn: Connection, cutoff: datetime) -> list[OpenDownload]:
    rows = conn.execute(sa.select(open_downloads).where(open_downloads.c.started_at < cutoff)
                        .order_by(open_downloads.c.started_index)).all()
    return [_row(OpenDownload, r) for r in rows]


@dataclass(frozen=True)
class UploadSession:
    id: str
    package_id: str
    item: str
    object_name: str
    length: int
    received: int
    chunks: int
    generation: int
    authority: str
    subject: str
    role: str
    created_at: datetime
    updated_at: datetime


def add_upload_session(conn: Connection, **values: Any) -> None:
    conn.execute(upload_sessions.insert().values(**values))


def get_upload_session(conn: Connection, upload_id: str) -> UploadSession | None:
    row = conn.execute(sa.select(upload_sessions).where(upload_sessions.c.id == upload_id)).first()
    return None if row is None else _row(UploadSession, row)


def upload_session_for_item(conn: Connection, package_id: str,
                            item: str) -> UploadSession | None:
    row = conn.execute(sa.select(upload_sessions).where(
        upload_sessions.c.package_id == package_id, upload_sessions.c.item == item)).first()
    return None if row is None else _row(UploadSession, row)


def take_over_upload(conn: Connection, session: UploadSession, now: datetime) -> bool:
    """Bump the generation if nobody moved the upload since ``session`` was read."""
    result = conn.execute(upload_sessions.update().where(
        upload_sessions.c.id == session.id, upload_sessions.c.generation == session.generation,
        upload_sessions.c.chunks == session.chunks,
    ).values(generation=session.generation + 1, updated_at=now))
    return result.rowcount == 1


def commit_upload_segment(conn: Connection, upload_id: str, generation: int, *,
                          segment: str, first_chunk: int, chunk_count: int, received: int,
                          now: datetime) -> bool:
    """Count a stored segment, if ``generation`` still owns the upload (False: superseded)."""
    result = conn.execute(upload_sessions.update().where(
        upload_sessions.c.id == upload_id, upload_sessions.c.generation == generation,
        upload_sessions.c.chunks == first_chunk,
    ).values(chunks=first_chunk + chunk_count, received=received, updated_at=now))
    if result.rowcount != 1:
        return False
    conn.execute(upload_segments.insert().values(upload_id=upload_id, first_chunk=first_chunk,
                                                 object_name=segment, chunk_count=chunk_count))
    return True


def upload_segment_names(conn: Connection, upload_id: str) -> list[str]:
    return list(conn.execute(sa.select(upload_segments.c.object_name).where(
        upload_segments.c.upload_id == upload_id).order_by(upload_segments.c.first_chunk)
    ).scalars())


def remove_upload_session(conn: Connection, upload_id: str) -> None:
    conn.execute(upload_segments.delete().where(upload_segments.c.upload_id == upload_id))
    conn.execute(upload_sessions.delete().where(upload_sessions.c.id == upload_id))


def idle_upload_sessions(conn: Connection, cutoff: datetime) -> list[UploadSession]:
    rows = conn.execute(sa.select(upload_sessions).where(upload_sessions.c.updated_at < cutoff)
                        .order_by(upload_sessions.c.updated_at)).all()
    return [_row(UploadSession, r) for r in rows]


def upload_object_names(conn: Connection) -> set[str]:
    return set(conn.execute(sa.select(upload_sessions.c.object_name)).scalars())
def active_shares_expiring_before(conn: Connection, before: datetime) -> list[ShareRow]:
    """Unrevoked shares whose expiry is at or before ``before`` (expired ones included)."""
    rows = conn.execute(sa.select(shares).where(
        shares.c.revoked_at.is_(None), shares.c.expires_at.is_not(None),
        shares.c.expires_at <= before).order_by(shares.c.expires_at).limit(1000)).all()
    return [_row(ShareRow, r) for r in rows]
