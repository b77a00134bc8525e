"""The web application's sign-ins and server-side sessions.

Revision ID: 0013_web_sessions
Revises: 0007_service_role
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_web_sessions"
down_revision = "0007_service_role"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "web_sign_ins",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("authority", sa.String(64), nullable=False),
        sa.Column("code_verifier", sa.String(128), nullable=False),
        sa.Column("redirect_uri", sa.String(2000), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_web_sign_ins"),
    )
    op.create_table(
        "web_sessions",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("authority", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(256), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("token_id", sa.String(256), nullable=False),
        sa.Column("kid", sa.String(256), nullable=False),
        sa.Column("key_thumbprint", sa.String(64), nullable=False),
        sa.Column("csrf", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("client_id", sa.String(256), nullable=False),
        sa.Column("refresh_token", sa.Text, nullable=True),
        sa.Column("revocation_endpoint", sa.String(2000), nullable=True),
        sa.Column("end_session_endpoint", sa.String(2000), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_web_sessions"),
    )
    op.create_index("ix_web_sessions_expires_at", "web_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_index("ix_web_sessions_expires_at", table_name="web_sessions")
    op.drop_table("web_sessions")
    op.drop_table("web_sign_ins")
