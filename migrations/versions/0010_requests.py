"""Mutual legal assistance requests, their history and deliveries; events, webhook endpoints and
the webhook outbox.

Revision ID: 0010_requests
Revises: 0005_open_downloads
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010_requests"
down_revision = "0005_open_downloads"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)
SERIAL = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "mla_requests",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("requesting_authority", sa.String(64), nullable=False),
        sa.Column("executing_authority", sa.String(64), nullable=False),
        sa.Column("instrument", sa.String(40), nullable=False),
        sa.Column("reference", sa.String(200), nullable=False),
        sa.Column("case_reference", sa.String(200), nullable=False),
        sa.Column("offence_category", sa.String(200), nullable=False),
        sa.Column("measures", sa.JSON, nullable=False),
        sa.Column("urgency", sa.String(16), nullable=False),
        sa.Column("confidentiality", sa.Text, nullable=False),
        sa.Column("attachments_package", sa.String(40), nullable=True),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("resume_state", sa.String(32), nullable=True),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("filed_by", sa.String(200), nullable=False),
        sa.Column("filed_at", TS, nullable=False),
        sa.Column("acknowledged_at", TS, nullable=True),
        sa.Column("recognised_at", TS, nullable=True),
        sa.Column("decided_at", TS, nullable=True),
        sa.Column("closed_at", TS, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("next_due_at", TS, nullable=True),
        sa.Column("next_milestone", sa.String(32), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_mla_requests"),
    )
    for column in ("requesting_authority", "executing_authority", "next_due_at"):
        op.create_index(f"ix_mla_requests_{column}", "mla_requests", [column])
    op.create_table(
        "mla_request_history",
        sa.Column("request_id", sa.String(40), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("action", sa.String(40), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("authority", sa.String(64), nullable=False),
        sa.Column("subject", sa.String(200), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("ledger_index", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("request_id", "seq", name="pk_mla_request_history"),
        sa.ForeignKeyConstraint(["request_id"], ["mla_requests.id"],
                                name="fk_mla_request_history_request_id_mla_requests"),
    )
    op.create_table(
        "mla_request_deliveries",
        sa.Column("request_id", sa.String(40), nullable=False),
        sa.Column("package_id", sa.String(40), nullable=False),
        sa.Column("manifest_sha256", sa.String(64), nullable=False),
        sa.Column("delivered_at", TS, nullable=False),
        sa.Column("delivered_by", sa.String(200), nullable=False),
        sa.Column("ledger_index", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("request_id", "package_id", name="pk_mla_request_deliveries"),
        sa.ForeignKeyConstraint(["request_id"], ["mla_requests.id"],
                                name="fk_mla_request_deliveries_request_id_mla_requests"),
        sa.ForeignKeyConstraint(["package_id"], ["packages.id"],
                                name="fk_mla_request_deliveries_package_id_packages"),
    )
    op.create_table(
        "events",
        sa.Column("seq", SERIAL, nullable=False, autoincrement=True),
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("authority", sa.String(64), nullable=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("data", sa.JSON, nullable=False),
        sa.Column("once_key", sa.String(200), nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_events"),
        sa.UniqueConstraint("id", name="uq_events_id"),
        sa.UniqueConstraint("authority", "once_key", name="uq_events_authority_once_key"),
    )
    op.create_index("ix_events_authority_seq", "events", ["authority", "seq"])
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.String(40), nullable=False),
        sa.Column("authority", sa.String(64), nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("secret", sa.String(200), nullable=False),
        sa.Column("event_types", sa.JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("disabled_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_endpoints"),
    )
    op.create_index("ix_webhook_endpoints_authority", "webhook_endpoints", ["authority"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", SERIAL, nullable=False, autoincrement=True),
        sa.Column("event_seq", sa.BigInteger, nullable=False),
        sa.Column("endpoint_id", sa.String(40), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("delivered_at", TS, nullable=True),
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
        sa.ForeignKeyConstraint(["event_seq"], ["events.seq"],
                                name="fk_webhook_deliveries_event_seq_events"),
        sa.ForeignKeyConstraint(["endpoint_id"], ["webhook_endpoints.id"],
                                name="fk_webhook_deliveries_endpoint_id_webhook_endpoints"),
    )
    op.create_index("ix_webhook_deliveries_status_next", "webhook_deliveries",
                    ["status", "next_attempt_at"])
    op.create_table(
        "webhook_attempts",
        sa.Column("delivery_id", sa.BigInteger, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False, autoincrement=False),
        sa.Column("at", TS, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("error", sa.String(500), nullable=True),
        sa.Column("ms", sa.Integer, nullable=False),
        sa.PrimaryKeyConstraint("delivery_id", "attempt", name="pk_webhook_attempts"),
        sa.ForeignKeyConstraint(["delivery_id"], ["webhook_deliveries.id"],
                                name="fk_webhook_attempts_delivery_id_webhook_deliveries"),
    )


def downgrade() -> None:
    op.drop_table("webhook_attempts")
    op.drop_index("ix_webhook_deliveries_status_next", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_webhook_endpoints_authority", table_name="webhook_endpoints")
    op.drop_table("webhook_endpoints")
    op.drop_index("ix_events_authority_seq", table_name="events")
    op.drop_table("events")
    op.drop_table("mla_request_deliveries")
    op.drop_table("mla_request_history")
    for column in ("requesting_authority", "executing_authority", "next_due_at"):
        op.drop_index(f"ix_mla_requests_{column}", table_name="mla_requests")
    op.drop_table("mla_requests")
