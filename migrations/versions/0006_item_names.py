"""Item names as exact path bytes (text form of evx/protocol/names.py), item kinds.

* ``package_items.name`` becomes unbounded text (names up to 4096 bytes, 3x in text form); the
  primary key moves to ``(package_id, name_key)``, ``name_key`` = SHA-256 of the name text, since
  a PostgreSQL b-tree entry holds at most ~2.7 KB.
* ``kind`` (``file``, ``link``, ``directory``) and ``target`` (a link's target, text form);
  links and directories have no object, so ``object_name`` and ``storage`` become nullable.
* ``pending_objects.item``, ``open_downloads.item`` and ``upload_sessions.item`` become text; on
  PostgreSQL one upload per item is kept by a unique index on ``(package_id, md5(item))``.
* ``package_item_dirs``: every directory an item lies in, so ``dir`` and ``dir/file`` in one
  package are refused at upload.
* A name written before this revision that contains ``%`` is rewritten to its text form
  (``%`` -> ``%25``); its ciphertext stays bound to the old spelling, kept in
  ``storage.binding_item``. Ledger entries written before keep the old spelling (docs/api.md).

Revision ID: 0006_item_names
Revises: 0009_witness_cosignatures
"""

from __future__ import annotations

import hashlib
import json

import sqlalchemy as sa
from alembic import op

revision = "0006_item_names"
down_revision = "0009_witness_cosignatures"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("package_items") as batch:
        batch.add_column(sa.Column("name_key", sa.String(64), nullable=True))
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False,
                                   server_default="file"))
        batch.add_column(sa.Column("target", sa.Text, nullable=True))
    conn = op.get_bind()
    items = sa.table("package_items", sa.column("package_id", sa.String),
                     sa.column("name", sa.String), sa.column("name_key", sa.String),
                     sa.column("storage", sa.JSON))
    rows = conn.execute(sa.select(items.c.package_id, items.c.name, items.c.storage)).all()
    for package_id, name, storage in rows:
        new_name = name.replace("%", "%25")
        values: dict[str, object] = {
            "name": new_name, "name_key": hashlib.sha256(new_name.encode("utf-8")).hexdigest()}
        if new_name != name:
            stored = storage if isinstance(storage, dict) else json.loads(storage)
            values["storage"] = {**stored, "binding_item": name}
        conn.execute(items.update().where(items.c.package_id == package_id,
                                          items.c.name == name).values(**values))
    with op.batch_alter_table("package_items", recreate="always") as batch:
        batch.drop_constraint("pk_package_items", type_="primary")
        batch.alter_column("name_key", existing_type=sa.String(64), nullable=False)
        batch.alter_column("name", existing_type=sa.String(512), type_=sa.Text,
                           existing_nullable=False)
        batch.alter_column("object_name", existing_type=sa.String(200), nullable=True)
        batch.alter_column("storage", existing_type=sa.JSON, nullable=True)
        batch.create_primary_key("pk_package_items", ["package_id", "name_key"])
    for table in ("pending_objects", "open_downloads"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column("item", existing_type=sa.String(512), type_=sa.Text)
    if conn.dialect.name == "postgresql":
        op.drop_constraint("uq_upload_sessions_item", "upload_sessions", type_="unique")
    with op.batch_alter_table("upload_sessions") as batch:
        batch.alter_column("item", existing_type=sa.String(512), type_=sa.Text,
                           existing_nullable=False)
    if conn.dialect.name == "postgresql":
        op.execute("CREATE UNIQUE INDEX uq_upload_sessions_item ON upload_sessions "
                   "(package_id, md5(item))")
    dirs = op.create_table(
        "package_item_dirs",
        sa.Column("package_id", sa.String(40), nullable=False),
        sa.Column("dir_key", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("package_id", "dir_key", name="pk_package_item_dirs"),
        sa.ForeignKeyConstraint(["package_id"], ["packages.id"],
                                name="fk_package_item_dirs_package_id_packages"),
    )
    assert dirs is not None
    seen: set[tuple[str, str]] = set()
    for package_id, name, _ in rows:
        segments = name.replace("%", "%25").split("/")
        for depth in range(1, len(segments)):
            key = hashlib.sha256("/".join(segments[:depth]).encode("utf-8")).hexdigest()
            seen.add((package_id, key))
    if seen:
        op.bulk_insert(dirs, [{"package_id": p, "dir_key": k} for p, k in sorted(seen)])


def downgrade() -> None:
    op.drop_table("package_item_dirs")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX uq_upload_sessions_item")
    with op.batch_alter_table("upload_sessions") as batch:
        batch.alter_column("item", existing_type=sa.Text, type_=sa.String(512),
                           existing_nullable=False)
    if op.get_bind().dialect.name == "postgresql":
        op.create_unique_constraint("uq_upload_sessions_item", "upload_sessions",
                                    ["package_id", "item"])
    for table in ("pending_objects", "open_downloads"):
        with op.batch_alter_table(table) as batch:
            batch.alter_column("item", existing_type=sa.Text, type_=sa.String(512))
    with op.batch_alter_table("package_items", recreate="always") as batch:
        batch.drop_constraint("pk_package_items", type_="primary")
        batch.alter_column("name", existing_type=sa.Text, type_=sa.String(512),
                           existing_nullable=False)
        batch.create_primary_key("pk_package_items", ["package_id", "name"])
        batch.drop_column("target")
        batch.drop_column("kind")
        batch.drop_column("name_key")
