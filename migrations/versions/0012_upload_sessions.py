"""Resumable uploads in progress and their staged segments.

Revision ID: 0012_upload_sessions
Revises: 0008_identity_providers
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012_upload_sessions"
down_revision = "0008_identity_providers"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upload_sessions",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("package_id", sa.String(40), nullable=False),
        sa.Column("item", sa.String(512), nullable=False),
        sa.Column("object_name", sa.String(200), nullable=False),
        sa.Column("length", sa.BigInteger, nullable=False),
        sa.Column("received", sa.BigInteger, nullable=False),
        sa.Column("chunks", sa.BigInteger, nullable=False),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("authority", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_upload_sessions"),
        sa.UniqueConstraint("object_name", name="uq_upload_sessions_object_name"),
        sa.UniqueConstraint("package_id", "item", name="uq_upload_sessions_item"),
    )
    op.create_index("ix_upload_sessions_updated_at", "upload_sessions", ["updated_at"])
    op.create_table(
        "upload_segments",
        sa.Column("upload_id", sa.String(40), nullable=False),
        sa.Column("first_chunk", sa.BigInteger, nullable=False),
        sa.Column("object_name", sa.String(200), nullable=False),
        sa.Column("chunk_count", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("upload_id", "first_chunk", name="pk_upload_segments"),
    )


def downgrade() -> None:
    op.drop_table("upload_segments")
    op.drop_index("ix_upload_sessions_updated_at", table_name="upload_sessions")
    op.drop_table("upload_sessions")
