"""Identity providers: an authority's OpenID Connect issuer and public client id; where each
trusted key came from (registered by hand, generated for development, or its provider's JWKS).

Revision ID: 0008_identity_providers
Revises: 0010_requests
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_identity_providers"
down_revision = "0010_requests"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("authorities") as batch:
        batch.add_column(sa.Column("issuer", sa.String(512), nullable=True))
        batch.add_column(sa.Column("client_id", sa.String(200), nullable=True))
        batch.create_unique_constraint("uq_authorities_issuer", ["issuer"])
        batch.create_check_constraint(
            op.f("ck_authorities_client_id_needs_issuer"), "client_id IS NULL OR issuer IS NOT NULL"
        )
    with op.batch_alter_table("authority_keys") as batch:
        batch.add_column(sa.Column("source", sa.String(16), nullable=False,
                                   server_default="manual"))
        batch.create_check_constraint(
            op.f("ck_authority_keys_source_known"), "source IN ('manual', 'generated', 'jwks')")


def downgrade() -> None:
    with op.batch_alter_table("authority_keys") as batch:
        batch.drop_constraint(op.f("ck_authority_keys_source_known"), type_="check")
        batch.drop_column("source")
    with op.batch_alter_table("authorities") as batch:
        batch.drop_constraint(op.f("ck_authorities_client_id_needs_issuer"), type_="check")
        batch.drop_constraint("uq_authorities_issuer", type_="unique")
        batch.drop_column("client_id")
        batch.drop_column("issuer")
