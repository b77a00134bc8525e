"""Guarded head moves for the ledger's optimistic append (PostgreSQL).

Two functions that move a head *only from the state the caller expects* and otherwise raise
``serialization_failure`` (SQLSTATE 40001). A writer that sequenced a batch against its cached
head sends them, its INSERTs and COMMIT in one pipelined round trip: because the guard raises
instead of matching zero rows, the server skips the rest of the pipeline -- COMMIT included --
so a stale head can never commit anything (see ``service/ledger/sequencer.py``).

No table or trigger changes: both functions are plain UPDATE/INSERT under the existing
append-only and forward-only triggers. SQLite has no such functions and keeps the locking path.

Revision ID: 0004_ledger_append
Revises: 0003_packages
"""

from __future__ import annotations

from alembic import op

revision = "0004_ledger_append"
down_revision = "0003_packages"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("""
        CREATE FUNCTION ledger_advance_head(expected_size bigint, expected_leaf bytea,
                                            new_size bigint, new_leaf bytea)
        RETURNS void LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE ledger_head SET size = new_size, last_leaf_hash = new_leaf
             WHERE id = 1 AND size = expected_size
               AND last_leaf_hash IS NOT DISTINCT FROM expected_leaf;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'ledger head is no longer at size %', expected_size
                    USING ERRCODE = 'serialization_failure';
            END IF;
        END;
        $$
    """)
    op.execute("""
        CREATE FUNCTION ledger_advance_package_head(package_id text, expected_last_index bigint,
                                                    new_last_index bigint, new_leaf bytea,
                                                    added bigint)
        RETURNS void LANGUAGE plpgsql AS $$
        BEGIN
            IF expected_last_index IS NULL THEN
                INSERT INTO ledger_package_heads (package, last_index, last_leaf_hash, count)
                VALUES (package_id, new_last_index, new_leaf, added)
                ON CONFLICT (package) DO NOTHING;
            ELSE
                UPDATE ledger_package_heads
                   SET last_index = new_last_index, last_leaf_hash = new_leaf,
                       count = count + added
                 WHERE package = package_id AND last_index = expected_last_index;
            END IF;
            IF NOT FOUND THEN
                RAISE EXCEPTION 'package % head is no longer at index %',
                    package_id, expected_last_index USING ERRCODE = 'serialization_failure';
            END IF;
        END;
        $$
    """)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION IF EXISTS ledger_advance_package_head(text, bigint, bigint, bytea, "
               "bigint)")
    op.execute("DROP FUNCTION IF EXISTS ledger_advance_head(bigint, bytea, bigint, bytea)")
