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


class NameConflict(PackageError):
    """The name would make a file or link item a directory of another item (``dir``, ``dir/f``)."""


class NotAFile(PackageError):
    """A link or directory item has no content to download."""


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


class UploadGone(PackageError):
    """No such resumable upload of this caller: completed, cancelled, expired, or never made."""


class UploadInProgress(PackageError):
    """The item already has a resumable upload; its id is given only to the officer who owns
    it, so that officer can resume it."""

    def __init__(self, message: str, *, upload_id: str | None, offset: int | None,
                 length: int | None) -> None:
        super().__init__(message)
        self.upload_id = upload_id
        self.problem_extensions = {} if upload_id is None else {
            "upload": f"/v1/uploads/{upload_id}", "offset": offset, "length": length}


class UploadOffsetMismatch(PackageError):
    """An append did not start at the upload's durable offset."""

    def __init__(self, expected: int, provided: int) -> None:
        super().__init__(f"the upload continues at byte {expected}, not {provided}")
        self.problem_extensions = {"expected-offset": expected, "provided-offset": provided}


class UploadLengthMismatch(PackageError):
    """Content or headers disagree with the length declared when the upload was created."""


class UploadSuperseded(PackageError):
    """A newer request for the same upload took it over; this one stored nothing more."""
class InvalidItemName(InvalidRequest):
    """The item name or link target breaks the rules of evx/protocol/names.py."""
