"""PostgreSQL fast paths of the append transaction: a batch's writes in one round trip.

:func:`write_batch` runs under the head lock (the locking path): the INSERTs and the head UPDATE
do not depend on each other's results, so they are sent together in psycopg 3 pipeline mode.

:func:`commit_on_cached_head` is the optimistic path: BEGIN, the guarded head move, the INSERTs,
the guarded package-head moves and COMMIT, all in one pipeline. The guards are the functions of
migration ``0004_ledger_append``; they *raise* when a head is not where the writer expected, so
the server skips everything after them up to the pipeline's sync -- the COMMIT included -- and
nothing of a stale batch can ever commit. (A guard that merely matched zero rows would be seen
by the client only after COMMIT had already run.)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import errors
from psycopg.pq import TransactionStatus

_ENTRY_COLUMNS = ("idx", "leaf_hash", "canonical", "time", "package", "action", "outcome",
                  "authority")
_INSERT_ENTRY = (f"INSERT INTO ledger_entries ({', '.join(_ENTRY_COLUMNS)}) "
                 f"VALUES ({', '.join(['%s'] * len(_ENTRY_COLUMNS))})")
_INSERT_NODE = "INSERT INTO ledger_nodes (level, node_index, hash) VALUES (%s, %s, %s)"
_UPSERT_PACKAGE = (
    "INSERT INTO ledger_package_heads (package, last_index, last_leaf_hash, count) "
    "VALUES (%s, %s, %s, %s) ON CONFLICT (package) DO UPDATE SET "
    "last_index = EXCLUDED.last_index, last_leaf_hash = EXCLUDED.last_leaf_hash, "
    "count = ledger_package_heads.count + EXCLUDED.count")
_MOVE_HEAD = ("UPDATE ledger_head SET size = %s, last_leaf_hash = %s "
              "WHERE id = 1 AND size = %s")
_ADVANCE_HEAD = "SELECT ledger_advance_head(%s, %s, %s, %s)"
_ADVANCE_PACKAGE = "SELECT ledger_advance_package_head(%s, %s, %s, %s, %s)"
_READ_PACKAGE_HEADS = ("SELECT package, last_index, last_leaf_hash FROM ledger_package_heads "
                       "WHERE package = ANY(%s)")


class HeadMoved(Exception):
    """Another writer appended since the cached head; the batch was rolled back, nothing written."""


def write_batch(conn: sa.Connection, entries: Sequence[dict[str, Any]],
                nodes: Sequence[dict[str, Any]], packages: Sequence[dict[str, Any]],
                old_size: int, new_size: int, last_leaf: bytes) -> int:
    """Insert the batch's rows and move the head, pipelined; returns the head rows moved (1).
    For use under the head lock, inside the caller's transaction."""
    pg: Any = conn.connection.dbapi_connection
    with pg.pipeline(), pg.cursor() as cursor, pg.cursor() as head:
        _insert(cursor, entries, nodes)
        if packages:
            cursor.executemany(_UPSERT_PACKAGE, [
                (r["package"], r["last_index"], r["last_leaf_hash"], r["count"])
                for r in packages])
        head.execute(_MOVE_HEAD, (new_size, last_leaf, old_size))
    return int(head.rowcount)


def read_package_heads(conn: sa.Connection, packages: Sequence[str]
                       ) -> dict[str, tuple[int, bytes]]:
    """``package -> (last_index, last_leaf_hash)`` as last committed, in one round trip, outside
    any transaction. Only as good as the head guard that follows it (see the sequencer)."""
    pg: Any = conn.connection.dbapi_connection
    with _own_transactions(pg):
        rows = pg.execute(_READ_PACKAGE_HEADS, (list(packages),)).fetchall()
    return {package: (int(index), bytes(leaf)) for package, index, leaf in rows}


def commit_on_cached_head(conn: sa.Connection, entries: Sequence[dict[str, Any]],
                          nodes: Sequence[dict[str, Any]], packages: Sequence[dict[str, Any]],
                          expected: tuple[int, bytes | None], new: tuple[int, bytes]) -> None:
    """Commit the batch if the head is still at ``expected`` ``(size, last leaf)`` and every
    package head at its row's ``expected_last_index``; one round trip plus the commit flush.

    Raises :class:`HeadMoved` (after rolling back) when a guard fails or an index collides;
    any other database error propagates with the transaction in an unknown state.
    """
    pg: Any = conn.connection.dbapi_connection
    with _own_transactions(pg):
        try:
            with pg.pipeline(), pg.cursor() as cursor:
                cursor.execute("BEGIN")
                cursor.execute(_ADVANCE_HEAD, (*expected, *new))
                _insert(cursor, entries, nodes)
                if packages:
                    cursor.executemany(_ADVANCE_PACKAGE, [
                        (r["package"], r["expected_last_index"], r["last_index"],
                         r["last_leaf_hash"], r["count"]) for r in packages])
                cursor.execute("COMMIT")
        except (errors.SerializationFailure, errors.UniqueViolation) as exc:
            pg.rollback()
            raise HeadMoved(str(exc).splitlines()[0]) from exc


@contextmanager
def _own_transactions(pg: psycopg.Connection[Any]) -> Iterator[None]:
    # In autocommit mode psycopg sends no BEGIN (and waits for no reply) before the first
    # statement: our own BEGIN rides in the pipeline. Restored once the connection is idle
    # again; after any other failure the sequencer discards the connection.
    pg.autocommit = True
    try:
        yield
    finally:
        if pg.info.transaction_status == TransactionStatus.IDLE:
            pg.autocommit = False


def _insert(cursor: Any, entries: Sequence[dict[str, Any]],
            nodes: Sequence[dict[str, Any]]) -> None:
    cursor.executemany(_INSERT_ENTRY, [tuple(r[c] for c in _ENTRY_COLUMNS) for r in entries])
    cursor.executemany(_INSERT_NODE, [(r["level"], r["node_index"], r["hash"]) for r in nodes])
