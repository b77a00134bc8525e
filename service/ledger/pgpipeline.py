"""PostgreSQL fast path of the append transaction: the writes of one batch in one round trip.

After the head row is locked and read, the batch's INSERTs and the head UPDATE do not depend on
each other's results, so they are sent together in psycopg 3 pipeline mode instead of waiting
for each statement in turn. Same statements, same transaction, same checks as the portable path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

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


def write_batch(conn: sa.Connection, entries: Sequence[dict[str, Any]],
                nodes: Sequence[dict[str, Any]], packages: Sequence[dict[str, Any]],
                old_size: int, new_size: int, last_leaf: bytes) -> int:
    """Insert the batch's rows and move the head, pipelined; returns the head rows moved (1)."""
    pg: Any = conn.connection.dbapi_connection
    with pg.pipeline(), pg.cursor() as cursor, pg.cursor() as head:
        cursor.executemany(_INSERT_ENTRY, [tuple(r[c] for c in _ENTRY_COLUMNS) for r in entries])
        cursor.executemany(_INSERT_NODE, [(r["level"], r["node_index"], r["hash"])
                                          for r in nodes])
        if packages:
            cursor.executemany(_UPSERT_PACKAGE, [
                (r["package"], r["last_index"], r["last_leaf_hash"], r["count"])
                for r in packages])
        head.execute(_MOVE_HEAD, (new_size, last_leaf, old_size))
    return int(head.rowcount)
