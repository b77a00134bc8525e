"""The custody ledger's storage: tables, the append path (one linear log) and reads/proofs.

The ledger's logic (canonical encoding, hashing, proofs, checkpoints, verification) lives in
``custody``; this package stores it in the service database. Start from :class:`Ledger`.
"""

from service.ledger.errors import (
    CheckpointInconsistent,
    EntryNotFound,
    InvalidEvent,
    InvalidProofRequest,
    LedgerCorrupted,
    LedgerError,
    LedgerUnavailable,
    LogKeyError,
)
from service.ledger.ledger import ExportResult, Ledger
from service.ledger.models import AppendedEntry, Event, StoredCheckpoint, StoredEntry

__all__ = [
    "AppendedEntry",
    "CheckpointInconsistent",
    "EntryNotFound",
    "Event",
    "ExportResult",
    "InvalidEvent",
    "InvalidProofRequest",
    "Ledger",
    "LedgerCorrupted",
    "LedgerError",
    "LedgerUnavailable",
    "LogKeyError",
    "StoredCheckpoint",
    "StoredEntry",
]
