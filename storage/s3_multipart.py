"""Upload a stream of unknown length to S3 with a fixed set of part buffers, reused.

The minio SDK's ``put_object`` cuts a stream of unknown length into parts by reading each part
plus one byte, then joining and slicing: three fresh ``part_size`` byte strings per part, made
and freed on several threads. With 8 MiB parts glibc serves them from its arenas, so a server
with four uploads at once grew by ~240 MiB of RSS for ~130 MiB of live bytes (tracemalloc).

Here an upload fills one bytearray of its own from the chunk iterator (one copy per byte, as the
join before it) and sends parts from it as ``memoryview``s straight to the socket. To keep up to
``parallel`` parts in flight while the next one fills, it borrows more buffers from the store's
``SpareParts`` without waiting -- when none is free it waits for its own oldest part and refills
that buffer -- and returns them when it ends. So memory is one part per upload plus ``parallel``
parts per store, however many uploads run at once; a lone upload runs at full parallelism.

The SDK's request calls (``_create_multipart_upload``, ``_upload_part``,
``_complete_multipart_upload``, ``_abort_multipart_upload``, ``_put_object``) are private;
``tests/storage/test_s3_multipart.py`` checks their signatures, so an SDK change fails a test
rather than an upload.
"""

from __future__ import annotations

import contextlib
import threading
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar, cast

import urllib3
from minio import Minio
from minio.datatypes import Part
from minio.error import MinioException

from storage.errors import BackendUnavailable

MAX_PARTS = 10_000  # S3's limit on the parts of one upload
# Anything the transport can raise: minio's own errors, urllib3's, and socket-level OSErrors.
TRANSPORT_ERRORS = (MinioException, urllib3.exceptions.HTTPError, OSError)
_CONTENT_TYPE = "application/octet-stream"
_T = TypeVar("_T")


class PartSource:
    """Copies an iterator of chunks into caller-owned buffers.

    Empty chunks are skipped, so "no bytes left" is known exactly: :meth:`exhausted` looks one
    chunk ahead and keeps it for the next :meth:`fill`. Exceptions raised by the iterator
    propagate unchanged from either method.
    """

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = memoryview(b"")
        self.total = 0

    def _pull(self) -> bool:
        for chunk in self._chunks:
            if chunk:
                self._pending = memoryview(chunk).cast("B")
                return True
        return False

    def fill(self, buffer: bytearray) -> int:
        """Copy the next ``len(buffer)`` bytes (fewer only at the end) into ``buffer``; return
        how many were copied."""
        view = memoryview(buffer)
        have = 0
        while have < len(view) and (self._pending or self._pull()):
            take = min(len(self._pending), len(view) - have)
            view[have:have + take] = self._pending[:take]
            self._pending = self._pending[take:]
            have += take
        self.total += have
        return have

    def first_part(self, part_size: int) -> bytearray:
        """The next ``part_size`` bytes (fewer only at the end) in a new buffer grown as they
        come, so a small object never costs a whole part of memory."""
        buffer = bytearray()
        while len(buffer) < part_size and (self._pending or self._pull()):
            take = min(len(self._pending), part_size - len(buffer))
            buffer += self._pending[:take]
            self._pending = self._pending[take:]
        self.total += len(buffer)
        return buffer

    def exhausted(self) -> bool:
        """Whether the iterator has no bytes left (reads ahead by at most one chunk)."""
        return not self._pending and not self._pull()


class SpareParts:
    """Part buffers beyond each upload's own, shared by all uploads of one store and reused
    (kept once made: at most ``count`` parts of memory while idle)."""

    def __init__(self, count: int, part_size: int) -> None:
        self.part_size = part_size
        self._lock = threading.Lock()
        self._free: list[bytearray] = []
        self._unmade = count

    def take(self) -> bytearray | None:
        """A free buffer of ``part_size`` bytes, or None when all are lent (never waits)."""
        with self._lock:
            if self._free:
                return self._free.pop()
            if not self._unmade:
                return None
            self._unmade -= 1
        return bytearray(self.part_size)

    def give(self, buffer: bytearray) -> None:
        """Return a buffer from :meth:`take` once nothing uses it any more."""
        with self._lock:
            self._free.append(buffer)


