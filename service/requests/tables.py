"""Tables of the request domain (created by migration 0010_requests)."""

from __future__ import annotations

import sqlalchemy as sa

from service.db import metadata

requests = sa.Table(
    "mla_requests",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("requesting_authority", sa.String(64), nullable=False, index=True),
    sa.Column("executing_authority", sa.String(64), nullable=False, index=True),
    sa.Column("instrument", sa.String(40), nullable=False),
    sa.Column("reference", sa.String(200), nullable=False),
    sa.Column("case_reference", sa.String(200), nullable=False),
    sa.Column("offence_category", sa.String(200), nullable=False),
    sa.Column("measures", sa.JSON, nullable=False),
    sa.Column("urgency", sa.String(16), nullable=False),
    sa.Column("confidentiality", sa.Text, nullable=False, default=""),
    sa.Column("attachments_package", sa.String(40), nullable=True),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("resume_state", sa.String(32), nullable=True),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("filed_by", sa.String(200), nullable=False),
    sa.Column("filed_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("acknowledged_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("recognised_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # The next open deadline, kept at every transition so lists sort and filter in SQL.
    sa.Column("next_due_at", sa.DateTime(timezone=True), nullable=True, index=True),
    sa.Column("next_milestone", sa.String(32), nullable=True),
)

history = sa.Table(
    "mla_request_history",
    metadata,
    sa.Column("request_id", sa.String(40), sa.ForeignKey("mla_requests.id"), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("action", sa.String(40), nullable=False),
    sa.Column("state", sa.String(32), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("authority", sa.String(64), nullable=False),
    sa.Column("subject", sa.String(200), nullable=False),
    sa.Column("note", sa.Text, nullable=False, default=""),
    sa.Column("ledger_index", sa.BigInteger, nullable=False),
)

deliveries = sa.Table(
    "mla_request_deliveries",
    metadata,
    sa.Column("request_id", sa.String(40), sa.ForeignKey("mla_requests.id"), primary_key=True),
    sa.Column("package_id", sa.String(40), sa.ForeignKey("packages.id"), primary_key=True),
    sa.Column("manifest_sha256", sa.String(64), nullable=False),
    sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("delivered_by", sa.String(200), nullable=False),
    sa.Column("ledger_index", sa.BigInteger, nullable=False),
)
