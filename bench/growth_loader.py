"""Grow a real ledger by millions of entries in minutes, exactly as the service's appends would.

:meth:`service.ledger.sequencer.Sequencer.append` is one transaction per batch, a few thousand
entries a second at best: ten million would take hours. :class:`BulkLoader` does what the
append's sequencing does (``Sequencer._sequence``) -- the entry's fields in the order the event
gives them, ``prev`` and ``package_prev`` from the heads, the canonical bytes from custody's JCS
encoder, the RFC 9162 leaf hash, every perfect Merkle node a leaf completes (the sequencer's own
``_push_leaf``), the package heads -- on group-commit sized batches with their own times, and
streams the rows into the service's tables with ``COPY``, in large transactions. Each
transaction takes the head row lock, checks the head is where the loader left it and moves it,
as an append does. It skips only the ``Entry`` model's validation of what it builds (about four
fifths of the append's Python time); every ``CHECK_EVERY``-th entry is rebuilt through the
service's ``Event.to_entry`` and must come out byte for byte the same.

Python (one core) and PostgreSQL (COPY and index upkeep) run side by side: a thread builds the
next chunk while the previous one streams.

A benchmark tool, not a back door: ``bench_growth`` proves each load genuine afterwards with the
project's own verification (see there).
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import sqlalchemy as sa

from custody import jcs, merkle
from custody.entry import ENTRY_VERSION, format_time
from custody.merkle import CompactRange
from service.ledger import Event
from service.ledger.sequencer import Sequencer, _Frontier, _PackageHead, _push_leaf

#: Entries per loader transaction (one COPY each into entries and nodes).
CHUNK = 50_000
#: Entries per sequenced batch: what group commit puts in one transaction at 1-16 writers.
BATCH_SIZES = (1, 1, 2, 3, 4, 8)
#: Every this many entries, the loader's bytes are compared with ``Event.to_entry``'s.
CHECK_EVERY = 97
_ENTRY_COLUMNS = ("idx", "leaf_hash", "canonical", "time", "package", "action", "outcome",
                  "authority")
_ENTRY_TYPES = ("int8", "bytea", "text", "timestamptz", "varchar", "varchar", "varchar",
                "varchar")


@dataclass
class _Chunk:
    start: int
    prev_leaf: bytes | None
    entries: list[dict[str, Any]] = field(default_factory=list)
    nodes: list[dict[str, Any]] = field(default_factory=list)
    heads: dict[str, list[Any]] = field(default_factory=dict)  # package -> [index, leaf, added]
    end: int = 0
    last_leaf: bytes | None = None
    canonical_bytes: int = 0


@dataclass
class LoadResult:
    """What one :meth:`BulkLoader.load_to` did."""

    entries: int
    seconds: float
    canonical_bytes: int
    root: bytes  # RFC 9162 root over all entries, folded by custody.merkle.CompactRange

    @property
    def rate(self) -> float:
        return self.entries / max(1e-9, self.seconds)


class BulkLoader:
    """Appends events from ``events`` to the ledger at ``url`` until it holds a target size."""

    def __init__(self, url: str, events: Iterator[Event], *, seed: int = 11) -> None:
        self._url = url
        self._conninfo = sa.make_url(url).set(drivername="postgresql").render_as_string(
            hide_password=False)
        self._events = events
        self._rng = random.Random(seed)
        self._now = datetime(2026, 1, 1, tzinfo=UTC)
        self._engine = sa.create_engine(url)
        self.packages: list[str] = []

    def close(self) -> None:
        self._engine.dispose()

    def _tick(self) -> datetime:
        # Distinct microseconds, close together: 10 M entries span seconds of synthetic time, so
        # the appends measured afterwards (real clock) still move forward in time.
        self._now += timedelta(microseconds=self._rng.randrange(1, 4))
        return self._now

    def load_to(self, target: int, chunk: int = CHUNK) -> LoadResult:
        """Append until the ledger holds ``target`` entries; resumes from whatever the database
        holds (appends made in between through the service included)."""
        with psycopg.connect(self._conninfo) as pg:
            frontier, compact = self._resume(pg)
            first = frontier.size
            if frontier.last_time is not None:
                last = datetime.fromisoformat(frontier.last_time[:-1]).replace(tzinfo=UTC)
                self._now = max(self._now, last)
            chunks: queue.Queue[_Chunk | BaseException | None] = queue.Queue(maxsize=2)
            stop = threading.Event()
            producer = threading.Thread(target=self._produce,
                                        args=(frontier, target, chunk, chunks, stop), daemon=True)
            started = time.perf_counter()
            producer.start()
            canonical = 0
            try:
                while (item := chunks.get()) is not None:
                    if isinstance(item, BaseException):
                        raise item
                    self._write(pg, item)
                    for row in item.entries:
                        compact.append(row["leaf_hash"])
                    canonical += item.canonical_bytes
            finally:
                stop.set()
                producer.join()
            seconds = time.perf_counter() - started
        self.packages = list(frontier.packages)
        return LoadResult(frontier.size - first, seconds, canonical, compact.root())

    def _resume(self, pg: psycopg.Connection[Any]) -> tuple[_Frontier, CompactRange]:
        """The frontier as the service's locking path loads it (stored perfect nodes, the last
        entry), plus every package head."""
        size, last_leaf = pg.execute("SELECT size, last_leaf_hash FROM ledger_head").fetchone() \
            or (0, None)
        with self._engine.connect() as conn:
            frontier = Sequencer._load_frontier(conn, int(size),
                                                bytes(last_leaf) if last_leaf else None)
        for package, index, leaf in pg.execute(
                "SELECT package, last_index, last_leaf_hash FROM ledger_package_heads"):
            frontier.packages[package] = _PackageHead(int(index), bytes(leaf))
        pg.commit()
        compact = CompactRange()
        for level, _, node in frontier.stack:
            compact.append_subtree(level, node)
        return frontier, compact

    def _produce(self, frontier: _Frontier, target: int, size: int,
                 out: queue.Queue[_Chunk | BaseException | None], stop: threading.Event) -> None:
        try:
            events, rng, step = self._events, self._rng, 0
            while frontier.size < target and not stop.is_set():
                chunk = _Chunk(frontier.size, frontier.last_leaf)
                end = min(target, frontier.size + size)
                while frontier.size < end:
                    # A group-commit batch: its entries share the time of their transaction.
                    moment = self._tick()
                    stamp = format_time(moment)
                    for _ in range(min(rng.choice(BATCH_SIZES), end - frontier.size)):
                        step += 1
                        self._place(chunk, frontier, next(events), moment, stamp,
                                    check=step % CHECK_EVERY == 0)
                chunk.end, chunk.last_leaf = frontier.size, frontier.last_leaf
                out.put(chunk)
            out.put(None)
        except BaseException as exc:  # noqa: BLE001 -- handed to the writer thread, re-raised
            out.put(exc)

    @staticmethod
    def _place(chunk: _Chunk, frontier: _Frontier, event: Event, moment: datetime, stamp: str,
               *, check: bool) -> None:
        """Sequence ``event`` at ``frontier``: what ``Sequencer._sequence`` does for it, with
        the entry's dict built directly (no ``Entry`` validation, ~5x faster) and encoded by
        custody's JCS encoder; ``check`` rebuilds it through the service's ``Event.to_entry``
        and requires the same bytes."""
        index, actor, legal, token = frontier.size, event.actor, event.legal, event.token
        prev = frontier.last_leaf.hex() if frontier.last_leaf is not None else None
        package = event.package
        head = frontier.packages.get(package) if package is not None else None
        package_prev = head.last_leaf.hex() if head is not None else None
        action, outcome = str(event.action), str(event.outcome)
        canonical = jcs.dumps_fast({
            "v": ENTRY_VERSION, "index": index, "time": stamp,
            "actor": {"authority": actor.authority, "subject": actor.subject,
                      "role": actor.role.value},
            "action": action, "package": package, "item": event.item, "outcome": outcome,
            "reason": event.reason,
            "legal": None if legal is None else {"basis": legal.basis,
                                                 "request_reference": legal.request_reference},
            "details": dict(event.details), "prev": prev, "package_prev": package_prev,
            "token": None if token is None else {"kid": token.kid, "jkt": token.jkt,
                                                 "jti": token.jti},
        })
        leaf = merkle.leaf_hash(canonical)
        if check:
            entry = event.to_entry(index=index, time=stamp, prev=prev, package_prev=package_prev)
            if entry.canonical_bytes() != canonical or entry.timestamp != moment:
                raise AssertionError(f"loader entry {index} differs from Event.to_entry's")
        chunk.entries.append({
            "idx": index, "leaf_hash": leaf, "canonical": canonical.decode(), "time": moment,
            "package": package, "action": action, "outcome": outcome,
            "authority": actor.authority})
        chunk.canonical_bytes += len(canonical)
        chunk.nodes.extend(_push_leaf(frontier.stack, index, leaf))
        if package is not None:
            frontier.packages[package] = _PackageHead(index, leaf)
            added = chunk.heads.get(package)
            chunk.heads[package] = [index, leaf, 1 + (added[2] if added else 0)]
        frontier.size += 1
        frontier.last_leaf = leaf
        frontier.last_time = stamp

    @staticmethod
    def _write(pg: psycopg.Connection[Any], chunk: _Chunk) -> None:
        """One transaction: lock the head, check it, COPY the rows, merge package heads, move
        the head -- the locking append path's steps, with COPY for the rows."""
        with pg.transaction(), pg.cursor() as cur:
            row = cur.execute("SELECT size, last_leaf_hash FROM ledger_head WHERE id = 1 "
                              "FOR UPDATE").fetchone()
            if row is None or (row[0], row[1] and bytes(row[1])) != (chunk.start,
                                                                   chunk.prev_leaf):
                raise RuntimeError(f"ledger head moved under the loader: {row!r}")
            with cur.copy(f"COPY ledger_entries ({', '.join(_ENTRY_COLUMNS)}) "
                          "FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(_ENTRY_TYPES)
                for entry in chunk.entries:
                    copy.write_row([entry[c] for c in _ENTRY_COLUMNS])
            with cur.copy("COPY ledger_nodes (level, node_index, hash) "
                          "FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(("int2", "int8", "bytea"))
                for node in chunk.nodes:
                    copy.write_row((node["level"], node["node_index"], node["hash"]))
            cur.execute("CREATE TEMPORARY TABLE IF NOT EXISTS growth_heads (package text, "
                        "last_index bigint, last_leaf_hash bytea, count bigint) "
                        "ON COMMIT DELETE ROWS")
            with cur.copy("COPY growth_heads FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(("text", "int8", "bytea", "int8"))
                for package, (index, leaf, added) in chunk.heads.items():
                    copy.write_row((package, index, leaf, added))
            # The service's upsert (service/ledger/pgpipeline.py), over the chunk at once.
            cur.execute(
                "INSERT INTO ledger_package_heads (package, last_index, last_leaf_hash, count) "
                "SELECT package, last_index, last_leaf_hash, count FROM growth_heads "
                "ON CONFLICT (package) DO UPDATE SET last_index = EXCLUDED.last_index, "
                "last_leaf_hash = EXCLUDED.last_leaf_hash, "
                "count = ledger_package_heads.count + EXCLUDED.count")
            cur.execute("UPDATE ledger_head SET size = %s, last_leaf_hash = %s "
                        "WHERE id = 1 AND size = %s", (chunk.end, chunk.last_leaf, chunk.start))
            if cur.rowcount != 1:
                raise RuntimeError("ledger head did not move")
