"""Errors of the identity package, grouped by where they come from.

``AuthenticationFailed``: a caller's credentials are missing or not acceptable (untrusted input).
``RegistryError``: the trust registry refused an operation (operator input or state conflict).
None carries an HTTP status; ``service`` maps them to problem details in one place.
"""

from __future__ import annotations

from evx.protocol.tokens import TokenRefusalReason

#: Why a token was refused: one definition, shared with the client (evx/protocol/tokens.py).
InvalidTokenReason = TokenRefusalReason


class IdentityError(Exception):
    """Base of every error raised by ``service.identity``."""


class AuthenticationFailed(IdentityError):
    """The request does not carry acceptable credentials."""


class MissingCredentials(AuthenticationFailed):
    """No ``Authorization: Bearer`` credentials at all."""

    def __init__(self) -> None:
        super().__init__("no bearer token")


class InvalidToken(AuthenticationFailed):
    """A bearer token was presented and refused; ``reason`` says why."""

    def __init__(self, reason: InvalidTokenReason, detail: str | None = None) -> None:
        self.reason: InvalidTokenReason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class RegistryError(IdentityError):
    """The trust registry refused an operation."""


class UnknownAuthority(RegistryError):
    """No authority with this id is registered."""

    def __init__(self, authority_id: str) -> None:
        self.authority_id = authority_id
        super().__init__(f"unknown authority {authority_id!r}")


class AuthorityExists(RegistryError):
    """An authority with this id is already registered."""

    def __init__(self, authority_id: str) -> None:
        self.authority_id = authority_id
        super().__init__(f"authority {authority_id!r} already exists")


class AuthorityRejected(RegistryError):
    """The authority's id, country, name or roles are not acceptable."""


class UnknownKey(RegistryError):
    """The authority has no key with this kid (or, for token lookups, no *active* one)."""

    def __init__(self, authority_id: str, kid: str) -> None:
        self.authority_id = authority_id
        self.kid = kid
        super().__init__(f"authority {authority_id!r} has no such key {kid!r}")


class KeyRejected(RegistryError):
    """A key offered for registration is not an acceptable public signing key."""


class NoSigningKey(IdentityError):
    """Dev/test issuing: no private key in the data directory for an active key of the authority."""
