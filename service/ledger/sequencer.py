"""The append transaction: give events their place in the one linear log and store them.

Every append -- from any thread, process or API replica -- goes through :meth:`Sequencer.append`.
A batch is *sequenced* (indexes, ``prev`` and ``package_prev`` chains, leaf hashes, every perfect
Merkle node it completes) against a known head, then stored with the head moved forward in the
same transaction. Two ways to know the head:

**Locking path** (SQLite, the first batch of a writer, and every retry). Take the single head row
under a write lock (``SELECT ... FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite),
read what is needed, sequence, write, commit. No two writers can hold the lock at once, so no two
can sequence against the same size: no fork, gap or duplicate index.

**Optimistic path** (PostgreSQL). After each commit the writer keeps the head it just wrote:
size, last leaf hash, last time, the Merkle frontier (the perfect nodes covering ``[0, size)``)
and the heads of the packages it touched. All of that is exactly the database's state *as long as
the head row still shows that size and last leaf*: every append by anyone moves the head, and the
head only moves forward (migration ``0001`` trigger). So the next batch is sequenced against the
cache and sent with BEGIN, ``ledger_advance_head(expected size, expected leaf -> new)``, the
INSERTs, ``ledger_advance_package_head(expected last index -> new)`` per package and COMMIT, in
one pipelined round trip (:func:`pgpipeline.commit_on_cached_head`). Why that is safe:

- The head guard runs first and updates the head row, so it takes the row lock the locking path
  takes; a concurrent writer is serialized behind it, or it behind them -- and then re-checks the
  *committed* row (READ COMMITTED re-evaluation) and finds the size moved.
- A failing guard raises, so the server skips the rest of the pipeline, COMMIT included: a stale
  batch never commits anything. The entries' and nodes' primary keys are a second guard: a batch
  sequenced at an index another writer used collides.
- Package heads of packages not in the cache are read without a lock just before; that read
  can only be newer than the cached head if the head moved, which the head guard then refuses.
  The package guards refuse it independently.
- Durable before return: the COMMIT's reply (``synchronous_commit=on``) is awaited.

When a guard refuses, the batch is rolled back, the cache is dropped and the batch is sequenced
again on the locking path, which reloads the head from the database. Batches too large for the
pipeline (``append_many`` bulk loads) also take the locking path, where they are written by COPY.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import NamedTuple

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from custody.entry import Entry, format_time
from custody.errors import FormatError
from custody.merkle import node_hash, perfect_nodes
from service.db import SQLITE_BEGIN
from service.ledger import pgpipeline, tables
from service.ledger.errors import LedgerCorrupted, LedgerUnavailable
from service.ledger.models import AppendedEntry, Event

Clock = Callable[[], datetime]

#: Rows from which PostgreSQL inserts use COPY rather than a statement per row.
COPY_THRESHOLD = 256

#: How many package heads a writer remembers between batches (each ~100 bytes).
PACKAGE_HEAD_CACHE_SIZE = 10_000

#: Largest batch sent on the optimistic path; larger ones take the locking path and COPY.
OPTIMISTIC_MAX_EVENTS = COPY_THRESHOLD // 4


def utc_now() -> datetime:
    """The current time, UTC, to the microsecond."""
    return datetime.now(UTC)


class _PackageHead(NamedTuple):
    last_index: int
    last_leaf: bytes


@dataclass
class _Frontier:
    """What the writer knows about the log: the head at ``size`` and what follows from it.

    Exactly the database's state while the head row shows the same size and last leaf hash; any
    other writer's append changes both (see the module docstring).
    """

    size: int = -1
    last_leaf: bytes | None = None
    last_time: str | None = None
    # Perfect nodes covering [0, size), largest first: (level, index, hash).
    stack: list[tuple[int, int, bytes]] = field(default_factory=list)
    packages: OrderedDict[str, _PackageHead] = field(default_factory=OrderedDict)

    @property
    def known(self) -> bool:
        return self.size >= 0

    def copy(self) -> _Frontier:
        """A frontier to sequence the next batch on. The package heads are *shared*, not
        copied: copying up to PACKAGE_HEAD_CACHE_SIZE of them cost ~0.3 ms per thousand heads
        on every batch (5.8 ms at 10,000 on this VM, more than the commit). So a batch's
        sequencing updates the writer's cache in place, and a batch that does not commit must
        drop the whole frontier (:meth:`Sequencer.append` does, on every failure)."""
        return _Frontier(self.size, self.last_leaf, self.last_time, list(self.stack),
                         self.packages)


@dataclass
class _Batch:
    """A batch sequenced against a frontier: its rows, and the frontier after it."""

    entries: list[dict[str, object]]
    nodes: list[dict[str, object]]
    packages: list[dict[str, object]]
    appended: list[AppendedEntry]
    after: _Frontier


_LOCK_HEAD = (sa.select(tables.head.c.size, tables.head.c.last_leaf_hash)
              .where(tables.head.c.id == tables.HEAD_ROW_ID).with_for_update())
_MOVE_HEAD = (tables.head.update()
              .where(tables.head.c.id == tables.HEAD_ROW_ID,
                     tables.head.c.size == sa.bindparam("old_size"))
              .values(size=sa.bindparam("new_size"), last_leaf_hash=sa.bindparam("new_leaf")))

_INSERT = {table.name: table.insert() for table in (tables.entries, tables.nodes)}


class Sequencer:
    """Appends batches of events as one transaction each. Not for concurrent use in one process:
    :class:`service.ledger.batching.GroupCommitter` calls it from one batch leader at a time."""

    def __init__(self, engine: sa.Engine, *, clock: Clock = utc_now) -> None:
        self._engine = engine
        self._clock = clock
        self._frontier = _Frontier()
        self._lock = threading.Lock()  # guards against accidental concurrent use
        self._conn: sa.Connection | None = None
        dialect = engine.dialect.name
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        self._optimistic = dialect == "postgresql"
        # Built once: building these per append (operators, coercions, a cache key each time)
        # cost about as much CPU as executing them on SQLite.
        upsert = insert(tables.package_heads)
        self._upsert_heads = upsert.on_conflict_do_update(
            index_elements=[tables.package_heads.c.package],
            set_={
                "last_index": upsert.excluded.last_index,
                "last_leaf_hash": upsert.excluded.last_leaf_hash,
                "count": tables.package_heads.c.count + upsert.excluded.count,
            },
        )
        self._stale_heads = 0

    @property
    def stale_heads(self) -> int:
        """Optimistic batches refused because another writer had appended since this one's last
        commit (each then sequenced again under the head lock)."""
        return self._stale_heads

    def append(self, events: Sequence[Event]) -> list[AppendedEntry]:
        """Durably append ``events`` in order; returns them as recorded.

        Raises :class:`LedgerUnavailable` (database error, nothing recorded as far as this
        process knows) or :class:`LedgerCorrupted` (the stored head contradicts the entries).
        """
        with self._lock:
            try:
                conn = self._connection()
                batch = self._append_on_cached_head(conn, events)
                if batch is None:
                    with conn.begin():
                        batch = self._append_locked(conn, events)
            except LedgerCorrupted:
                self._reset()
                raise
            except (sa.exc.SQLAlchemyError, psycopg.Error) as exc:
                self._reset()
                raise LedgerUnavailable(f"ledger append failed: {type(exc).__name__}") from exc
            except BaseException:
                self._reset()  # the shared package heads may hold this batch's (_Frontier.copy)
                raise
            self._frontier = batch.after
            while len(self._frontier.packages) > PACKAGE_HEAD_CACHE_SIZE:
                self._frontier.packages.popitem(last=False)
            return batch.appended

    def close(self) -> None:
        """Release the writer's connection."""
        with self._lock:
            self._reset()

    def _connection(self) -> sa.Connection:
        # The single writer keeps its connection: no pool checkout and ping per batch.
        if self._conn is None or self._conn.closed or self._conn.invalidated:
            self._conn = self._engine.connect().execution_options(**{SQLITE_BEGIN: "IMMEDIATE"})
        return self._conn

    def _reset(self) -> None:
        self._frontier = _Frontier()
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.invalidate()  # state unknown after a failure: never reuse it
                conn.close()
            except sa.exc.SQLAlchemyError:
                pass

    def _append_on_cached_head(self, conn: sa.Connection, events: Sequence[Event]
                               ) -> _Batch | None:
        """The optimistic path; ``None`` when the locking path must (or did not yet) run."""
        if not (self._optimistic and self._frontier.known
                and len(events) <= OPTIMISTIC_MAX_EVENTS):
            return None
        frontier = self._frontier.copy()
        missing = sorted({e.package for e in events if e.package} - frontier.packages.keys())
        if missing:
            for package, (index, leaf) in pgpipeline.read_package_heads(conn, missing).items():
                frontier.packages[package] = _PackageHead(index, leaf)
        batch = self._sequence(frontier, events)
        try:
            pgpipeline.commit_on_cached_head(
                conn, batch.entries, batch.nodes, batch.packages,
                expected=(self._frontier.size, self._frontier.last_leaf),
                new=(batch.after.size, batch.appended[-1].leaf_hash))
        except pgpipeline.HeadMoved:
            self._stale_heads += 1
            self._frontier = _Frontier()  # reload everything under the lock
            return None
        return batch

    def _append_locked(self, conn: sa.Connection, events: Sequence[Event]) -> _Batch:
        row = conn.execute(_LOCK_HEAD).one_or_none()
        if row is None:
            raise LedgerCorrupted("the ledger head row is missing (database not migrated?)")
        size, last_leaf = int(row.size), row.last_leaf_hash
        cached = self._frontier
        if cached.size == size and cached.last_leaf == last_leaf:
            frontier = cached.copy()
        else:
            frontier = self._load_frontier(conn, size, last_leaf)
        self._load_package_heads(conn, frontier, {e.package for e in events if e.package})
        batch = self._sequence(frontier, events)

        if conn.dialect.name == "postgresql" and len(batch.nodes) < COPY_THRESHOLD:
            moved = pgpipeline.write_batch(
                conn, batch.entries, batch.nodes, batch.packages,
                old_size=size, new_size=batch.after.size, last_leaf=batch.appended[-1].leaf_hash)
        else:
            _insert_rows(conn, tables.entries, batch.entries)
            _insert_rows(conn, tables.nodes, batch.nodes)
            if batch.packages:
                self._upsert_package_heads(conn, batch.packages)
            moved = conn.execute(_MOVE_HEAD, {"old_size": size, "new_size": batch.after.size,
                                              "new_leaf": batch.after.last_leaf}).rowcount
        if moved != 1:
            raise LedgerCorrupted("the ledger head moved while it was locked")
        return batch

    def _sequence(self, frontier: _Frontier, events: Sequence[Event]) -> _Batch:
        """Place ``events`` after ``frontier`` (which must hold every package head they need);
        ``frontier`` becomes the state after them."""
        time = format_time(self._clock())
        if frontier.last_time is not None and time < frontier.last_time:
            time = frontier.last_time  # never go back in time, whatever this host's clock says
        entry_rows: list[dict[str, object]] = []
        node_rows: list[dict[str, object]] = []
        package_rows: dict[str, dict[str, object]] = {}
        appended: list[AppendedEntry] = []
        for event in events:
            index = frontier.size
            package_head = frontier.packages.get(event.package) if event.package else None
            entry = event.to_entry(
                index=index, time=time,
                prev=frontier.last_leaf.hex() if frontier.last_leaf is not None else None,
                package_prev=package_head.last_leaf.hex() if package_head else None)
            leaf = entry.leaf_hash()
            entry_rows.append({
                "idx": index, "leaf_hash": leaf, "canonical": entry.canonical_bytes().decode(),
                "time": entry.timestamp, "package": entry.package, "action": entry.action.value,
                "outcome": entry.outcome.value, "authority": entry.actor.authority,
            })
            node_rows.extend(_push_leaf(frontier.stack, index, leaf))
            if entry.package is not None:
                frontier.packages[entry.package] = _PackageHead(index, leaf)
                frontier.packages.move_to_end(entry.package)
                previous = package_rows.get(entry.package)
                package_rows[entry.package] = {
                    "package": entry.package, "last_index": index, "last_leaf_hash": leaf,
                    "count": (previous["count"] if previous else 0) + 1,  # type: ignore[operator]
                    "expected_last_index": (previous["expected_last_index"] if previous
                                            else package_head.last_index if package_head
                                            else None),
                }
            frontier.size += 1
            frontier.last_leaf = leaf
            appended.append(AppendedEntry(index, leaf, entry))
        frontier.last_time = time
        return _Batch(entry_rows, node_rows, list(package_rows.values()), appended, frontier)

    def _upsert_package_heads(self, conn: sa.Connection, rows: list[dict[str, object]]) -> None:
        conn.execute(self._upsert_heads, [{k: v for k, v in row.items()
                                           if k != "expected_last_index"} for row in rows])

    @staticmethod
    def _load_frontier(conn: sa.Connection, size: int, last_leaf: bytes | None) -> _Frontier:
        frontier = _Frontier(size=size, last_leaf=last_leaf)
        if size == 0:
            return frontier
        keys = perfect_nodes(0, size)
        found = fetch_nodes(conn, keys)
        try:
            frontier.stack = [(level, index, found[(level, index)]) for level, index in keys]
        except KeyError as exc:
            raise LedgerCorrupted(f"perfect node {exc.args[0]} is missing") from None
        last = conn.execute(
            sa.select(tables.entries.c.canonical, tables.entries.c.leaf_hash)
            .where(tables.entries.c.idx == size - 1)
        ).one_or_none()
        if last is None or last.leaf_hash != last_leaf:
            raise LedgerCorrupted(f"entry {size - 1} does not match the ledger head")
        try:
            frontier.last_time = Entry.from_json_bytes(last.canonical.encode()).time
        except FormatError as exc:
            raise LedgerCorrupted(f"entry {size - 1} is not a valid entry: {exc}") from exc
        return frontier

    @staticmethod
    def _load_package_heads(conn: sa.Connection, frontier: _Frontier, packages: set[str]) -> None:
        missing = sorted(p for p in packages if p not in frontier.packages)
        if not missing:
            return
        rows = conn.execute(
            sa.select(tables.package_heads.c.package, tables.package_heads.c.last_index,
                      tables.package_heads.c.last_leaf_hash)
            .where(tables.package_heads.c.package.in_(missing))
        )
        for package, index, leaf in rows:
            frontier.packages[package] = _PackageHead(int(index), bytes(leaf))


