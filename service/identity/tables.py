"""Trust-registry tables on the shared :data:`service.db.metadata` (created by
``0002_authorities``)."""

from __future__ import annotations

import sqlalchemy as sa

from service.db import metadata

authorities = sa.Table(
    "authorities",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True, comment="Issuer id, e.g. DE-BKA (JWT iss)."),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("country", sa.String(2), nullable=False, comment="ISO 3166-1 alpha-2."),
    sa.Column("roles", sa.String(64), nullable=False,
              comment="Roles its officers may assert, sorted and comma-separated."),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("issuer", sa.String(512), nullable=True, unique=True,
              comment="OpenID Connect issuer of its officers' tokens (0008)."),
    sa.Column("client_id", sa.String(200), nullable=True,
              comment="Public client id `evx login` uses at that issuer (0008)."),
    sa.CheckConstraint("roles <> ''", name="roles_not_empty"),
    sa.CheckConstraint("client_id IS NULL OR issuer IS NOT NULL", name="client_id_needs_issuer"),
)

authority_keys = sa.Table(
    "authority_keys",
    metadata,
    sa.Column("authority_id", sa.String(64), sa.ForeignKey("authorities.id"), primary_key=True),
    sa.Column("kid", sa.String(128), primary_key=True),
    # One public key belongs to one authority, once: a shared key would let either authority
    # speak for the other, and re-adding a retired key would silently undo its retirement.
    sa.Column("thumbprint", sa.String(64), nullable=False, unique=True,
              comment="RFC 7638 JWK thumbprint (SHA-256, base64url)."),
    sa.Column("algorithm", sa.String(16), nullable=False),
    sa.Column("public_jwk", sa.Text, nullable=False, comment="Public members only."),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("added_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("retired_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("source", sa.String(16), nullable=False, server_default="manual",
              comment="manual (operator), generated (dev/test), jwks (the issuer's JWKS)."),
    sa.CheckConstraint("status IN ('active', 'retired')", name="status_known"),
    sa.CheckConstraint("source IN ('manual', 'generated', 'jwks')", name="source_known"),
    sa.CheckConstraint(
        "(status = 'active' AND retired_at IS NULL) OR "
        "(status = 'retired' AND retired_at IS NOT NULL)",
        name="retired_at_matches_status",
    ),
)
