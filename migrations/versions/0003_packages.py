"""Packages, items, shares and pending objects.

Revision ID: 0003_packages
Revises: 0002_authorities
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_packages"
down_revision = "0002_authorities"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "packages",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("owner_authority", sa.String(64), nullable=False),
        sa.Column("case_reference", sa.String(200), nullable=False),
        sa.Column("title", sa.String(500), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sealed_by", sa.String(200), nullable=True),
        sa.Column("manifest_sha256", sa.String(64), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_packages"),
    )
    op.create_index("ix_packages_owner_authority", "packages", ["owner_authority"])
    op.create_table(
        "package_items",
        sa.Column("package_id", sa.String(40), nullable=False),
        sa.Column("name", sa.String(512), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("object_name", sa.String(200), nullable=False),
        sa.Column("storage", sa.JSON, nullable=False),
        sa.Column("uploaded_by", sa.String(200), nullable=False),
        sa.Column("uploaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("package_id", "name", name="pk_package_items"),
        sa.ForeignKeyConstraint(["package_id"], ["packages.id"],
                                name="fk_package_items_package_id_packages"),
        sa.UniqueConstraint("object_name", name="uq_package_items_object_name"),
    )
    op.create_table(
        "package_shares",
        sa.Column("package_id", sa.String(40), nullable=False),
        sa.Column("authority", sa.String(64), nullable=False),
        sa.Column("legal_basis", sa.String(500), nullable=False),
        sa.Column("request_reference", sa.String(200), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("package_id", "authority", name="pk_package_shares"),
        sa.ForeignKeyConstraint(["package_id"], ["packages.id"],
                                name="fk_package_shares_package_id_packages"),
    )
    op.create_index("ix_package_shares_authority", "package_shares", ["authority"])
    op.create_table(
        "pending_objects",
        sa.Column("object_name", sa.String(200), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("package_id", sa.String(40), nullable=True),
        sa.Column("item", sa.String(512), nullable=True),
        sa.Column("authority", sa.String(64), nullable=True),
        sa.Column("subject", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("object_name", name="pk_pending_objects"),
    )


def downgrade() -> None:
    op.drop_table("pending_objects")
    op.drop_index("ix_package_shares_authority", table_name="package_shares")
    op.drop_table("package_shares")
    op.drop_table("package_items")
    op.drop_index("ix_packages_owner_authority", table_name="packages")
    op.drop_table("packages")
