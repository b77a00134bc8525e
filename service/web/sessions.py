"""Server-side web sessions: a random token in an ``HttpOnly; Secure; SameSite=Strict`` cookie,
the session itself in the database (so every replica knows it and sign-out ends it everywhere).

The browser never holds a bearer token: the provider's tokens are exchanged and verified by the
service at sign-in, and only the random session token travels. Every state change needs the
session's CSRF token as well (a form field or the ``X-CSRF-Token`` header).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.cookies import CookieError, SimpleCookie

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from service.identity.tokens import Principal
from service.web.tables import web_sessions, web_sign_ins

#: ``__Host-``: the browser accepts it only Secure, from this origin, for the path ``/`` -- a
#: sibling host or a plain-HTTP page cannot plant or overwrite it (RFC 6265bis 4.1.3.2).
SESSION_COOKIE = "__Host-evx-session"
#: Binds a sign-in under way to the browser that started it (its value is the OAuth ``state``).
#: ``SameSite=Lax``: the provider's redirect back is a cross-site top-level navigation.
SIGN_IN_COOKIE = "__Host-evx-sign-in"
CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf"
TOKEN_BYTES = 32  # 256 bits of randomness per session, state and CSRF token
SIGN_IN_SECONDS = 600  # a sign-in not finished in 10 minutes is dropped
TOUCH_SECONDS = 60  # last_seen_at is written at most this often (a page load is not a write)
MAX_COOKIE_CHARS = 4096  # DoS bound on what is parsed


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("ascii", "replace")).hexdigest()


def cookie_value(header: str | None, name: str) -> str | None:
    """The value of cookie ``name`` in a ``Cookie`` header, or None."""
    if not header or len(header) > MAX_COOKIE_CHARS:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return None
    morsel = jar.get(name)
    return morsel.value if morsel is not None and morsel.value else None


@dataclass(frozen=True)
class WebSession:
    """A signed-in browser: who (as the provider proved at sign-in) and its CSRF token."""

    principal: Principal
    csrf: str
    expires_at: datetime
    client_id: str
    refresh_token: str | None
    revocation_endpoint: str | None
    end_session_endpoint: str | None
    key: str = ""  # the row's id (SHA-256 of the cookie's token)
    checked_at: datetime | None = None

    def csrf_matches(self, presented: str | None) -> bool:
        return presented is not None and hmac.compare_digest(presented.encode("ascii", "replace"),
                                                             self.csrf.encode("ascii"))


@dataclass(frozen=True)
class PendingSignIn:
    authority: str
    code_verifier: str
    redirect_uri: str


class WebSessions:
    """The store of sign-ins and sessions, with idle and absolute timeouts."""

    def __init__(self, engine: Engine, *, idle: timedelta, absolute: timedelta,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._engine = engine
        self._idle = idle
        self._absolute = absolute
        self._clock = clock

    # -- sign-in under way ------------------------------------------------------------------

    def begin_sign_in(self, authority: str, code_verifier: str, redirect_uri: str) -> str:
        """Record a sign-in; return its ``state`` (the cookie value and the OAuth state)."""
        state = secrets.token_urlsafe(TOKEN_BYTES)
        now = self._clock()
        with self._engine.begin() as conn:
            conn.execute(web_sign_ins.delete().where(
                web_sign_ins.c.created_at < now - timedelta(seconds=SIGN_IN_SECONDS)))
            conn.execute(web_sign_ins.insert().values(
                id=_digest(state), authority=authority, code_verifier=code_verifier,
                redirect_uri=redirect_uri, created_at=now))
        return state

    def take_sign_in(self, state: str) -> PendingSignIn | None:
        """The sign-in ``state`` names, once (it is deleted); None if unknown or too old."""
        with self._engine.begin() as conn:
            row = conn.execute(web_sign_ins.delete().where(
                web_sign_ins.c.id == _digest(state)).returning(
                web_sign_ins.c.authority, web_sign_ins.c.code_verifier,
                web_sign_ins.c.redirect_uri, web_sign_ins.c.created_at)).first()
        if row is None or _aware(row.created_at) < self._clock() - timedelta(
                seconds=SIGN_IN_SECONDS):
            return None
        return PendingSignIn(row.authority, row.code_verifier, row.redirect_uri)

    # -- sessions ---------------------------------------------------------------------------

    def open(self, principal: Principal, *, client_id: str, refresh_token: str | None,
             revocation_endpoint: str | None, end_session_endpoint: str | None) -> str:
        """A new session for ``principal``; returns the token for the cookie. Always a fresh
        token: whatever session id the browser held before is never promoted (fixation)."""
        token = secrets.token_urlsafe(TOKEN_BYTES)
        now = self._clock()
        expires_at = now + self._absolute
        if refresh_token is None:  # nothing to confirm it with later: it lives as the token
            expires_at = min(expires_at, principal.expires_at)
        with self._engine.begin() as conn:
            conn.execute(web_sessions.delete().where(web_sessions.c.expires_at < now))
            conn.execute(web_sessions.insert().values(
                id=_digest(token), authority=principal.authority, subject=principal.subject,
                role=principal.role, token_id=principal.token_id, kid=principal.kid,
                key_thumbprint=principal.key_thumbprint, csrf=secrets.token_urlsafe(TOKEN_BYTES),
                created_at=now, last_seen_at=now, expires_at=expires_at, checked_at=now,
                client_id=client_id, refresh_token=refresh_token,
                revocation_endpoint=revocation_endpoint,
                end_session_endpoint=end_session_endpoint))
        return token

    def find(self, token: str | None) -> WebSession | None:
        """The live session of ``token``; None if unknown, idle too long or past its end."""
        if not token or len(token) > 128:
            return None
        now = self._clock()
        key = _digest(token)
        with self._engine.connect() as conn:
            row = conn.execute(sa.select(web_sessions).where(web_sessions.c.id == key)).first()
        if row is None:
            return None
        if _aware(row.expires_at) <= now or _aware(row.last_seen_at) + self._idle <= now:
            self._delete(key)
            return None
        if now - _aware(row.last_seen_at) >= timedelta(seconds=TOUCH_SECONDS):
            with self._engine.begin() as conn:
                conn.execute(web_sessions.update().where(web_sessions.c.id == key)
                             .values(last_seen_at=now))
        principal = Principal(authority=row.authority, subject=row.subject, role=row.role,
                              token_id=row.token_id, expires_at=_aware(row.expires_at),
                              kid=row.kid, key_thumbprint=row.key_thumbprint)
        return WebSession(principal=principal, csrf=row.csrf, expires_at=_aware(row.expires_at),
                          client_id=row.client_id, refresh_token=row.refresh_token,
                          revocation_endpoint=row.revocation_endpoint,
                          end_session_endpoint=row.end_session_endpoint, key=key,
                          checked_at=_aware(row.checked_at) if row.checked_at else None)

    def check_due(self, session: WebSession, interval: timedelta) -> bool:
        """Whether ``session`` should be confirmed at its provider again."""
        return session.refresh_token is not None and (
            session.checked_at is None or self._clock() - session.checked_at >= interval)

    def confirmed(self, session: WebSession, refresh_token: str | None) -> None:
        """The provider renewed ``session``: keep its (possibly rotated) refresh token."""
        with self._engine.begin() as conn:
            conn.execute(web_sessions.update().where(web_sessions.c.id == session.key).values(
                checked_at=self._clock(),
                refresh_token=refresh_token or session.refresh_token))

    def drop(self, session: WebSession) -> None:
        """End ``session`` (refused at its provider)."""
        self._delete(session.key)

    def end(self, token: str | None) -> WebSession | None:
        """End the session of ``token`` (sign-out); return what it was, for the provider."""
        found = self.find(token)
        if token:
            self._delete(_digest(token))
        return found

    def _delete(self, key: str) -> None:
        with self._engine.begin() as conn:
            conn.execute(web_sessions.delete().where(web_sessions.c.id == key))


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
