"""S3 uploads driven part by part from reused buffers (storage/s3_multipart.py), on real SeaweedFS:
part boundaries, aborts on every kind of failure, and the memory the buffers bound."""

from __future__ import annotations

import hashlib
import inspect
import threading
import tracemalloc
from collections.abc import Iterator

import pytest
from minio import Minio
from minio.datatypes import Part

from storage import s3_multipart
from storage.errors import BackendUnavailable
from storage.s3 import MIN_PART_SIZE, S3Store
from storage.s3_multipart import PartSource, SpareParts
from tests.support.seaweed import SeaweedS3

PART = MIN_PART_SIZE  # 5 MiB, the smallest part S3 accepts


class SourceFailed(Exception):
    pass


def pattern(size: int, piece: int = 1 << 20) -> Iterator[bytes]:
    """``size`` bytes in pieces of ``piece``, each piece distinct (fresh bytes objects)."""
    for n, start in enumerate(range(0, size, piece)):
        yield hashlib.sha256(n.to_bytes(8, "big")).digest()[:1] * min(piece, size - start)


def expected(size: int, piece: int = 1 << 20) -> bytes:
    return b"".join(pattern(size, piece))


def open_uploads(client: Minio, bucket: str) -> list[str]:
    return [u.object_name or "" for u in client._list_multipart_uploads(bucket).uploads]


@pytest.fixture
def client(seaweed: SeaweedS3) -> Minio:
    return Minio(seaweed.endpoint, seaweed.access_key, seaweed.secret_key, secure=False)


def store_of(seaweed: SeaweedS3, bucket: str, parallel: int = 2) -> S3Store:
    return S3Store(seaweed.endpoint, seaweed.access_key, seaweed.secret_key, bucket,
                   part_size=PART, parallel_uploads=parallel)


def test_the_sdk_calls_used_keep_their_signatures() -> None:
    """The SDK's request calls we drive are private; an SDK upgrade that changes them must fail
    here, not in an upload."""
    wanted = {
        "_put_object": ["bucket_name", "object_name", "data", "headers", "query_params"],
        "_create_multipart_upload": ["bucket_name", "object_name", "headers"],
        "_upload_part": ["bucket_name", "object_name", "data", "headers", "upload_id",
                         "part_number"],
        "_complete_multipart_upload": ["bucket_name", "object_name", "upload_id", "parts",
                                       "ssec"],
        "_abort_multipart_upload": ["bucket_name", "object_name", "upload_id"],
    }
    for name, params in wanted.items():
        got = list(inspect.signature(getattr(Minio, name)).parameters)[1:]
        assert got == params, name
    assert list(inspect.signature(Part).parameters)[:2] == ["part_number", "etag"]


def test_part_source_fills_exactly_and_skips_empty_chunks() -> None:
    source = PartSource([b"", b"abc", b"", b"defgh", b"ij", b""])
    first = source.first_part(4)
    assert first == b"abcd"
    assert not source.exhausted()
    buffer = bytearray(4)
    assert source.fill(buffer) == 4 and buffer == b"efgh"
    assert not source.exhausted()
    assert source.fill(buffer) == 2 and buffer[:2] == b"ij"
    assert source.exhausted()
    assert source.fill(buffer) == 0
    assert source.total == 10


def test_part_source_at_an_exact_boundary_is_exhausted() -> None:
    source = PartSource([b"abcd", b""])
    assert source.first_part(4) == b"abcd"
    assert source.exhausted()
    assert source.total == 4


def test_part_source_passes_the_iterators_exception() -> None:
    def broken() -> Iterator[bytes]:
        yield b"abcd"
        raise SourceFailed

    source = PartSource(broken())
    assert source.first_part(4) == b"abcd"
    with pytest.raises(SourceFailed):
        source.exhausted()


