"""Run transfers N at a time (``--parallel``): daemon worker threads, results handed back to the
calling thread in completion order, the first failure stops new work.

Worker threads are daemons so that Ctrl-C ends the command at once; an interrupted upload or
download resumes on the next run.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")
DEFAULT_PARALLEL = 4
_POLL_S = 0.2


def run_parallel(items: Sequence[T], work: Callable[[T], R], parallel: int,
                 on_done: Callable[[T, R], None]) -> None:
    """Call ``work(item)`` for every item on ``parallel`` threads and ``on_done(item, result)``
    on this thread as each finishes. After a failure no new item is started; the ones running
    finish, then the first exception is raised.

    Raises:
        ValueError: ``parallel`` below 1.
        BaseException: the first exception ``work`` raised.
    """
    if parallel < 1:
        raise ValueError("parallel must be >= 1")
    todo: queue.SimpleQueue[T] = queue.SimpleQueue()
    for item in items:
        todo.put(item)
    done: queue.SimpleQueue[tuple[T, R | None, BaseException | None]] = queue.SimpleQueue()
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            try:
                item = todo.get_nowait()
            except queue.Empty:
                return
            try:
                done.put((item, work(item), None))
            except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
                stop.set()
                done.put((item, None, exc))

    threads = [threading.Thread(target=worker, name=f"transfer-{i}", daemon=True)
               for i in range(min(parallel, len(items)))]
    for thread in threads:
        thread.start()
    first_error: BaseException | None = None
    remaining = len(items)
    while remaining:
        try:
            item, result, error = done.get(timeout=_POLL_S)
        except queue.Empty:
            if not any(t.is_alive() for t in threads) and done.empty():
                break  # stopped after a failure: the rest was never started
            continue
        remaining -= 1
        if error is not None:
            first_error = first_error or error
        elif first_error is None:
            on_done(item, result)  # type: ignore[arg-type]
    if first_error is not None:
        raise first_error
