"""Overlap producing and consuming a byte stream with one background thread.

Hashing, AES-GCM and file/socket I/O all release the GIL, so on two cores sealing one chunk while
the previous one is written (or reading the next chunk while this one is decrypted) nearly
doubles throughput. The queue is bounded, so memory stays at ``depth`` pieces.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator

_DONE = object()
_POLL_S = 0.1


def read_ahead(pieces: Iterable[bytes], depth: int) -> Iterator[bytes]:
    """Yield what ``pieces`` yields, producing up to ``depth`` pieces ahead in a daemon thread.

    ``pieces`` is iterated (and closed) in that thread; an exception it raises is re-raised here,
    in order, after the pieces before it. Closing this iterator early stops the producer.
    With ``depth`` 0 ``pieces`` is returned as an iterator, unchanged.

    Raises:
        ValueError: negative ``depth``.
    """
    if depth < 0:
        raise ValueError("depth must be >= 0")
    if depth == 0:
        return iter(pieces)
    return _read_ahead(iter(pieces), depth)


def _read_ahead(source: Iterator[bytes], depth: int) -> Iterator[bytes]:
    slots: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: object) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for piece in source:
                if not offer(piece):
                    return
            offer(_DONE)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer
            offer(exc)
        finally:
            close = getattr(source, "close", None)
            if close is not None:
                close()

    worker = threading.Thread(target=produce, name="storage-read-ahead", daemon=True)
    worker.start()
    try:
        while True:
            item = slots.get()
            if item is _DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        stop.set()
        # the generator may be finalized by the garbage collector on the worker thread itself
        if threading.current_thread() is not worker:
            worker.join()