@pytest.mark.s3
@pytest.mark.parametrize("parallel", [1, 2])
@pytest.mark.parametrize("size", [PART - 1, PART, PART + 1, 2 * PART, 3 * PART, 3 * PART + 7])
def test_part_boundaries_round_trip(seaweed: SeaweedS3, s3_bucket: str, client: Minio,
                                    size: int, parallel: int) -> None:
    """Sizes at, just under and just over whole parts: one PUT up to a part, else multipart
    (an exact multiple ends with a full part, never an empty one); the bytes come back."""
    store = store_of(seaweed, s3_bucket, parallel)
    piece = 3 << 18  # 768 KiB: pieces straddle the 5 MiB part boundaries
    assert store.put("items/ab/obj", pattern(size, piece)) == size
    assert store.size("items/ab/obj") == size
    assert b"".join(store.get("items/ab/obj")) == expected(size, piece)
    etag = client.stat_object(s3_bucket, "items/ab/obj").etag or ""
    parts = -(-size // PART)
    if parts > 1:  # S3 marks a multipart object's ETag with its part count
        assert etag.endswith(f"-{parts}"), etag
    else:
        assert "-" not in etag, etag
    assert open_uploads(client, s3_bucket) == []


@pytest.mark.s3
@pytest.mark.parametrize("parts_before_failure", [1, 2, 3])
def test_a_failing_source_leaves_no_upload_open(seaweed: SeaweedS3, s3_bucket: str,
                                                client: Minio, parts_before_failure: int
                                                ) -> None:
    """The source fails exactly at a part boundary: its exception comes out unchanged, the
    object does not exist and the multipart upload is aborted (none is listed)."""
    def failing() -> Iterator[bytes]:
        yield from pattern(parts_before_failure * PART)
        raise SourceFailed("client went away")

    store = store_of(seaweed, s3_bucket)
    store.check()
    with pytest.raises(SourceFailed):
        store.put("items/cc/partial", failing())
    assert not store.exists("items/cc/partial")
    assert open_uploads(client, s3_bucket) == []


@pytest.mark.s3
def test_a_part_refused_by_the_store_aborts_and_fails_closed(seaweed: SeaweedS3, s3_bucket: str,
                                                             client: Minio) -> None:
    """The multipart upload is aborted behind the store's back while the source waits: the
    next part is refused by SeaweedFS, which is BackendUnavailable, and nothing is stored."""
    store = store_of(seaweed, s3_bucket, parallel=1)
    store.check()
    paused, resume = threading.Event(), threading.Event()

    def slow() -> Iterator[bytes]:
        yield from pattern(2 * PART)
        paused.set()
        assert resume.wait(60)
        yield from pattern(2 * PART)

    errors: list[BaseException] = []

    def upload() -> None:
        try:
            store.put("items/dd/cut", slow())
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            errors.append(exc)

    worker = threading.Thread(target=upload)
    worker.start()
    assert paused.wait(60)
    uploads = client._list_multipart_uploads(s3_bucket).uploads
    assert [u.object_name for u in uploads] == ["items/dd/cut"]
    client._abort_multipart_upload(s3_bucket, "items/dd/cut", uploads[0].upload_id or "")
    resume.set()
    worker.join(120)
    assert [type(e) for e in errors] == [BackendUnavailable]
    assert not store.exists("items/dd/cut")
    assert open_uploads(client, s3_bucket) == []


@pytest.mark.s3
def test_too_many_parts_is_refused_and_aborted(seaweed: SeaweedS3, s3_bucket: str,
                                               client: Minio,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(s3_multipart, "MAX_PARTS", 2)
    store = store_of(seaweed, s3_bucket)
    with pytest.raises(ValueError, match="exceeds 2 parts"):
        store.put("items/ee/huge", pattern(2 * PART + 1))
    assert store.put("items/ee/fits", pattern(2 * PART)) == 2 * PART  # the limit itself is fine
    assert not store.exists("items/ee/huge")
    assert open_uploads(client, s3_bucket) == []


@pytest.mark.s3
@pytest.mark.parametrize("parallel", [1, 2])
def test_memory_is_the_part_buffers(seaweed: SeaweedS3, s3_bucket: str, parallel: int) -> None:
    """A lone 12-part upload allocates its own part buffer and the store's ``parallel`` spares
    and little else (the source's 1 MiB pieces, two at a time): the SDK's put_object made three
    fresh part-sized strings per part (a peak of ~3 parts at parallel 1, ~4 at parallel 2)."""
    store = store_of(seaweed, s3_bucket, parallel)
    store.check()
    tracemalloc.start()
    try:
        store.put("items/ff/big", pattern(12 * PART))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < (parallel + 1) * PART + (3 << 20), peak / (1 << 20)
    assert store.size("items/ff/big") == 12 * PART


@pytest.mark.s3
def test_concurrent_uploads_share_the_stores_spares(seaweed: SeaweedS3, s3_bucket: str,
                                                    client: Minio) -> None:
    """Three uploads at once on a store with 2 spare buffers: memory is one part each plus the
    two spares (not three each), every object is whole, and the spares come back."""
    store = store_of(seaweed, s3_bucket, parallel=2)
    store.check()
    barrier = threading.Barrier(3)

    def synchronised() -> Iterator[bytes]:
        yield from pattern(PART)
        barrier.wait(60)  # all three have their first part before any asks for a spare
        yield from pattern(5 * PART)

    tracemalloc.start()
    try:
        threads = [threading.Thread(target=store.put, args=(f"items/ab/c{i}", synchronised()))
                   for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < (3 + 2) * PART + (6 << 20), peak / (1 << 20)
    whole = expected(PART) + expected(5 * PART)
    for i in range(3):
        assert b"".join(store.get(f"items/ab/c{i}")) == whole
    spares = store._spares
    back = [spares.take(), spares.take()]
    assert all(buffer is not None for buffer in back)  # both lent out and given back
    assert spares.take() is None  # no third was ever made
    assert open_uploads(client, s3_bucket) == []


def test_spare_parts_are_lent_without_waiting_and_reused() -> None:
    spares = SpareParts(2, 16)
    first, second = spares.take(), spares.take()
    assert first is not None and second is not None and len(first) == 16
    assert spares.take() is None
    spares.give(first)
    assert spares.take() is first
