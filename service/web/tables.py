"""Tables of the web application's sign-ins and sessions (migration 0013_web_sessions)."""

from __future__ import annotations

import sqlalchemy as sa

from service.db import metadata

# A sign-in under way: created when the officer picks an authority, taken (deleted) once when
# the provider sends the browser back. Keyed by the SHA-256 of the state value, never the value.
web_sign_ins = sa.Table(
    "web_sign_ins",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("authority", sa.String(64), nullable=False),
    sa.Column("code_verifier", sa.String(128), nullable=False),
    sa.Column("redirect_uri", sa.String(2000), nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
)

# A signed-in browser. The cookie holds a random token; the row is keyed by its SHA-256, so a
# copy of the database does not sign anyone in. The principal is the one the provider's access
# token proved at sign-in.
web_sessions = sa.Table(
    "web_sessions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
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
    # What sign-out needs to end the session at the provider too (RFC 7009, RP logout).
    sa.Column("client_id", sa.String(256), nullable=False),
    sa.Column("refresh_token", sa.Text, nullable=True),
    sa.Column("revocation_endpoint", sa.String(2000), nullable=True),
    sa.Column("end_session_endpoint", sa.String(2000), nullable=True),
    # Last time the provider renewed the session's refresh token (migration 0014): a session is
    # confirmed there again every EVX_WEB_PROVIDER_CHECK_SECONDS, so a disabled account ends.
    sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True),
    sa.Index("ix_web_sessions_expires_at", "expires_at"),
)