def _transport(what: str, call: Callable[[], _T]) -> _T:
    try:
        return call()
    except TRANSPORT_ERRORS as exc:
        raise BackendUnavailable(f"{what} failed: {exc}") from exc


def put_object(client: Minio, bucket: str, name: str, source: PartSource, *,
               spares: SpareParts, parallel: int) -> int:
    """Store everything ``source`` yields as ``name``: one ``PUT`` if it fits in one part of
    ``spares.part_size``, else a multipart upload with up to ``parallel`` parts in flight while
    the next is filled (as far as ``spares`` lends buffers). Return the size.

    Nothing is visible under ``name`` before the whole object is: a multipart upload is only
    completed after every part was acknowledged, and on any failure (the source's, the store's,
    or an interrupt) the parts in flight are waited for and the upload is aborted, so no parts
    are left behind unless the abort itself cannot reach the store.

    Raises:
        BackendUnavailable: S3 unreachable or failing (the upload is aborted).
        ValueError: the object would need more than ``MAX_PARTS`` parts (the upload is aborted).
        Exception: whatever ``source`` raises, unchanged (the upload is aborted).
    """
    first = source.first_part(spares.part_size)
    if source.exhausted():
        _transport(f"S3 put {name}", lambda: client._put_object(
            bucket, name, cast(bytes, first), {"Content-Type": _CONTENT_TYPE}))
        return len(first)
    upload_id = _transport(f"S3 put {name}", lambda: client._create_multipart_upload(
        bucket, name, {"Content-Type": _CONTENT_TYPE}))
    try:
        sender = _MultipartSender(client, bucket, name, upload_id, parallel)
        parts = sender.send(first, source, spares)
        _transport(f"S3 put {name}", lambda: client._complete_multipart_upload(
            bucket, name, upload_id, parts))
    except BaseException:
        # best effort: the store may be the thing that failed (S3 lifecycle rules for
        # incomplete multipart uploads are the backstop)
        with contextlib.suppress(*TRANSPORT_ERRORS):
            client._abort_multipart_upload(bucket, name, upload_id)
        raise
    return source.total


class _MultipartSender:
    """Sends the parts of one multipart upload from its own buffer and borrowed spares."""

    def __init__(self, client: Minio, bucket: str, name: str, upload_id: str,
                 parallel: int) -> None:
        self._client, self._bucket, self._name = client, bucket, name
        self._upload_id, self._parallel = upload_id, parallel

    def _upload(self, number: int, body: memoryview) -> Part:
        etag = _transport(f"S3 put {self._name} part {number}", lambda: self._client._upload_part(
            self._bucket, self._name, cast(bytes, body), None, self._upload_id, number))
        return Part(number, etag)

    def send(self, first: bytearray, source: PartSource, spares: SpareParts) -> list[Part]:
        """Send ``first`` as part 1, then the rest of ``source`` in parts of ``len(first)``;
        return the parts in order once every one was acknowledged. Returns only after no part
        is in flight, with every borrowed buffer given back."""
        done: list[Part] = []
        borrowed: list[bytearray] = []
        in_flight: deque[tuple[Future[Part], bytearray]] = deque()
        pool = ThreadPoolExecutor(self._parallel, thread_name_prefix="s3-part")
        buffer, size, number = first, len(first), 1
        try:
            while True:
                view = memoryview(buffer)[:size]
                in_flight.append((pool.submit(self._upload, number, view), buffer))
                if source.exhausted():
                    break
                if number == MAX_PARTS:
                    raise ValueError(f"object exceeds {MAX_PARTS} parts of {len(buffer)} bytes")
                spare = spares.take() if len(in_flight) <= self._parallel else None
                if spare is not None:
                    buffer = spare
                    borrowed.append(spare)
                else:  # reuse this upload's oldest buffer once its part is acknowledged
                    future, buffer = in_flight.popleft()
                    done.append(future.result())
                for future, _ in in_flight:  # a failed part stops the upload before more reads
                    if future.done() and future.exception() is not None:
                        future.result()
                size = source.fill(buffer)
                number += 1
            while in_flight:
                done.append(in_flight.popleft()[0].result())
            return done
        finally:
            # on failure, parts still queued are dropped and those being sent are waited for,
            # so no request is using a buffer (or the upload) when the caller aborts
            pool.shutdown(wait=True, cancel_futures=True)
            for spare in borrowed:
                spares.give(spare)

