"""Group commit: concurrent appends in one process are sequenced and committed together.

Callers hand their items to a :class:`GroupCommitter` and block; one writer thread takes every
item waiting (up to ``max_batch``), in arrival order, and commits them in one transaction through
the ``commit`` callable. Each caller is released with its own results only after that transaction
committed, or with the exception that made it fail. While one batch commits, the next gathers --
so under load the cost of a durable commit is shared instead of paid once per entry, without any
added waiting when the ledger is idle.
"""

from __future__ import annotations

import os
import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from service.ledger.errors import LedgerUnavailable

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class _Request(Generic[T, R]):
    items: Sequence[T]
    done: threading.Event = field(default_factory=threading.Event)
    results: list[R] | None = None
    error: BaseException | None = None


class GroupCommitter(Generic[T, R]):
    """Serializes ``commit`` calls in one writer thread, batching concurrent submissions.

    ``commit(items)`` must return one result per item, in order, or raise; it runs in the writer
    thread only, so it never runs concurrently with itself within this process.
    """

    def __init__(self, commit: Callable[[list[T]], list[R]], *, max_batch: int = 512,
                 name: str = "ledger-writer") -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._commit = commit
        self._max_batch = max_batch
        self._name = name
        self._queue: deque[_Request[T, R]] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._pid = 0
        self._batches = 0
        self._items = 0

    @property
    def stats(self) -> tuple[int, int]:
        """``(batches, items)`` committed so far by this process (for benchmarks and metrics)."""
        return self._batches, self._items

    def submit(self, items: Sequence[T]) -> list[R]:
        """Commit ``items`` (kept together, in order, in one transaction); block until durable.

        Raises whatever ``commit`` raised for the batch, or :class:`LedgerUnavailable` if this
        committer is closed.
        """
        if not items:
            return []
        request: _Request[T, R] = _Request(items)
        with self._cond:
            if self._closed:
                raise LedgerUnavailable("the ledger writer is closed")
            self._ensure_writer()
            self._queue.append(request)
            self._cond.notify()
        request.done.wait()
        if request.error is not None:
            raise request.error
        assert request.results is not None
        return request.results

    def close(self) -> None:
        """Stop the writer after the batches already queued; later submissions fail."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    def _ensure_writer(self) -> None:
        # A forked child inherits the object but not the thread: start a writer of its own.
        if self._thread is None or self._pid != os.getpid() or not self._thread.is_alive():
            self._pid = os.getpid()
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def _take_batch(self) -> list[_Request[T, R]] | None:
        with self._cond:
            while not self._queue:
                if self._closed:
                    return None
                self._cond.wait()
            batch = [self._queue.popleft()]
            count = len(batch[0].items)
            while self._queue and count + len(self._queue[0].items) <= self._max_batch:
                request = self._queue.popleft()
                batch.append(request)
                count += len(request.items)
            return batch

    def _run(self) -> None:
        while (batch := self._take_batch()) is not None:
            items = [item for request in batch for item in request.items]
            try:
                results = self._commit(items)
                if len(results) != len(items):
                    raise RuntimeError("commit returned a result count unlike its item count")
            except BaseException as exc:  # noqa: BLE001 - handed to every waiting caller
                for request in batch:
                    request.error = exc
                    request.done.set()
                continue
            self._batches += 1
            self._items += len(items)
            start = 0
            for request in batch:
                request.results = results[start:start + len(request.items)]
                start += len(request.items)
                request.done.set()
