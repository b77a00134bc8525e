"""Witness cosignatures gathered for the ledger's checkpoints (C2SP tlog-cosignature).

Revision ID: 0009_witness_cosignatures
Revises: 0012_upload_sessions
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009_witness_cosignatures"
down_revision = "0012_upload_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "witness_cosignatures",
        sa.Column("witness", sa.String(200), nullable=False),
        sa.Column("tree_size", sa.BigInteger, nullable=False),
        sa.Column("root", sa.LargeBinary(32), nullable=False),
        sa.Column("line", sa.Text, nullable=False),
        sa.Column("cosigned_at", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("witness", "tree_size", name="pk_witness_cosignatures"),
    )
    op.create_index("ix_witness_cosignatures_tree_size", "witness_cosignatures", ["tree_size"])


def downgrade() -> None:
    op.drop_index("ix_witness_cosignatures_tree_size", table_name="witness_cosignatures")
    op.drop_table("witness_cosignatures")
