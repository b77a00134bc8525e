"""The ledger as the HTTP service uses it: append events, read entries, proofs, checkpoints.

Construct one per process (its appends share group commits and one writer connection)::

    ledger = Ledger.open(settings.resolved_database_url, settings.resolved_log_key_file,
                         origin=settings.log_origin)
    recorded = ledger.append(Event(actor=..., action="package.read", outcome="allowed",
                                   package=package_id))
    ...
    ledger.close()
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import IO

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from custody.checkpoint import Checkpoint
from custody.export import write_export
from custody.note import Signer, VerifierKey, parse_note
from service.db import make_engine
from service.ledger.batching import GroupCommitter
from service.ledger.checkpoints import CheckpointSigner
from service.ledger.errors import InvalidEvent
from service.ledger.keys import load_or_create_log_key
from service.ledger.models import AppendedEntry, Event, StoredCheckpoint, StoredEntry
from service.ledger.reader import LedgerReader
from service.ledger.sequencer import Clock, Sequencer, utc_now

#: Most entries committed in one transaction by the group-commit writer.
MAX_BATCH = 1_000


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What an export wrote: how many entries, under which signed checkpoint."""

    tree_size: int
    checkpoint: StoredCheckpoint


class Ledger:
    """One linear, append-only custody ledger stored in the service database.

    Thread-safe. Appends from every thread of the process go through one group committer: the
    caller that finds no batch in flight commits everything queued, its own event first;
    appends from other processes and replicas serialize on the database's head row.
    """

    def __init__(self, engine: sa.Engine, log_key: Ed25519PrivateKey, *, origin: str,
                 clock: Clock = utc_now, max_batch: int = MAX_BATCH,
                 owns_engine: bool = False) -> None:
        """Use ``engine`` (from :func:`service.db.make_engine`), migrated to the newest revision
        (PostgreSQL needs ``0004_ledger_append`` for its guarded appends).

        ``origin`` names the log in checkpoints and is the signing key's name.
        Raises ``ValueError`` for an invalid origin.
        """
        self._engine = engine
        self._owns_engine = owns_engine
        self._signer = Signer(origin, log_key)
        self._reader = LedgerReader(engine)
        self._sequencer = Sequencer(engine, clock=clock)
        self._committer: GroupCommitter[Event, AppendedEntry] = GroupCommitter(
            self._sequencer.append, max_batch=max_batch)
        self._checkpoints = CheckpointSigner(engine, self._reader, self._signer, clock)

    @classmethod
    def open(cls, url: str | sa.URL, key_file: str | os.PathLike[str], *, origin: str,
             clock: Clock = utc_now, max_batch: int = MAX_BATCH) -> Ledger:
        """A ledger on the database at ``url`` with the signing key in ``key_file`` (generated
        0600 on first use). The engine is created here and disposed by :meth:`close`."""
        return cls(make_engine(url), load_or_create_log_key(key_file), origin=origin,
                   clock=clock, max_batch=max_batch, owns_engine=True)

    @property
    def origin(self) -> str:
        """The log's name: first line of every checkpoint."""
        return self._signer.name

    @property
    def verifier_key(self) -> VerifierKey:
        """The public key partners verify checkpoints with (``str()`` gives the C2SP form)."""
        return self._signer.verifier_key

    @property
    def append_stats(self) -> tuple[int, int]:
        """``(transactions, entries)`` appended by this instance: the group-commit batching."""
        return self._committer.stats

    @property
    def stale_heads(self) -> int:
        """Batches this instance had to sequence again under the head lock because another
        process or replica appended first (the optimistic path's misses)."""
        return self._sequencer.stale_heads

    def close(self) -> None:
        """Finish queued appends, refuse new ones, release the writer connection and dispose an
        engine opened by :meth:`open`."""
        self._committer.close()
        self._sequencer.close()
        if self._owns_engine:
            self._engine.dispose()

    # -- appending --------------------------------------------------------------------------

    def append(self, event: Event) -> AppendedEntry:
        """Durably record ``event`` as the next entry; returns it once committed.

        Raises :class:`InvalidEvent` (nothing recorded) or :class:`LedgerUnavailable` (the
        database failed; fail closed -- refuse the action being recorded).
        """
        event.validate()
        return self._committer.submit([event])[0]

    def append_many(self, events: Sequence[Event]) -> list[AppendedEntry]:
        """Record ``events`` as consecutive entries, all in one transaction. As :meth:`append`."""
        if not all(isinstance(e, Event) for e in events):
            raise InvalidEvent("append_many takes Event values")
        for event in events:
            event.validate()
        return self._committer.submit(list(events))

    # -- reading ----------------------------------------------------------------------------

    def tree_size(self) -> int:
        """Number of committed entries."""
        return self._reader.tree_size()

    def entry(self, index: int) -> StoredEntry:
        """The entry at ``index``. Raises :class:`EntryNotFound`."""
        return self._reader.entry(index)

    def entries(self, start: int = 0, limit: int = 100) -> list[StoredEntry]:
        """Up to ``limit`` entries from ``start`` on."""
        return self._reader.entries(start, limit)

    def package_entries(self, package: str, *, start: int = 0,
                        limit: int = 10_000) -> list[StoredEntry]:
        """The entries of one package, in order (follow ``package_prev`` to check the chain)."""
        return self._reader.package_entries(package, start=start, limit=limit)

    def root(self, size: int | None = None) -> bytes:
        """The RFC 9162 root over the first ``size`` entries (default: the whole tree)."""
        return self._reader.root(size)[1]

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        """Inclusion proof of entry ``index`` in the tree of ``tree_size``.
        Raises :class:`InvalidProofRequest`."""
        return self._reader.inclusion_proof(index, tree_size)

    def inclusion_proofs(self, indexes: Sequence[int], tree_size: int) -> list[list[bytes]]:
        """Inclusion proofs of ``indexes`` in the tree of ``tree_size``, in one node query.
        Raises :class:`InvalidProofRequest`."""
        return self._reader.inclusion_proofs(indexes, tree_size)

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """Consistency proof between tree sizes. Raises :class:`InvalidProofRequest`."""
        return self._reader.consistency_proof(size1, size2)

    # -- checkpoints and export -------------------------------------------------------------

    def latest_checkpoint(self) -> StoredCheckpoint | None:
        """The latest signed checkpoint, or ``None`` if none was signed yet."""
        return self._checkpoints.latest()

    def sign_checkpoint(self) -> StoredCheckpoint:
        """Sign (and store) a checkpoint of the current tree, after checking it extends the
        latest one. Raises :class:`CheckpointInconsistent`, :class:`LedgerUnavailable`."""
        return self._checkpoints.sign()

    def export(self, out: IO[bytes]) -> ExportResult:
        """Write the JSON Lines export (``custody.export``) under a fresh checkpoint."""
        checkpoint = self.sign_checkpoint()
        return ExportResult(self.export_with(out, checkpoint.note), checkpoint)

    def export_with(self, out: IO[bytes], checkpoint_note: str) -> int:
        """Write an export of the first N entries under an existing signed checkpoint of size N
        (exactly as stored: a verifier, not the exporter, judges it). Returns N."""
        size = Checkpoint.from_note_body(parse_note(checkpoint_note).text).size
        # zip() in write_export advances both copies in step, so tee buffers one entry.
        for_entries, for_hashes = itertools.tee(self._reader.iter_entries(size))
        return write_export((s.entry for s in for_entries), (s.leaf_hash for s in for_hashes),
                            checkpoint_note, out)
