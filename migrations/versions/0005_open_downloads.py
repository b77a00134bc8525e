"""Downloads in progress, so one whose server died is put on the record as aborted.

Revision ID: 0005_open_downloads
Revises: 0004_ledger_append
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_open_downloads"
down_revision = "0004_ledger_append"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "open_downloads",
        sa.Column("started_index", sa.BigInteger, nullable=False),
        sa.Column("package_id", sa.String(40), nullable=False),
        sa.Column("item", sa.String(512), nullable=False),
        sa.Column("authority", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("started_index", name="pk_open_downloads"),
    )
    op.create_index("ix_open_downloads_started_at", "open_downloads", ["started_at"])


def downgrade() -> None:
    op.drop_index("ix_open_downloads_started_at", table_name="open_downloads")
    op.drop_table("open_downloads")
