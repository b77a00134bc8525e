"""Ledger growth on a real PostgreSQL: append rate, proof latency, checkpoint signing and database
bytes per entry as the ledger grows to 1 M and 10 M entries. Prints figures; asserts nothing
about time, only that the grown ledger is genuine.

    .venv/bin/python -m bench.bench_growth [--sizes 1000000,10000000] [--seconds 6] [--keep]

Creates a database ``evx_growth_*`` on $EVX_BENCH_PG_URL (default
postgresql+psycopg://postgres@127.0.0.1:5432/test), migrates it with the service's migrations,
and drops it at the end unless ``--keep``. At each size:

1. Grows the ledger with :class:`bench.growth_loader.BulkLoader` (the rows the service's
   sequencing writes, streamed with COPY; every 97th entry rebuilt by ``Event.to_entry`` and
   compared byte for byte; hub traffic from :mod:`bench.hub_traffic`), then
   ``VACUUM (ANALYZE)`` of the ledger tables, as autovacuum would on a live hub.
2. Proves the load genuine with the project's own code: the service signs a checkpoint from the
   stored nodes (checking it extends the previous one) and its root must equal the root the
   loader folded with custody's ``CompactRange``; up to ``--export-max`` entries the whole
   ledger is exported and verified with ``custody.verify.verify_export_lines`` (trusting the
   previous checkpoint); the previous checkpoint's consistency proof, ``--chains`` whole package
   chains (``custody.verify.verify_package``) and every sampled proof are verified with custody.
3. Measures, through the service's code: appends (``Ledger.append`` at 1 and 4 writers, side by
   side with plain INSERT+COMMIT as in ``bench_ledger``; each a ``package.read`` of a random
   existing package), inclusion and consistency proofs (p50/p99 of ``--proofs`` random ones),
   checkpoint signing (``--signings``, each after one append) -- then checks that the appends
   chained onto the loaded entries and verify.
4. Reports ``pg_total_relation_size`` of each ledger table (heap, indexes, TOAST) per entry.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

import sqlalchemy as sa

from bench.bench_ledger import SERVER_URL, open_bench_ledger, side_by_side
from bench.growth_loader import BulkLoader, LoadResult
from bench.hub_traffic import HubTraffic
from custody.checkpoint import Checkpoint
from custody.merkle import verify_consistency, verify_inclusion
from custody.verify import verify_consistency_from, verify_export_lines, verify_package
from service.db import make_engine
from service.ledger import Event, Ledger
from service.ledger.models import StoredCheckpoint

ORIGIN = "evidence-exchange.bench/growth"
LEDGER_TABLES = ("ledger_entries", "ledger_nodes", "ledger_package_heads", "ledger_checkpoints",
                 "ledger_head")
T = TypeVar("T")


def timed(call: Callable[[], T]) -> tuple[T, float]:
    """``(call(), seconds)``."""
    start = time.perf_counter()
    result = call()
    return result, time.perf_counter() - start


def percentiles(seconds: Sequence[float]) -> str:
    """``p50 … ms, p99 … ms`` of ``seconds``."""
    cuts = statistics.quantiles(seconds, n=100, method="inclusive")
    return f"p50 {cuts[49] * 1e3:.2f} ms, p99 {cuts[98] * 1e3:.2f} ms"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def verify_chains(ledger: Ledger, packages: Sequence[str], checkpoint: StoredCheckpoint) -> int:
    """Each package's whole custody chain, proven against ``checkpoint`` with custody's
    ``verify_package``; returns the entries verified."""
    key, verified = ledger.verifier_key, 0
    for package in packages:
        stored = [s for s in ledger.package_entries(package) if s.index < checkpoint.tree_size]
        proofs = ledger.inclusion_proofs([s.index for s in stored], checkpoint.tree_size)
        result = verify_package([(s.entry, p) for s, p in zip(stored, proofs, strict=True)],
                                checkpoint.note, key, package)
        verified += len(result.entries)
    return verified


def proof_latency(ledger: Ledger, checkpoint: StoredCheckpoint, samples: int,
                  rng: random.Random) -> tuple[list[float], list[float]]:
    """Seconds per inclusion and per consistency proof from ``Ledger`` (each verified with custody
    against the signed checkpoint, untimed; each sampled entry's ``prev`` link checked too)."""
    size, root = checkpoint.tree_size, checkpoint.root
    inclusion: list[float] = []
    for _ in range(samples):
        index = rng.randrange(1, size)
        proof, seconds = timed(lambda i=index: ledger.inclusion_proof(i, size))  # type: ignore[misc]
        inclusion.append(seconds)
        stored = ledger.entry(index)  # strict: canonical text, leaf hash and tree leaf agree
        verify_inclusion(stored.entry.leaf_hash(), index, size, proof, root)
        if stored.entry.prev != ledger.entry(index - 1).leaf_hash.hex():
            raise AssertionError(f"entry {index} does not chain onto entry {index - 1}")
    consistency: list[float] = []
    for _ in range(samples):
        size1 = rng.randrange(1, size)
        proof, seconds = timed(lambda s=size1: ledger.consistency_proof(s, size))  # type: ignore[misc]
        consistency.append(seconds)
        verify_consistency(size1, size, proof, ledger.root(size1), root)
    return inclusion, consistency


def table_sizes(engine: sa.Engine) -> list[tuple[str, int, int, int]]:
    """``(table, heap, indexes, total)`` bytes of each ledger table (total includes TOAST)."""
    with engine.connect() as conn:
        return [(name, *conn.execute(sa.text(
            "SELECT pg_relation_size(c), pg_indexes_size(c), pg_total_relation_size(c) "
            "FROM CAST(:t AS regclass) AS c"), {"t": name}).one()) for name in LEDGER_TABLES]


def index_sizes(engine: sa.Engine, table: str) -> list[tuple[str, int]]:
    with engine.connect() as conn:
        return [(str(name), int(size)) for name, size in conn.execute(sa.text(
            "SELECT indexrelid::regclass, pg_relation_size(indexrelid) FROM pg_index "
            "WHERE indrelid = CAST(:t AS regclass) ORDER BY 2 DESC"), {"t": table})]


class Stage:
    """One size of the growth run: load, prove, measure, report."""

    def __init__(self, args: argparse.Namespace, url: str, ledger: Ledger, loader: BulkLoader,
                 traffic: HubTraffic) -> None:
        self.args, self.url, self.ledger, self.loader = args, url, ledger, loader
        self.traffic = traffic
        self.engine = make_engine(url)
        self.rng = random.Random(3)

    def run(self, target: int, previous: StoredCheckpoint | None) -> StoredCheckpoint:
        print(f"\n=== growing to {target:,} entries (load average {load_average()}) ===")
        loaded = self.loader.load_to(target, self.args.chunk)
        print(f"bulk load: {loaded.entries:,} entries in {loaded.seconds:,.0f} s "
              f"({loaded.rate:,.0f} entries/s; canonical entries "
              f"{loaded.canonical_bytes / max(1, loaded.entries):.0f} bytes on average; "
              f"{len(self.loader.packages):,} packages; load average {load_average()})")
        _, vacuum = timed(self.vacuum)
        print(f"VACUUM (ANALYZE) of the ledger tables: {vacuum:.0f} s")
        checkpoint = self.prove_loaded(loaded, previous)
        self.measure(checkpoint)
        return self.report()

    def vacuum(self) -> None:
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for name in LEDGER_TABLES:
                conn.exec_driver_sql(f"VACUUM (ANALYZE) {name}")

    def prove_loaded(self, loaded: LoadResult,
                     previous: StoredCheckpoint | None) -> StoredCheckpoint:
        ledger, key = self.ledger, self.ledger.verifier_key
        checkpoint, signing = timed(ledger.sign_checkpoint)
        signed = Checkpoint.verify(checkpoint.note, key)
        if signed.root != loaded.root:
            raise AssertionError("the stored nodes' root differs from the loader's CompactRange")
        said = [f"checkpoint of {signed.size:,} signed by the service from stored nodes in "
                f"{signing * 1e3:.0f} ms, root equal to custody's CompactRange over the leaves"]
        trusted = Checkpoint.verify(previous.note, key) if previous else None
        if trusted is not None:
            verify_consistency_from(trusted, checkpoint.note,
                                    ledger.consistency_proof(trusted.size, signed.size), key)
            said.append(f"consistent with the checkpoint of {trusted.size:,} (custody)")
        if signed.size <= self.args.export_max:
            with tempfile.TemporaryFile() as out:
                written, export = timed(lambda: ledger.export_with(out, checkpoint.note))
                out.seek(0)
                result, check = timed(lambda: verify_export_lines(
                    out, key, trusted_checkpoint=trusted))
            if result.tree_size != written or written != signed.size:
                raise AssertionError("export and verification disagree on the size")
            said.append(f"whole export verified by custody.verify_export_lines "
                        f"(export {written / export:,.0f} entries/s, verification "
                        f"{written / check:,.0f} entries/s)")
        else:
            said.append(f"no whole export above --export-max {self.args.export_max:,}")
        packages = self.rng.sample(self.loader.packages, self.args.chains)
        chained = verify_chains(ledger, packages, checkpoint)
        said.append(f"{len(packages)} whole package chains ({chained} entries) verified by "
                    "custody.verify_package")
        print("genuine: " + ";\n         ".join(said))
        return checkpoint

    def read_event(self) -> Callable[[int], Event]:
        packages, traffic = self.loader.packages, self.traffic
        return lambda n: traffic.read(packages[(n * 2_654_435_761) % len(packages)])

    def measure(self, loaded: StoredCheckpoint) -> None:
        ledger, args = self.ledger, self.args
        inclusion, consistency = proof_latency(ledger, loaded, args.proofs, self.rng)
        print(f"proofs at {loaded.tree_size:,} ({args.proofs} each, Ledger.inclusion_proof / "
              f"consistency_proof, verified with custody): inclusion {percentiles(inclusion)}; "
              f"consistency {percentiles(consistency)}")
        print(f"appends (Ledger.append of package.read on random existing packages) against plain "
              f"INSERT+COMMIT, {args.seconds:g} s per cell in alternating slices; "
              f"load average {load_average()}")
        print(f"{'writers':>7} {'plain INSERT+COMMIT/s':>22} {'ledger append/s':>16} "
              f"{'ratio':>6} {'entries/commit':>15}")
        for writers in (1, 4):
            plain, rate, batch = side_by_side(self.url, ledger, writers, args.seconds,
                                              row_bytes=700, event=self.read_event())
            print(f"{writers:>7} {plain:>22,.0f} {rate:>16,.0f} {rate / plain:>5.2f}x "
                  f"{batch:>15.1f}")
        signings: list[float] = []
        event = self.read_event()
        for n in range(args.signings):
            ledger.append(event(self.rng.randrange(10**9) + n))
            signings.append(timed(ledger.sign_checkpoint)[1])
        print(f"checkpoint signing ({args.signings}, each after one append): "
              f"{percentiles(signings)}")
        self.prove_chained(loaded)

    def prove_chained(self, loaded: StoredCheckpoint) -> None:
        """The appends made through the service sit on the loaded entries and verify."""
        ledger, key = self.ledger, self.ledger.verifier_key
        latest = ledger.sign_checkpoint()
        verify_consistency_from(Checkpoint.verify(loaded.note, key), latest.note,
                                ledger.consistency_proof(loaded.tree_size, latest.tree_size), key)
        first = ledger.entry(loaded.tree_size)
        if first.entry.prev != ledger.entry(loaded.tree_size - 1).leaf_hash.hex():
            raise AssertionError("the first appended entry does not chain onto the loaded ones")
        appended = ledger.entries(loaded.tree_size, 200)
        packages = sorted({s.entry.package for s in appended if s.entry.package})[:10]
        count = verify_chains(ledger, packages, latest)
        print(f"chained on: {latest.tree_size - loaded.tree_size:,} entries appended through the "
              f"service; checkpoint {latest.tree_size:,} consistent with {loaded.tree_size:,}; "
              f"{len(packages)} package chains running through loaded and appended entries "
              f"({count} entries) verified")

    def report(self) -> StoredCheckpoint:
        latest = self.ledger.sign_checkpoint()
        size = latest.tree_size
        print(f"database bytes at {size:,} entries (load average {load_average()}):")
        print(f"{'table':<22} {'heap':>14} {'indexes':>14} {'total':>14} {'bytes/entry':>12}")
        total = 0
        for name, heap, indexes, whole in table_sizes(self.engine):
            total += whole
            print(f"{name:<22} {heap:>14,} {indexes:>14,} {whole:>14,} {whole / size:>12,.1f}")
        print(f"{'all ledger tables':<22} {'':>14} {'':>14} {total:>14,} {total / size:>12,.1f}")
        for name, bytes_ in index_sizes(self.engine, "ledger_entries"):
            print(f"  index {name:<38} {bytes_:>14,} {bytes_ / size:>8,.1f} bytes/entry")
        return latest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000000,10000000",
                        help="comma-separated ledger sizes to grow to, ascending")
    parser.add_argument("--seconds", type=float, default=6.0, help="per append cell")
    parser.add_argument("--proofs", type=int, default=300)
    parser.add_argument("--signings", type=int, default=30)
    parser.add_argument("--chains", type=int, default=20)
    parser.add_argument("--export-max", type=int, default=1_000_000,
                        help="export and verify the whole ledger up to this size")
    parser.add_argument("--chunk", type=int, default=50_000, help="entries per load transaction")
    parser.add_argument("--keep", action="store_true", help="keep the database")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]

    from tests.support.postgres import create_database, drop_database

    print(f"disk: {shutil.disk_usage('/').free / 2**30:.1f} GiB free; load average "
          f"{load_average()}")
    url = create_database(SERVER_URL, "evx_growth")
    traffic = HubTraffic()
    loader = BulkLoader(url, iter(traffic))
    ledger: Ledger | None = None
    try:
        ledger = open_bench_ledger(url, ORIGIN)
        stage = Stage(args, url, ledger, loader, traffic)
        checkpoint: StoredCheckpoint | None = None
        for size in sizes:
            checkpoint = stage.run(size, checkpoint)
        print(f"\ndisk: {shutil.disk_usage('/').free / 2**30:.1f} GiB free; load average "
              f"{load_average()}")
    finally:
        if ledger is not None:
            ledger.close()
        loader.close()
        if args.keep:
            print(f"kept {url}")
        else:
            drop_database(SERVER_URL, url)


if __name__ == "__main__":
    main()
