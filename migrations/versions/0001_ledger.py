"""Custody ledger: entries, perfect Merkle nodes, sequencer head, package heads, checkpoints.

The database itself refuses to change ledger history: UPDATE and DELETE (and TRUNCATE on
PostgreSQL) of entries, nodes and checkpoints raise. The head rows may only move forward.

Revision ID: 0001_ledger
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001_ledger"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

APPEND_ONLY = ("ledger_entries", "ledger_nodes", "ledger_checkpoints")
HASH = sa.LargeBinary(32)


def _tables() -> None:
    op.create_table(
        "ledger_entries",
        # INTEGER on SQLite makes the index the rowid (a clustered primary key).
        sa.Column("idx", sa.BigInteger().with_variant(sa.Integer, "sqlite"), nullable=False,
                  autoincrement=False),
        sa.Column("leaf_hash", HASH, nullable=False),
        sa.Column("canonical", sa.Text, nullable=False),
        sa.Column("time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("package", sa.String(200), nullable=True),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("authority", sa.String(200), nullable=False),
        sa.PrimaryKeyConstraint("idx", name="pk_ledger_entries"),
    )
    op.create_index("ix_ledger_entries_package_idx", "ledger_entries", ["package", "idx"])
    op.create_index("ix_ledger_entries_authority_idx", "ledger_entries", ["authority", "idx"])
    op.create_index("ix_ledger_entries_action", "ledger_entries", ["action"])
    op.create_index("ix_ledger_entries_time", "ledger_entries", ["time"])

    op.create_table(
        "ledger_nodes",
        sa.Column("level", sa.SmallInteger, nullable=False, autoincrement=False),
        sa.Column("node_index", sa.BigInteger, nullable=False, autoincrement=False),
        sa.Column("hash", HASH, nullable=False),
        sa.PrimaryKeyConstraint("level", "node_index", name="pk_ledger_nodes"),
    )

    op.create_table(
        "ledger_head",
        sa.Column("id", sa.SmallInteger, nullable=False, autoincrement=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("last_leaf_hash", HASH, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_head"),
        sa.CheckConstraint("id = 1", name="ck_ledger_head_single_row"),
        sa.CheckConstraint("size >= 0", name="ck_ledger_head_size_nonnegative"),
    )
    op.execute("INSERT INTO ledger_head (id, size, last_leaf_hash) VALUES (1, 0, NULL)")

    op.create_table(
        "ledger_package_heads",
        sa.Column("package", sa.String(200), nullable=False),
        sa.Column("last_index", sa.BigInteger, nullable=False),
        sa.Column("last_leaf_hash", HASH, nullable=False),
        sa.Column("count", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("package", name="pk_ledger_package_heads"),
    )

    op.create_table(
        "ledger_checkpoints",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), nullable=False,
                  autoincrement=True),
        sa.Column("tree_size", sa.BigInteger, nullable=False),
        sa.Column("root", HASH, nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_checkpoints"),
    )
    op.create_index("ix_ledger_checkpoints_tree_size", "ledger_checkpoints", ["tree_size"])


def _postgresql_triggers() -> None:
    # restrict_violation (SQLSTATE 23001): drivers surface it as an integrity error.
    op.execute("""
        CREATE FUNCTION ledger_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'restrict_violation';
        END;
        $$
    """)
    op.execute("""
        CREATE FUNCTION ledger_head_forward_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP <> 'UPDATE' OR NEW.size < OLD.size OR NEW.id <> OLD.id THEN
                RAISE EXCEPTION 'ledger_head only moves forward: % refused', TG_OP
                    USING ERRCODE = 'restrict_violation';
            END IF;
            RETURN NEW;
        END;
        $$
    """)
    for table in APPEND_ONLY:
        op.execute(f"CREATE TRIGGER {table}_no_update_delete BEFORE UPDATE OR DELETE ON {table} "
                   f"FOR EACH ROW EXECUTE FUNCTION ledger_refuse_change()")
        op.execute(f"CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table} "
                   f"FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()")
    op.execute("CREATE TRIGGER ledger_head_forward BEFORE UPDATE OR DELETE ON ledger_head "
               "FOR EACH ROW EXECUTE FUNCTION ledger_head_forward_only()")
    op.execute("CREATE TRIGGER ledger_head_no_truncate BEFORE TRUNCATE ON ledger_head "
               "FOR EACH STATEMENT EXECUTE FUNCTION ledger_refuse_change()")


def _sqlite_triggers() -> None:
    # SQLite has no TRUNCATE; "DELETE FROM t" without WHERE still fires row triggers.
    for table in APPEND_ONLY:
        for operation in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only: {operation} refused'); END"
            )
    op.execute(
        "CREATE TRIGGER ledger_head_forward BEFORE UPDATE ON ledger_head "
        "WHEN NEW.size < OLD.size OR NEW.id <> OLD.id "
        "BEGIN SELECT RAISE(ABORT, 'ledger_head only moves forward: UPDATE refused'); END"
    )
    op.execute(
        "CREATE TRIGGER ledger_head_no_delete BEFORE DELETE ON ledger_head "
        "BEGIN SELECT RAISE(ABORT, 'ledger_head only moves forward: DELETE refused'); END"
    )


def upgrade() -> None:
    _tables()
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        _postgresql_triggers()
    elif dialect == "sqlite":
        _sqlite_triggers()
    else:
        raise RuntimeError(f"no append-only triggers for dialect {dialect!r}")


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    if dialect == "postgresql":
        for table in APPEND_ONLY:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_update_delete ON {table}")
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        op.execute("DROP TRIGGER IF EXISTS ledger_head_forward ON ledger_head")
        op.execute("DROP TRIGGER IF EXISTS ledger_head_no_truncate ON ledger_head")
        op.execute("DROP FUNCTION IF EXISTS ledger_refuse_change()")
        op.execute("DROP FUNCTION IF EXISTS ledger_head_forward_only()")
    for name in ("ledger_checkpoints", "ledger_package_heads", "ledger_head", "ledger_nodes",
                 "ledger_entries"):
        op.drop_table(name)
