"""Checking a long export's entry lines in worker processes; the ledger walk stays in the caller.

The costly part of verifying an entry line -- parsing, validating, hashing -- does not depend on
other lines, so chunks of :data:`CHUNK_LINES` lines go to workers
(:func:`custody.canonical_line.check_entry_run`), at most a few chunks ahead of the reader so
memory stays bounded.  Results are taken back *in order*: the links from the ledger so far into
each run (first index, first ``prev``, each package's first ``package_prev``) are checked, the
leaf hashes are appended to the running root (a whole aligned chunk as one perfect subtree),
and every line a worker did not vouch for is read one by one the usual way
(``ExportReading.feed``) -- so what is accepted, and the first error raised, are exactly those
of a single-process verification.

Workers are started with ``spawn``: safe in a threaded caller, and they need only this package.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ProcessPoolExecutor
from itertools import islice
from typing import TYPE_CHECKING

from custody.canonical_line import CheckedRun, check_entry_run

if TYPE_CHECKING:
    from custody._walk import ExportReading

__all__ = ["CHUNK_LINES", "feed_in_parallel"]

# 2**12 lines (~2 MiB of a typical export) per task: long enough that sending lines and results
# between processes is cheap next to checking them, a power of two so that a whole chunk is one
# node of the Merkle tree.
CHUNK_LINES = 1 << 12
# Chunks in flight per worker: keeps workers busy while the caller applies results, and bounds
# the memory held to a few MiB whatever the length of the export.
_AHEAD_PER_WORKER = 2


def feed_in_parallel(reading: ExportReading, lines: Iterable[bytes | str], workers: int) -> None:
    """Feed all ``lines`` into ``reading`` as ``reading.feed`` would, checking entry lines in
    workers.

    Exports of at most one chunk after the header are read in this process (no workers).

    Raises:
        Whatever ``reading.feed`` raises, for the first bad line.
    """
    source = iter(lines)
    for line in islice(source, 1):  # the header
        reading.feed(line)
    first = list(islice(source, CHUNK_LINES))
    if len(first) < CHUNK_LINES:
        for line in first:
            reading.feed(line)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        pending: deque[tuple[list[bytes | str], Future[CheckedRun]]] = deque()
        start = 0  # ledger position of the next chunk if every line so far is an entry
        chunk = first
        try:
            while chunk or pending:
                while chunk and len(pending) < workers * _AHEAD_PER_WORKER:
                    pending.append((chunk, pool.submit(check_entry_run, start, chunk)))  # type: ignore[arg-type]
                    start += len(chunk)
                    chunk = list(islice(source, CHUNK_LINES))
                lines_of_run, future = pending.popleft()
                _apply(reading, lines_of_run, future.result())
        except BaseException:
            for _, future in pending:
                future.cancel()
            raise


def _apply(reading: ExportReading, lines: list[bytes | str], run: CheckedRun) -> None:
    taken = 0
    if run.entries and reading.note is None and reading.walk.add_checked_run(run):
        taken = run.entries
        reading.number += taken
    feed = reading.feed
    for line in lines[taken:] if taken else lines:
        feed(line)
