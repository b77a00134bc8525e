"""When each web session was last confirmed at the officer's identity provider.

Revision ID: 0014_web_session_checks
Revises: 0013_web_sessions
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014_web_session_checks"
down_revision = "0013_web_sessions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("web_sessions") as batch:
        batch.add_column(sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("web_sessions") as batch:
        batch.drop_column("checked_at")
