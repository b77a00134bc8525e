"""Errors of the package domain. No HTTP here: service/problems.py maps them."""

from __future__ import annotations


class PackageError(Exception):
    """Base of every package-domain error."""


class PackageNotFound(PackageError):
    """No such package for this authority (also what strangers get for existing ids)."""


class ItemNotFound(PackageError):
    """The package has no item of that name."""


class AccessDenied(PackageError):
    """The caller's authority knows the package but its role or relation does not allow this."""


class ShareExpired(AccessDenied):
    """The share with the caller's authority has expired."""


class ShareRevoked(AccessDenied):
    """The share with the caller's authority was revoked."""


class PackageSealed(PackageError):
    """A sealed package never changes."""


class PackageNotSealed(PackageError):
    """Only sealed packages can be shared."""


class ItemExists(PackageError):
    """Re-uploading an existing item name is refused: items are immutable."""


class DigestMismatch(PackageError):
    """The bytes received do not match the Content-Digest the client sent."""


class ItemTooLarge(PackageError):
    """The item exceeds the configured maximum size."""


class InvalidRequest(PackageError):
    """A well-formed request whose values are unacceptable (bad name, digest header, share)."""


class RangeNotSatisfiable(PackageError):
    """The requested byte range lies outside the item."""

    def __init__(self, message: str, size: int) -> None:
        super().__init__(message)
        self.size = size
