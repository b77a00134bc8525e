"""Tables of the package domain (created by migration 0003_packages, item names widened by 0006)."""

from __future__ import annotations

import sqlalchemy as sa

from service.db import metadata

packages = sa.Table(
    "packages",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("owner_authority", sa.String(64), nullable=False, index=True),
    sa.Column("case_reference", sa.String(200), nullable=False),
    sa.Column("title", sa.String(500), nullable=False),
    sa.Column("description", sa.Text, nullable=False, default=""),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("sealed_by", sa.String(200), nullable=True),
    sa.Column("manifest_sha256", sa.String(64), nullable=True),
)

items = sa.Table(
    "package_items",
    metadata,
    sa.Column("package_id", sa.String(40), sa.ForeignKey("packages.id"), primary_key=True),
    # SHA-256 (hex) of the name text: the key, since a long name does not fit a b-tree entry.
    sa.Column("name_key", sa.String(64), primary_key=True),
    # The item name in the text form of evx/protocol/names.py (exact path bytes).
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False, server_default="file"),
    sa.Column("target", sa.Text, nullable=True),  # a link's target (text form)
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    # Links and directories have no object.
    sa.Column("object_name", sa.String(200), nullable=True, unique=True),
    sa.Column("storage", sa.JSON, nullable=True),
    sa.Column("uploaded_by", sa.String(200), nullable=False),
    sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
)

# Every directory some item lies in (``a`` and ``a/b`` for ``a/b/c``), keyed like item names:
# an upload of ``a`` is refused in one lookup when ``a/...`` exists (migration 0006).
item_dirs = sa.Table(
    "package_item_dirs",
    metadata,
    sa.Column("package_id", sa.String(40), sa.ForeignKey("packages.id"), primary_key=True),
    sa.Column("dir_key", sa.String(64), primary_key=True),
)

shares = sa.Table(
    "package_shares",
    metadata,
    sa.Column("package_id", sa.String(40), sa.ForeignKey("packages.id"), primary_key=True),
    sa.Column("authority", sa.String(64), primary_key=True, index=True),
    sa.Column("legal_basis", sa.String(500), nullable=False),
    sa.Column("request_reference", sa.String(200), nullable=False),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("created_by", sa.String(200), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("revoked_by", sa.String(200), nullable=True),
)

# Objects written to the store but not (yet) recorded as items: the sweeper deletes the ones a
# crash left behind. A row is written before the upload starts and removed when the item row is.
pending_objects = sa.Table(
    "pending_objects",
    metadata,
    sa.Column("object_name", sa.String(200), primary_key=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    # Who was uploading what: a dead upload is put on the record by the sweeper.
    sa.Column("package_id", sa.String(40), nullable=True),
    sa.Column("item", sa.Text, nullable=True),
    sa.Column("authority", sa.String(64), nullable=True),
    sa.Column("subject", sa.String(200), nullable=True),
)

# Downloads recorded as started and not yet as completed or aborted. A row older than the sweep
# grace period belongs to a server process that died mid-transfer: the sweeper records the abort.
open_downloads = sa.Table(
    "open_downloads",
    metadata,
    sa.Column("started_index", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("package_id", sa.String(40), nullable=False),
    sa.Column("item", sa.Text, nullable=False),
    sa.Column("authority", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(200), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, index=True),
)

# Resumable uploads in progress (draft-ietf-httpbis-resumable-upload): the session owns its
# object name (key envelope, staged segments) until the item row replaces it, or the sweeper
# expires it. ``received``/``chunks`` are the durable point; ``generation`` changes whenever an
# append request takes the upload over, so a superseded request can no longer commit anything.
upload_sessions = sa.Table(
    "upload_sessions",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("package_id", sa.String(40), nullable=False),
    sa.Column("item", sa.Text, nullable=False),  # text form; widened by 0006
    sa.Column("object_name", sa.String(200), nullable=False, unique=True),
    sa.Column("length", sa.BigInteger, nullable=False),
    sa.Column("received", sa.BigInteger, nullable=False),
    sa.Column("chunks", sa.BigInteger, nullable=False),
    sa.Column("generation", sa.Integer, nullable=False),
    sa.Column("authority", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(200), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, index=True),
    # One upload per item: on PostgreSQL a unique index on (package_id, md5(item)) instead, since
    # a long name does not fit a b-tree entry (migration 0006).
    sa.UniqueConstraint("package_id", "item", name="uq_upload_sessions_item"),
)

# The staged segments that count, in order (a segment written by a superseded request is not
# here; it is removed with the staging prefix).
upload_segments = sa.Table(
    "upload_segments",
    metadata,
    sa.Column("upload_id", sa.String(40), primary_key=True),
    sa.Column("first_chunk", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("object_name", sa.String(200), nullable=False),
    sa.Column("chunk_count", sa.BigInteger, nullable=False),
)
