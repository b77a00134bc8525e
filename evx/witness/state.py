"""The witness's durable state: the latest cosigned checkpoint per log, in SQLite.

Advancing is a compare-and-swap: the row is updated only if it still holds the checkpoint the
request was checked against, so of two concurrent requests from the same old size at most one
advances (tlog-witness requires the check and the update to be atomic). Checkpoints that were
validly signed by a log but refused are kept as evidence of the log's misbehaviour.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from custody.witness import WitnessedState

MAX_EVIDENCE_ROWS_PER_LOG = 1000  # bound: a compromised log key cannot fill the disk

_SCHEMA = """
CREATE TABLE IF NOT EXISTS witnessed (
    origin TEXT PRIMARY KEY,
    size TEXT NOT NULL,
    root BLOB NOT NULL,
    note TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS refused (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    origin TEXT NOT NULL,
    old_size TEXT NOT NULL,
    note TEXT NOT NULL,
    reason TEXT NOT NULL,
    at INTEGER NOT NULL
);
"""


@dataclass(frozen=True)
class Witnessed:
    state: WitnessedState
    note: str


class WitnessStore:
    """SQLite file holding what the witness cosigned. One connection per call (thread-safe)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.executescript(_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        conn = sqlite3.connect(self._path, timeout=30, isolation_level=None)
        try:
            # A cosignature is returned only after the new state is on disk.
            conn.execute("PRAGMA synchronous=FULL")
            yield conn
        finally:
            conn.close()

    def latest(self, origin: str) -> Witnessed | None:
        """The latest cosigned checkpoint of ``origin``, or None."""
        with self._connect() as conn:
            row = conn.execute("SELECT size, root, note FROM witnessed WHERE origin = ?",
                               (origin,)).fetchone()
        if row is None:
            return None
        return Witnessed(WitnessedState(int(row[0]), bytes(row[1])), row[2])

    def advance(self, origin: str, expected: WitnessedState | None, new: WitnessedState,
                note: str) -> bool:
        """Store ``new`` if the log's state is still ``expected``; whether it was stored."""
        now = int(time.time())
        with self._connect() as conn:
            if expected is None:
                cursor = conn.execute(
                    "INSERT INTO witnessed (origin, size, root, note, updated_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (origin) DO NOTHING",
                    (origin, str(new.size), new.root, note, now))
            else:
                cursor = conn.execute(
                    "UPDATE witnessed SET size = ?, root = ?, note = ?, updated_at = ? "
                    "WHERE origin = ? AND size = ? AND root = ?",
                    (str(new.size), new.root, note, now, origin, str(expected.size),
                     expected.root))
            return cursor.rowcount == 1

    def record_refusal(self, origin: str, old_size: int, note: str, reason: str) -> None:
        """Keep a validly signed checkpoint the witness refused (bounded per log)."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            count = conn.execute("SELECT count(*) FROM refused WHERE origin = ?",
                                 (origin,)).fetchone()[0]
            if count < MAX_EVIDENCE_ROWS_PER_LOG:
                conn.execute("INSERT INTO refused (origin, old_size, note, reason, at) "
                             "VALUES (?, ?, ?, ?, ?)",
                             (origin, str(old_size), note, reason, int(time.time())))
            conn.execute("COMMIT")

    def refusals(self, origin: str) -> list[tuple[int, str, str]]:
        """The refused checkpoints of ``origin``: (old size, note, reason), oldest first."""
        with self._connect() as conn:
            rows = conn.execute("SELECT old_size, note, reason FROM refused WHERE origin = ? "
                                "ORDER BY id", (origin,)).fetchall()
        return [(int(r[0]), r[1], r[2]) for r in rows]
