"""Trust registry: partner authorities and their token-signing public keys.

Revision ID: 0002_authorities
Revises: 0001_ledger
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_authorities"
down_revision: str | None = "0001_ledger"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "authorities",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("roles", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_authorities"),
        sa.CheckConstraint("roles <> ''", name=op.f("ck_authorities_roles_not_empty")),
    )
    op.create_table(
        "authority_keys",
        sa.Column("authority_id", sa.String(64), nullable=False),
        sa.Column("kid", sa.String(128), nullable=False),
        sa.Column("thumbprint", sa.String(64), nullable=False),
        sa.Column("algorithm", sa.String(16), nullable=False),
        sa.Column("public_jwk", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("authority_id", "kid", name="pk_authority_keys"),
        sa.ForeignKeyConstraint(["authority_id"], ["authorities.id"],
                                name="fk_authority_keys_authority_id_authorities"),
        sa.UniqueConstraint("thumbprint", name="uq_authority_keys_thumbprint"),
        sa.CheckConstraint("status IN ('active', 'retired')",
                           name=op.f("ck_authority_keys_status_known")),
        sa.CheckConstraint(
            "(status = 'active' AND retired_at IS NULL) OR "
            "(status = 'retired' AND retired_at IS NOT NULL)",
            name=op.f("ck_authority_keys_retired_at_matches_status"),
        ),
    )


def downgrade() -> None:
    op.drop_table("authority_keys")
    op.drop_table("authorities")
