"""Reads of the stored ledger: entries, tree heads and RFC 9162 proofs from stored perfect nodes.

A proof or root needs O(log n) perfect nodes; ``custody.merkle`` plans which, they are fetched in
one query, and folded back with ``custody.merkle.range_hash``. The tree is never rebuilt from
its leaves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC
from functools import partial
from typing import Any, TypeVar

import sqlalchemy as sa

from custody import merkle
from custody.entry import Entry
from custody.errors import FormatError
from service.ledger import tables
from service.ledger.errors import (
    EntryNotFound,
    InvalidProofRequest,
    LedgerCorrupted,
    LedgerUnavailable,
)
from service.ledger.models import StoredEntry
from service.ledger.sequencer import fetch_nodes

T = TypeVar("T")

#: Upper bound on one page of entries (memory bound per request).
MAX_PAGE = 10_000
#: Entries fetched per query when streaming (exports).
STREAM_CHUNK = 2_000

_ENTRY_COLUMNS = (tables.entries.c.idx, tables.entries.c.leaf_hash, tables.entries.c.canonical,
                  tables.entries.c.time, tables.entries.c.package, tables.entries.c.action,
                  tables.entries.c.outcome, tables.entries.c.authority)
_TREE_LEAF = tables.nodes.c.hash.label("tree_leaf")


def _checked_select() -> sa.Select[Any]:
    """Entries with the leaf hash the Merkle tree holds for them (level-0 node)."""
    return sa.select(*_ENTRY_COLUMNS, _TREE_LEAF).select_from(tables.entries.outerjoin(
        tables.nodes,
        sa.and_(tables.nodes.c.level == 0, tables.nodes.c.node_index == tables.entries.c.idx)))


def stored_entry(row: sa.Row[Any], *, strict: bool = True) -> StoredEntry:
    """Build a :class:`StoredEntry` from an entries row (all of ``_ENTRY_COLUMNS``).

    ``strict`` (every read the service answers with; the row comes from :func:`_checked_select`):
    the row must agree with itself and with the Merkle tree -- the canonical text's index, its
    leaf hash, the tree's leaf, the query columns -- or :class:`LedgerCorrupted` is raised naming
    the index. Exports are not strict: they carry the canonical text and the stored leaf
    hash exactly as stored so that the offline verifier judges them. An unparseable canonical
    text raises :class:`LedgerCorrupted` either way.
    """
    index = int(row.idx)
    raw = row.canonical.encode()
    try:
        entry = Entry.from_json_bytes(raw)
    except FormatError as exc:
        raise LedgerCorrupted(f"stored text is not a valid entry: {exc.reason}",
                              index=index) from exc
    leaf = bytes(row.leaf_hash)
    if strict:
        _check_row(index, leaf, row, entry)
    return StoredEntry(index, leaf, raw, entry)


def _check_row(index: int, leaf: bytes, row: sa.Row[Any], entry: Entry) -> None:
    time = row.time if row.time.tzinfo is not None else row.time.replace(tzinfo=UTC)
    expected = {
        "index": (entry.index, index),
        "leaf_hash": (entry.leaf_hash(), leaf),
        "Merkle leaf": (leaf, bytes(row.tree_leaf) if row.tree_leaf is not None else None),
        "time": (entry.timestamp, time.astimezone(UTC)),
        "package": (entry.package, row.package),
        "action": (entry.action.value, row.action),
        "outcome": (entry.outcome.value, row.outcome),
        "authority": (entry.actor.authority, row.authority),
    }
    for column, (in_text, stored) in expected.items():
        if in_text != stored:
            raise LedgerCorrupted(f"stored {column} disagrees with the canonical entry",
                                  index=index)


class LedgerReader:
    """Read-only access to the ledger tables through ``engine``."""

    def __init__(self, engine: sa.Engine) -> None:
        self._engine = engine

    def _read(self, work: Callable[[sa.Connection], T]) -> T:
        try:
            with self._engine.connect() as conn, conn.begin():
                return work(conn)
        except sa.exc.SQLAlchemyError as exc:
            raise LedgerUnavailable(f"ledger read failed: {type(exc).__name__}") from exc

    @staticmethod
    def size_in(conn: sa.Connection) -> int:
        """The committed tree size as seen by ``conn``."""
        size = conn.execute(
            sa.select(tables.head.c.size).where(tables.head.c.id == tables.HEAD_ROW_ID)
        ).scalar_one_or_none()
        if size is None:
            raise LedgerCorrupted("the ledger head row is missing (database not migrated?)")
        return int(size)

    def tree_size(self) -> int:
        """Number of committed entries."""
        return self._read(self.size_in)

    def entry(self, index: int) -> StoredEntry:
        """The entry at ``index``. Raises :class:`EntryNotFound`."""
        def work(conn: sa.Connection) -> StoredEntry:
            row = conn.execute(
                _checked_select().where(tables.entries.c.idx == index)
            ).one_or_none()
            if row is None:
                raise EntryNotFound(f"no ledger entry {index}")
            return stored_entry(row)
        return self._read(work)

    def entries(self, start: int = 0, limit: int = 100) -> list[StoredEntry]:
        """Up to ``limit`` entries from index ``start`` on, in index order."""
        if start < 0 or not 0 < limit <= MAX_PAGE:
            raise ValueError(f"need start >= 0 and 0 < limit <= {MAX_PAGE}")
        return self._read(lambda conn: [stored_entry(row) for row in conn.execute(
            _checked_select().where(tables.entries.c.idx >= start)
            .order_by(tables.entries.c.idx).limit(limit)
        )])

    def package_entries(self, package: str, *, start: int = 0,
                        limit: int = MAX_PAGE) -> list[StoredEntry]:
        """Entries about ``package`` with index >= ``start``, in index order (its custody chain)."""
        if start < 0 or not 0 < limit <= MAX_PAGE:
            raise ValueError(f"need start >= 0 and 0 < limit <= {MAX_PAGE}")
        return self._read(lambda conn: [stored_entry(row) for row in conn.execute(
            _checked_select()
            .where(tables.entries.c.package == package, tables.entries.c.idx >= start)
            .order_by(tables.entries.c.idx).limit(limit)
        )])

    def iter_entries(self, end: int, *, strict: bool = False) -> Iterator[StoredEntry]:
        """Stream the entries with index below ``end`` in index order, in chunks (entries below
        the head never change). Not ``strict`` by default: this feeds exports."""
        start = 0
        while start < end:
            stop = min(end, start + STREAM_CHUNK)
            query = ((_checked_select() if strict else sa.select(*_ENTRY_COLUMNS))
                     .where(tables.entries.c.idx >= start, tables.entries.c.idx < stop)
                     .order_by(tables.entries.c.idx))
            chunk = self._read(lambda conn, q=query: [  # type: ignore[misc]
                stored_entry(row, strict=strict) for row in conn.execute(q)])
            yield from chunk
            start = stop

    def root(self, size: int | None = None) -> tuple[int, bytes]:
        """``(size, root)``: the RFC 9162 root of the first ``size`` entries (default: all)."""
        def work(conn: sa.Connection) -> tuple[int, bytes]:
            current = self.size_in(conn)
            wanted = current if size is None else size
            if not 0 <= wanted <= current:
                raise InvalidProofRequest(f"tree size {wanted} outside [0, {current}]")
            return wanted, self.root_in(conn, wanted)
        return self._read(work)

    @staticmethod
    def root_in(conn: sa.Connection, size: int) -> bytes:
        """Root of the first ``size`` entries, from stored nodes read through ``conn``."""
        if size == 0:
            return merkle.EMPTY_ROOT
        keys = merkle.perfect_nodes(0, size)
        return _fold(lambda: merkle.range_hash(0, size, _nodes(conn, keys)))

    def inclusion_proof(self, index: int, tree_size: int) -> list[bytes]:
        """RFC 9162 inclusion proof of entry ``index`` in the tree of ``tree_size``."""
        def work(conn: sa.Connection) -> list[bytes]:
            current = self.size_in(conn)
            if not 0 <= index < tree_size <= current:
                raise InvalidProofRequest(
                    f"need 0 <= index < tree_size <= {current}, got {index}, {tree_size}")
            return _fold(lambda: merkle.inclusion_proof(
                index, tree_size, lambda keys: _nodes(conn, keys)))
        return self._read(work)

    def inclusion_proofs(self, indexes: Sequence[int], tree_size: int) -> list[list[bytes]]:
        """Inclusion proofs of several entries in one tree, their nodes fetched in one query
        (a package's custody record: many entries, one checkpoint)."""
        def work(conn: sa.Connection) -> list[list[bytes]]:
            current = self.size_in(conn)
            for index in indexes:
                if not 0 <= index < tree_size <= current:
                    raise InvalidProofRequest(
                        f"need 0 <= index < tree_size <= {current}, got {index}, {tree_size}")
            wanted = {key for index in indexes
                      for start, end in merkle.inclusion_proof_ranges(index, tree_size)
                      for key in merkle.perfect_nodes(start, end)}
            nodes = _nodes(conn, wanted)
            return [_fold(partial(merkle.inclusion_proof, index, tree_size, lambda _: nodes))
                    for index in indexes]
        return self._read(work)

    def consistency_proof(self, size1: int, size2: int) -> list[bytes]:
        """RFC 9162 consistency proof from the tree of ``size1`` to the tree of ``size2``."""
        return self._read(lambda conn: self.consistency_proof_in(conn, size1, size2))

    def consistency_proof_in(self, conn: sa.Connection, size1: int, size2: int) -> list[bytes]:
        """As :meth:`consistency_proof`, through ``conn``."""
        current = self.size_in(conn)
        if not 0 < size1 <= size2 <= current:
            raise InvalidProofRequest(
                f"need 0 < size1 <= size2 <= {current}, got {size1}, {size2}")
        return _fold(lambda: merkle.consistency_proof(
            size1, size2, lambda keys: _nodes(conn, keys)))


def _nodes(conn: sa.Connection, keys: set[tuple[int, int]] | list[tuple[int, int]]
           ) -> Mapping[tuple[int, int], bytes]:
    return fetch_nodes(conn, keys)


def _fold(compute: Callable[[], T]) -> T:
    try:
        return compute()
    except ValueError as exc:  # custody: a node the head says exists is missing or malformed
        raise LedgerCorrupted(f"stored Merkle nodes incomplete: {exc}") from exc
