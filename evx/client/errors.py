"""The client's errors: each says what went wrong, what to do, and which exit status it is.

Exit statuses (documented in ``evx --help`` texts and the README walk-through):

* 0 -- done (and verified, where the command verifies)
* 1 -- verification or integrity failure: evidence or custody record does not verify, the log
  key changed, the ledger is inconsistent with what this machine saw before
* 2 -- usage: bad arguments or files, or a request the service refused as invalid or in
  conflict with the package's state (sealed, not sealed)
* 3 -- authentication: no token, or it expired or was refused
* 4 -- not found or not allowed (including a share that expired or was revoked)
* 5 -- the server, its store or its ledger is unavailable, or the connection failed
"""

from __future__ import annotations

from typing import Any

EXIT_OK = 0
EXIT_INTEGRITY = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_DENIED = 4
EXIT_UNAVAILABLE = 5

EXIT_CODES_HELP = (
    "Exit status: 0 ok; 1 verification/integrity failure; 2 usage or invalid request; "
    "3 authentication (missing, expired or refused token); 4 not found or not allowed "
    "(share expired/revoked); 5 server, store or ledger unavailable."
)


class ClientError(Exception):
    """Base of every error the client reports; ``exit_code`` is the process exit status."""

    exit_code = EXIT_USAGE
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
                "exit_code": self.exit_code, **self.details}


class UsageError(ClientError):
    """Bad arguments, unusable local files, or a request the service refused as invalid."""

    exit_code = EXIT_USAGE
    slug = "usage"


class IntegrityFailure(ClientError):
    """Bytes, digests, proofs or signatures do not verify: never trust the result."""

    exit_code = EXIT_INTEGRITY
    slug = "integrity-failure"


class LogKeyChanged(IntegrityFailure):
    """The server presents a different log key from the one pinned on first use."""

    slug = "log-key-changed"


class LedgerInconsistent(IntegrityFailure):
    """The server's ledger does not extend the checkpoint this machine verified before."""

    slug = "ledger-inconsistent"


class AuthenticationError(ClientError):
    """No token, or the service refused it."""

    exit_code = EXIT_AUTH
    slug = "unauthenticated"


class DeniedError(ClientError):
    """Not found, or the caller's authority/role/share does not allow it."""

    exit_code = EXIT_DENIED
    slug = "forbidden"


class UnavailableError(ClientError):
    """The server, its store or its ledger is unavailable, or the connection failed."""

    exit_code = EXIT_UNAVAILABLE
    slug = "unavailable"
