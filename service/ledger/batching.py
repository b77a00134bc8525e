"""Group commit: concurrent appends in one process are sequenced and committed together.

Leader/follower, without a writer thread of its own: a caller that finds no batch in flight
becomes the *leader*. It takes every request waiting (up to ``max_batch`` items; its own is
first), in arrival order, commits them in one transaction through the ``commit`` callable on its
own thread, and releases each other caller with its own results -- only after that transaction
committed -- or with the exception that made it fail. Callers arriving meanwhile (*followers*)
queue and block; when the leader is done it promotes the first of them, which commits everything
queued by then as the next batch. So an idle ledger costs no thread hand-off at all, and under
load the cost of a durable commit is shared instead of paid once per entry.

A leader may *gather* for a bounded moment before it takes the batch: when the callers of the
batch just committed are not queued again yet, it waits for them -- at most ``GATHER_FRACTION`` of
the last commit's duration and never more than ``MAX_GATHER_SECONDS`` -- so that closed-loop
writers do not settle into half-size batches that alternate (4 writers committing as two pairs:
two commits where one would do). A lone writer never waits: its previous batch was its own.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from service.ledger.errors import LedgerUnavailable

T = TypeVar("T")
R = TypeVar("R")

#: Longest a leader gathers callers it expects back before committing (seconds).
MAX_GATHER_SECONDS = 0.001
#: ... and at most this fraction of the last commit's duration: the commit latency a gather may
#: add is bounded by the commits it saves, on a fast disk and a slow one alike.
GATHER_FRACTION = 0.25


@dataclass
class _Request(Generic[T, R]):
    items: Sequence[T]
    thread: int = field(default_factory=threading.get_ident)
    # Set when the request is finished (results or error) or promoted to lead the next batch.
    wake: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    results: list[R] | None = None
    error: BaseException | None = None


class GroupCommitter(Generic[T, R]):
    """Serializes ``commit`` calls within the process, batching concurrent submissions.

    ``commit(items)`` must return one result per item, in order, or raise. It runs on the thread
    of whichever caller leads the batch, and never concurrently with itself in this process.
    """

    def __init__(self, commit: Callable[[list[T]], list[R]], *, max_batch: int = 512) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._commit = commit
        self._max_batch = max_batch
        self._batches = 0
        self._items = 0
        self._reset_state()
        # A forked child inherits the state but not the threads: a leader of the parent would
        # never finish there, so the child starts idle and empty.
        os.register_at_fork(after_in_child=_resetter(weakref.ref(self)))

    def _reset_state(self) -> None:
        self._mutex = threading.Lock()  # guards the queue, the leader flag and closing
        self._idle = threading.Condition(self._mutex)  # no leader: the queue is empty
        self._arrived = threading.Condition(self._mutex)  # a gathering leader is waiting
        self._gathering = False
        self._last_threads: frozenset[int] = frozenset()  # callers of the last batch
        self._last_commit_seconds = 0.0
        self._queue: deque[_Request[T, R]] = deque()
        self._leading = False
        self._closed = False

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
        with self._mutex:
            if self._closed:
                raise LedgerUnavailable("the ledger writer is closed")
            self._queue.append(request)
            # Invariant: whenever no leader is active, the queue is empty; so a caller that
            # finds none is alone in the queue and leads.
            request.lead = not self._leading
            self._leading = True
            if self._gathering:
                self._arrived.notify()
        if not request.lead:
            request.wake.wait()
        if request.lead:
            self._lead()
        if request.error is not None:
            raise request.error
        assert request.results is not None
        return request.results

    def _gather(self) -> None:
        """Wait (mutex held) a bounded moment for the last batch's callers to queue again."""
        wait = min(MAX_GATHER_SECONDS, GATHER_FRACTION * self._last_commit_seconds)
        if wait <= 0:
            return
        deadline = time.perf_counter() + wait
        self._gathering = True
        try:
            # A lone writer never waits: its last batch was its own, and it is queued.
            while (self._last_threads - {r.thread for r in self._queue}
                   and sum(len(r.items) for r in self._queue) < self._max_batch):
                remaining = deadline - time.perf_counter()
                if remaining <= 0:
                    return
                self._arrived.wait(remaining)
        finally:
            self._gathering = False

    def close(self) -> None:
        """Refuse new submissions and wait until the batches already queued are committed."""
        with self._mutex:
            self._closed = True
            while self._leading:
                self._idle.wait()

    def _lead(self) -> None:
        """Commit the next batch (its first request is the caller's), then hand over."""
        with self._mutex:
            self._gather()
            batch = [self._queue.popleft()]
            count = len(batch[0].items)
            while self._queue and count + len(self._queue[0].items) <= self._max_batch:
                request = self._queue.popleft()
                batch.append(request)
                count += len(request.items)
        items = [item for request in batch for item in request.items]
        started = time.perf_counter()
        try:
            results = self._commit(items)
            if len(results) != len(items):
                raise RuntimeError("commit returned a result count unlike its item count")
        except BaseException as exc:  # noqa: BLE001 - handed to every caller of the batch
            for request in batch:
                request.error = exc
        else:
            self._batches += 1
            self._items += len(items)
            start = 0
            for request in batch:
                request.results = results[start:start + len(request.items)]
                start += len(request.items)
        finally:
            # Whatever happened to this batch, the next one must get a leader: the first caller
            # that queued meanwhile, or nobody (then the next submit leads).
            with self._mutex:
                self._last_commit_seconds = time.perf_counter() - started
                self._last_threads = frozenset(request.thread for request in batch)
                successor = self._queue[0] if self._queue else None
                if successor is None:
                    self._leading = False
                    self._idle.notify_all()
            if successor is not None:
                successor.lead = True
                successor.wake.set()
            for request in batch[1:]:
                request.wake.set()


def _resetter(ref: weakref.ref[GroupCommitter[T, R]]) -> Callable[[], None]:
    def reset() -> None:
        committer = ref()
        if committer is not None:
            committer._reset_state()
    return reset
