"""Errors of the ledger's storage layer. None carries an HTTP status; ``service`` maps them.

Grouped by cause: the store could not record or read (``LedgerUnavailable`` -> fail closed), the
stored ledger contradicts itself or its signed checkpoints (``LedgerCorrupted``), or the caller
asked for something that does not exist or is malformed (subclasses of ``ValueError`` /
``LookupError`` as well as ``LedgerError``).
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base of every ledger storage error."""


class LedgerUnavailable(LedgerError):
    """The ledger could not durably record (or read) right now; nothing was acknowledged.

    The action that wanted to be recorded must be refused (fail closed). The underlying database
    error is chained as ``__cause__``.
    """


class LedgerCorrupted(LedgerError):
    """Stored ledger data is inconsistent (missing Merkle node, head out of step with entries,
    an entry row whose columns disagree with its canonical text).

    Attributes:
        index: The entry at fault, when one can be named.
    """

    def __init__(self, reason: str, *, index: int | None = None) -> None:
        self.index = index
        super().__init__(f"entry {index}: {reason}" if index is not None else reason)


class CheckpointInconsistent(LedgerCorrupted):
    """A new checkpoint would contradict the latest signed one; the log refuses to sign it."""


class InvalidEvent(LedgerError, ValueError):
    """The event given to ``append`` does not form a valid ledger entry (see ``__cause__``)."""


class EntryNotFound(LedgerError, LookupError):
    """No entry at that index (the index is at or beyond the tree size)."""


class InvalidProofRequest(LedgerError, ValueError):
    """Proof parameters outside the tree (index >= size, size beyond the current tree, ...)."""


class LogKeyError(LedgerError):
    """The log signing key file cannot be read, parsed or safely created."""


class LedgerAccessDenied(LedgerError):
    """The caller may not read the whole ledger (only the operator's auditors may); the
    refusal is on the record."""
