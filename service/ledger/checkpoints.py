"""Signed checkpoints of the ledger: never two that contradict each other.

Before signing a tree head the log checks it against the latest checkpoint it signed: that one
must verify under the log's own key, must not be larger, and a consistency proof built from the
stored nodes must show the new tree extends it. Anything else means the stored ledger was
rewritten or truncated, and the log refuses to sign (:class:`CheckpointInconsistent`).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa

from custody import merkle
from custody.checkpoint import Checkpoint
from custody.errors import VerificationError
from custody.note import Signer
from service.db import SQLITE_BEGIN
from service.ledger import tables
from service.ledger.errors import CheckpointInconsistent, LedgerUnavailable
from service.ledger.models import StoredCheckpoint
from service.ledger.reader import LedgerReader


def latest_checkpoint_in(conn: sa.Connection) -> StoredCheckpoint | None:
    """The stored checkpoint with the largest tree size (the newest among equals)."""
    row = conn.execute(
        sa.select(tables.checkpoints.c.tree_size, tables.checkpoints.c.root,
                  tables.checkpoints.c.note, tables.checkpoints.c.created_at)
        .order_by(tables.checkpoints.c.tree_size.desc(), tables.checkpoints.c.id.desc())
        .limit(1)
    ).one_or_none()
    if row is None:
        return None
    created_at: datetime = row.created_at
    # SQLite keeps no zone; every time this service writes is UTC.
    created_at = (created_at.replace(tzinfo=UTC) if created_at.tzinfo is None
                  else created_at.astimezone(UTC))
    return StoredCheckpoint(int(row.tree_size), bytes(row.root), row.note, created_at)


class CheckpointSigner:
    """Signs and stores checkpoints for the log named ``signer.name`` (the origin)."""

    def __init__(self, engine: sa.Engine, reader: LedgerReader, signer: Signer,
                 clock: Callable[[], datetime]) -> None:
        self._engine = engine
        self._reader = reader
        self._signer = signer
        self._clock = clock

    def latest(self) -> StoredCheckpoint | None:
        """The latest stored checkpoint, or ``None`` before the first is signed."""
        try:
            with self._engine.connect() as conn, conn.begin():
                return latest_checkpoint_in(conn)
        except sa.exc.SQLAlchemyError as exc:
            raise LedgerUnavailable(f"checkpoint read failed: {type(exc).__name__}") from exc

    def sign(self) -> StoredCheckpoint:
        """Sign and store a checkpoint of the current tree (or return the latest if same size).

        Raises :class:`CheckpointInconsistent` if the stored tree does not extend the latest
        signed checkpoint, :class:`LedgerUnavailable` on database errors.
        """
        try:
            # IMMEDIATE on SQLite: the read of the latest checkpoint and the insert are one
            # write transaction, so a concurrent signer waits instead of failing to upgrade.
            with self._engine.connect().execution_options(**{SQLITE_BEGIN: "IMMEDIATE"}) \
                    as conn, conn.begin():
                return self._sign(conn)
        except sa.exc.SQLAlchemyError as exc:
            raise LedgerUnavailable(f"checkpoint signing failed: {type(exc).__name__}") from exc

    def _sign(self, conn: sa.Connection) -> StoredCheckpoint:
        size = self._reader.size_in(conn)
        root = self._reader.root_in(conn, size)
        latest = latest_checkpoint_in(conn)
        if latest is not None:
            self._check_extends(conn, latest, size, root)
            if latest.tree_size == size:
                return latest
        note = Checkpoint(self._signer.name, size, root).sign(self._signer)
        stored = StoredCheckpoint(size, root, note, self._clock())
        conn.execute(tables.checkpoints.insert().values(
            tree_size=size, root=root, note=note, created_at=stored.created_at))
        return stored

    def _check_extends(self, conn: sa.Connection, latest: StoredCheckpoint, size: int,
                       root: bytes) -> None:
        try:
            signed = Checkpoint.verify(latest.note, self._signer.verifier_key)
        except VerificationError as exc:
            raise CheckpointInconsistent(
                f"latest stored checkpoint does not verify under the log key: {exc}") from exc
        if signed.size != latest.tree_size or signed.root != latest.root:
            raise CheckpointInconsistent("latest stored checkpoint row differs from its note")
        if signed.size > size:
            raise CheckpointInconsistent(
                f"tree size {size} is smaller than the signed checkpoint's {signed.size}")
        if signed.size == 0:
            return
        proof = self._reader.consistency_proof_in(conn, signed.size, size) \
            if signed.size < size else []
        try:
            merkle.verify_consistency(signed.size, size, proof, signed.root, root)
        except VerificationError as exc:
            raise CheckpointInconsistent(
                f"tree of size {size} is not consistent with the checkpoint of size "
                f"{signed.size}: {exc}") from exc
