"""Many processes x many threads append at once: one linear ledger, nothing lost or doubled."""

from __future__ import annotations

import multiprocessing
from collections import defaultdict
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from service.db import make_engine
from service.ledger import Ledger
from tests.ledger.helpers import ORIGIN, export_bytes, verify
from tests.ledger.workers import append_worker

pytestmark = pytest.mark.slow  # processes and threads appending at once


def _run(url: str, processes: int, threads: int, per_thread: int) -> None:
    key = Ed25519PrivateKey.generate()
    seed = key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    results: Any = ctx.Queue()
    workers = [ctx.Process(target=append_worker,
                           args=(url, seed, w, threads, per_thread, go, results))
               for w in range(processes)]
    for worker in workers:
        worker.start()
    go.set()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    acknowledged = [ack for acks, _ in outcomes for ack in acks]
    assert [err for _, errs in outcomes for err in errs] == []
    total = processes * threads * per_thread
    assert len(acknowledged) == total

    # Indexes 0..n-1, each acknowledged exactly once; each thread saw its appends in order.
    assert sorted(ack[3] for ack in acknowledged) == list(range(total))
    by_thread: dict[tuple[int, int], list[int]] = defaultdict(list)
    for w, t, _n, index, _ in sorted(acknowledged):
        by_thread[(w, t)].append(index)
    assert all(indexes == sorted(indexes) for indexes in by_thread.values())

    ledger = Ledger(make_engine(url), key, origin=ORIGIN, owns_engine=True)
    try:
        assert ledger.tree_size() == total
        verified = verify(export_bytes(ledger), ledger)  # global and package chains, root
        assert (verified.entry_count, verified.package_count) == (total, 4)
        stored = {s.index: s for s in ledger.entries(0, total)}
        for w, t, n, index, leaf in acknowledged:
            assert stored[index].leaf_hash.hex() == leaf
            assert stored[index].entry.details["n"] == (w * 1000 + t) * 1000 + n
    finally:
        ledger.close()


@pytest.mark.postgres
def test_processes_and_threads_on_postgresql(postgres_url: str) -> None:
    _run(postgres_url, processes=4, threads=4, per_thread=25)


def test_processes_and_threads_on_sqlite(sqlite_url: str) -> None:
    _run(sqlite_url, processes=2, threads=3, per_thread=20)
