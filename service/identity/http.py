"""Bearer authentication for the HTTP layer, free of app wiring.

The app calls :func:`authenticate` with the ``Authorization`` header value and a key lookup
(``TrustRegistry(db).lookup_key``) and maps :class:`AuthenticationFailed` to a 401 problem.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from service.identity.errors import InvalidToken, MissingCredentials
from service.identity.tokens import MAX_TOKEN_BYTES, KeyLookup, Principal, verify_token
from service.settings import Settings

#: ``Bearer`` + space + token, with room for sloppy whitespace; longer headers are not parsed.
MAX_AUTHORIZATION_CHARS = MAX_TOKEN_BYTES + 64  # DoS bound


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header (RFC 6750 section 2.1).

    Raises MissingCredentials (no header), InvalidToken("malformed"/"oversized").
    """
    if authorization is None or not authorization.strip():
        raise MissingCredentials()
    if len(authorization) > MAX_AUTHORIZATION_CHARS:
        raise InvalidToken("oversized", "Authorization header too long")
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise InvalidToken("malformed", "expected 'Authorization: Bearer <token>'")
    return token.strip()


def authenticate(
    authorization: str | None, *, lookup_key: KeyLookup, settings: Settings,
    now: datetime | None = None,
) -> Principal:
    """Authenticate a request from its ``Authorization`` header value.

    Raises MissingCredentials or InvalidToken (both AuthenticationFailed).
    """
    return verify_token(
        bearer_token(authorization), lookup_key=lookup_key, audience=settings.audience,
        now=now or datetime.now(UTC), leeway=timedelta(seconds=settings.token_leeway_seconds),
    )
