"""Ledger benchmark on a real PostgreSQL: append throughput vs plain INSERT+COMMIT, offline
verification speed, proof latency at 1M entries. Prints figures side by side; asserts nothing.

    .venv/bin/python -m bench.bench_ledger [--entries 1000000] [--seconds 6]

Uses the server at $EVX_BENCH_PG_URL (default postgresql+psycopg://postgres@127.0.0.1:5432/test)
to create a database of its own, dropped at the end.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from custody.entry import Actor
from custody.merkle import verify_consistency, verify_inclusion
from custody.verify import verify_export_lines
from service.db import make_engine, upgrade
from service.ledger import Event, Ledger

SERVER_URL = os.environ.get("EVX_BENCH_PG_URL",
                            "postgresql+psycopg://postgres@127.0.0.1:5432/test")
ORIGIN = "evidence-exchange.bench/log"
ACTOR = Actor("DE-BKA", "officer-4711", "investigator")
#: Alternating plain/ledger slices per cell of the throughput table.
SLICES = 6


def make_event(n: int) -> Event:
    """A typical entry: a download by an investigator, with a digest and a size."""
    return Event(actor=ACTOR, action="download.completed", outcome="allowed",
                 package=f"pkg-{n % 1000:04d}", item="disk-image.e01",
                 details={"sha256": "ab" * 32, "bytes_sent": 1_048_576 + n})


@contextmanager
def bench_database() -> Iterator[str]:
    """A fresh PostgreSQL database, dropped afterwards."""
    from tests.support.postgres import fresh_database

    with fresh_database(SERVER_URL, "evx_bench") as url:
        yield url


def open_bench_ledger(url: str, origin: str) -> Ledger:
    """Migrate the empty database at ``url``, add the plain baseline table ``bench_plain``, and
    open a ledger on it with a fresh key."""
    upgrade(url)
    with make_engine(url).begin() as conn:
        conn.exec_driver_sql("CREATE TABLE bench_plain (id bigserial PRIMARY KEY, "
                             "payload text NOT NULL)")
    return Ledger(make_engine(url, pool_size=8), Ed25519PrivateKey.generate(), origin=origin)


def run_threads(writers: int, seconds: float, work: Callable[[int, int], None]) -> int:
    """Run ``work(writer, n)`` in ``writers`` threads for ``seconds``; return calls completed."""
    counts = [0] * writers
    go = threading.Event()
    deadline = 0.0

    def loop(w: int) -> None:
        go.wait()
        n = 0
        while time.perf_counter() < deadline:
            work(w, n)
            n += 1
        counts[w] = n

    threads = [threading.Thread(target=loop, args=(w,)) for w in range(writers)]
    for thread in threads:
        thread.start()
    deadline = time.perf_counter() + seconds
    go.set()
    for thread in threads:
        thread.join()
    return sum(counts)


def side_by_side(url: str, ledger: Ledger, writers: int, seconds: float, row_bytes: int,
                 slices: int = SLICES, event: Callable[[int], Event] = make_event,
                 ) -> tuple[float, float, float]:
    """Plain rows/s (through a SQLAlchemy pool, see :func:`alternate`), ledger appends/s and
    mean entries per ledger commit at ``writers``."""
    rates, batch = alternate(url, ledger, writers, seconds, row_bytes, slices, event,
                             peers=("pool",))
    return rates["pool"], rates["ledger"], batch


def alternate(url: str, ledger: Ledger, writers: int, seconds: float, row_bytes: int,
              slices: int = SLICES, event: Callable[[int], Event] = make_event,
              peers: tuple[str, ...] = ("held", "pool"),
              ) -> tuple[dict[str, float], float]:
    """Rows/s of each plain peer and of the ledger ("ledger"), and mean entries per ledger
    commit, at ``writers``.

    The plain peers write single ``row_bytes`` rows, INSERT + COMMIT (synchronous commit):
    "held" on one psycopg connection held by each writer (the leanest peer: 2 round trips),
    "pool" through a SQLAlchemy engine as the service's own (pool pre-ping, BEGIN, INSERT,
    COMMIT: 4). They and the ledger run in alternating slices, ``seconds`` in total each, so
    that the host's drifting load and commit-flush latency weigh on all alike. ``event(n)``
    makes the n-th appended event.
    """
    import psycopg

    engine = make_engine(url, pool_size=writers + 2)
    dsn = sa.engine.make_url(url).set(drivername="postgresql").render_as_string(
        hide_password=False)
    held = [psycopg.connect(dsn) for _ in range(writers)] if "held" in peers else []
    payload = "x" * row_bytes
    table = sa.table("bench_plain", sa.column("payload"))

    def held_insert(w: int, n: int) -> None:
        held[w].execute("INSERT INTO bench_plain (payload) VALUES (%s)", (payload,))
        held[w].commit()

    def append(w: int, n: int) -> None:
        ledger.append(event(w * 10**6 + n))

    work: dict[str, Callable[[int, int], None]] = {
        "held": held_insert,
        "pool": lambda w, n: _insert_one(engine, table, payload),
        "ledger": append}
    done = dict.fromkeys((*peers, "ledger"), 0)
    batches0, items0 = ledger.append_stats
    try:
        for _ in range(slices):
            for name in done:
                done[name] += run_threads(writers, seconds / slices, work[name])
    finally:
        engine.dispose()
        for conn in held:
            conn.close()
    batches, items = ledger.append_stats
    return ({name: count / seconds for name, count in done.items()},
            (items - items0) / max(1, batches - batches0))


def _insert_one(engine: sa.Engine, table: sa.TableClause, payload: str) -> None:
    with engine.begin() as conn:
        conn.execute(table.insert().values(payload=payload))


def fill(ledger: Ledger, target: int, batch: int = 5_000) -> float:
    """Append until the tree has ``target`` entries (``append_many`` batches); entries/s."""
    start, size = time.perf_counter(), ledger.tree_size()
    first = size
    while size < target:
        count = min(batch, target - size)
        ledger.append_many([make_event(size + i) for i in range(count)])
        size += count
    return (size - first) / max(1e-9, time.perf_counter() - start)


def verification_rate(ledger: Ledger) -> tuple[int, float, float]:
    """Export the ledger to a file, verify it with custody; (entries, export/s, verify/s)."""
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        result = ledger.export(out)
        exported = time.perf_counter() - start
        out.seek(0)
        start = time.perf_counter()
        verified = verify_export_lines(out, ledger.verifier_key)
        checked = time.perf_counter() - start
    assert verified.tree_size == result.tree_size
    return result.tree_size, result.tree_size / exported, result.tree_size / checked


def proof_latency(ledger: Ledger, samples: int) -> tuple[float, float]:
    """Median milliseconds of inclusion and consistency proofs (each verified, not timed)."""
    size = ledger.tree_size()
    root = ledger.root(size)
    rng = random.Random(7)
    inclusion: list[float] = []
    leaves = {s.index: s.leaf_hash for s in ledger.entries(0, 1)}
    for _ in range(samples):
        index = rng.randrange(size)
        start = time.perf_counter()
        proof = ledger.inclusion_proof(index, size)
        inclusion.append(time.perf_counter() - start)
        leaf = leaves.get(index) or ledger.entry(index).leaf_hash
        verify_inclusion(leaf, index, size, proof, root)
    consistency: list[float] = []
    for _ in range(samples):
        size1 = rng.randrange(1, size)
        start = time.perf_counter()
        proof = ledger.consistency_proof(size1, size)
        consistency.append(time.perf_counter() - start)
        verify_consistency(size1, size, proof, ledger.root(size1), root)
    return statistics.median(inclusion) * 1e3, statistics.median(consistency) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--verify-entries", type=int, default=200_000)
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--samples", type=int, default=500)
    args = parser.parse_args()

    with bench_database() as url:
        ledger = open_bench_ledger(url, ORIGIN)
        try:
            sample = ledger.append(make_event(0))
            row_bytes = len(sample.entry.canonical_bytes()) + 32 + 60  # + hash + index columns
            print(f"PostgreSQL append throughput, synchronous_commit=on, {args.seconds:g}s per "
                  f"cell in {SLICES} alternating slices, entry row ~{row_bytes} bytes")
            print(f"{'writers':>7} {'plain, held conn/s':>18} {'plain, pool/s':>13} "
                  f"{'ledger append/s':>16} {'ratio held':>10} {'ratio pool':>10} "
                  f"{'entries/commit':>15}")
            for writers in (1, 4, 16):
                rates, batch = alternate(url, ledger, writers, args.seconds, row_bytes)
                held, pool, rate = rates["held"], rates["pool"], rates["ledger"]
                print(f"{writers:>7} {held:>18,.0f} {pool:>13,.0f} {rate:>16,.0f} "
                      f"{rate / held:>9.2f}x {rate / pool:>9.2f}x {batch:>15.1f}")
            print(f"(optimistic appends refused for a stale head: {ledger.stale_heads})")

            before = ledger.tree_size()
            filled = fill(ledger, args.verify_entries)
            count, export_rate, verify_rate = verification_rate(ledger)
            if count > before:
                print(f"\nfill through append_many: {filled:,.0f} entries/s")
            else:
                print(f"\n(no fill: the throughput phase already wrote {before:,} entries)")
            print(f"export of {count:,} entries: {export_rate:,.0f} entries/s; offline "
                  f"verification (custody.verify_export_lines): {verify_rate:,.0f} entries/s")

            filled = fill(ledger, args.entries)
            size = ledger.tree_size()
            inclusion, consistency = proof_latency(ledger, args.samples)
            print(f"\nproofs at {size:,} entries (median of {args.samples}, from stored nodes): "
                  f"inclusion {inclusion:.2f} ms, consistency {consistency:.2f} ms "
                  f"(fill {filled:,.0f} entries/s)")
        finally:
            ledger.close()


if __name__ == "__main__":
    main()