def fetch_nodes(conn: sa.Connection, keys: Sequence[tuple[int, int]] | set[tuple[int, int]]
                ) -> dict[tuple[int, int], bytes]:
    """The stored perfect nodes ``(level, index) -> hash`` among ``keys``, in one query."""
    if not keys:
        return {}
    by_level: dict[int, list[int]] = {}
    for level, index in keys:
        by_level.setdefault(int(level), []).append(int(index))
    # One IN list per level keeps every disjunct a primary-key index scan. The statement is
    # plain SQL with integer literals (int() above: nothing else can reach it) because its shape
    # changes with every request: building and compiling it as an expression costs more than
    # the query itself.
    condition = " OR ".join(
        f"(level = {level} AND node_index IN ({','.join(map(str, sorted(indexes)))}))"
        for level, indexes in sorted(by_level.items()))
    rows = conn.exec_driver_sql(
        f"SELECT level, node_index, hash FROM {tables.nodes.name} WHERE {condition}")
    return {(level, index): bytes(value) for level, index, value in rows}


def _insert_rows(conn: sa.Connection, table: sa.Table, rows: list[dict[str, object]]) -> None:
    # Bulk batches (append_many) on PostgreSQL go through COPY, in the same transaction: one
    # stream instead of a statement per row. Everything else: one cached executemany.
    if len(rows) >= COPY_THRESHOLD and conn.dialect.name == "postgresql":
        columns = list(rows[0])
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        try:
            with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row([row[column] for column in columns])
        finally:
            cursor.close()
        return
    conn.execute(_INSERT[table.name], rows)


def _push_leaf(stack: list[tuple[int, int, bytes]], index: int, leaf: bytes
               ) -> list[dict[str, object]]:
    """Add leaf ``index`` to the right edge; return every perfect node it completes (level 0 up)."""
    created = [{"level": 0, "node_index": index, "hash": leaf}]
    stack.append((0, index, leaf))
    while len(stack) >= 2 and stack[-1][0] == stack[-2][0]:
        level, _, right = stack.pop()
        _, left_index, left = stack.pop()
        parent = (level + 1, left_index >> 1, node_hash(left, right))
        stack.append(parent)
        created.append({"level": parent[0], "node_index": parent[1], "hash": parent[2]})
    return created

