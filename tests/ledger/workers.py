"""Code run in separate (spawned) processes by the concurrency tests."""

from __future__ import annotations

import threading
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event as EventFlag
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from service.db import make_engine
from service.ledger import Ledger
from tests.ledger.helpers import ORIGIN, event

PACKAGES = ("pkg-0", "pkg-1", "pkg-2", None, "pkg-3")


def append_worker(url: str, key_seed: bytes, worker: int, threads: int, per_thread: int,
                  go: EventFlag, results: Queue[Any]) -> None:
    """Append ``threads * per_thread`` events from ``threads`` threads once ``go`` is set; put
    every acknowledged ``(worker, thread, n, index, leaf_hex)`` (or an error text) on
    ``results``."""
    ledger = Ledger(make_engine(url), Ed25519PrivateKey.from_private_bytes(key_seed),
                    origin=ORIGIN, owns_engine=True)
    acknowledged: list[tuple[int, int, int, int, str]] = []
    errors: list[str] = []
    lock = threading.Lock()

    def run(thread: int) -> None:
        go.wait()
        for n in range(per_thread):
            number = (worker * 1000 + thread) * 1000 + n
            try:
                recorded = ledger.append(event(number, package=PACKAGES[number % 5]))
            except Exception as exc:  # noqa: BLE001 - reported to the test
                with lock:
                    errors.append(f"{type(exc).__name__}: {exc}")
                continue
            with lock:
                acknowledged.append((worker, thread, n, recorded.index, recorded.leaf_hash.hex()))

    pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    ledger.close()
    results.put((acknowledged, errors))
