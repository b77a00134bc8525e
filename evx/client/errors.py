"""The client's errors: each says what went wrong and what to do.

Grouped by where they come from, as in python-tuf: bad untrusted data (:class:`IntegrityFailure`),
the caller's own input or files (:class:`UsageError`, :class:`LocalFileError`), the service's
refusals (:class:`AuthenticationError`, :class:`DeniedError`) and transport
(:class:`UnavailableError`). None of them knows about processes or exit statuses: the command
line maps classes to exit statuses in one table (:mod:`evx.cli.exits`).
"""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Base of every error the client reports: a message, advice, and a stable slug."""

    slug = "error"

    def __init__(self, message: str, *, hint: str | None = None, slug: str | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if slug is not None:
            self.slug = slug
        self.details = details or {}

    def to_json(self) -> dict[str, Any]:
        return {"ok": False, "error": self.slug, "message": self.message, "hint": self.hint,
                **self.details}


class UsageError(ClientError):
    """Bad arguments, unusable local input, or a request the service refused as invalid."""

    slug = "usage"


class ServerExtraMissing(UsageError):
    """A server-side command on an install without the ``server`` extra."""

    slug = "server-extra-missing"


class DataFolderMissing(UsageError):
    """A server-side command where its data folder (``EVX_DATA_DIR``) does not exist: only
    ``evx init`` (or ``evx serve --init``) creates one."""

    slug = "no-data-folder"


class LocalFileError(ClientError):
    """This machine's file system refused: disk full, permission denied, a file where a
    directory is needed. Nothing is wrong with the evidence or the server."""

    slug = "local-file-error"


class IntegrityFailure(ClientError):
    """Bytes, digests, proofs or signatures do not verify: never trust the result."""

    slug = "integrity-failure"


class LogKeyChanged(IntegrityFailure):
    """The server presents a different log key from the one pinned on first use."""

    slug = "log-key-changed"


class LedgerInconsistent(IntegrityFailure):
    """The server's ledger does not extend the checkpoint this machine verified before."""

    slug = "ledger-inconsistent"


class AuthenticationError(ClientError):
    """No token, or the service refused it."""

    slug = "unauthenticated"


class DeniedError(ClientError):
    """Not found, or the caller's authority/role/share does not allow it."""

    slug = "forbidden"


class UnavailableError(ClientError):
    """The server, its store or its ledger is unavailable, or the connection failed."""

    slug = "unavailable"
