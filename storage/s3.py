"""``S3Store``: objects in one bucket of an S3-compatible server (MinIO in production, SeaweedFS in
tests), through the minio SDK.

Uploads stream as a multipart upload of ``part_size`` parts read from the chunk iterator into
one buffer per upload plus ``parallel_uploads`` spare buffers shared by all uploads of the store
(``storage.s3_multipart``), so memory is bounded by those buffers, never by object size or by
how many uploads run at once beyond one part each. S3 makes a completed upload visible atomically;
a failed one is aborted.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator

import urllib3
from minio import Minio
from minio.error import S3Error

from storage.errors import BackendUnavailable, ObjectNotFound
from storage.objectstore import validate_object_name, validate_prefix, validate_range
from storage.s3_multipart import TRANSPORT_ERRORS as _TRANSPORT_ERRORS
from storage.s3_multipart import PartSource, SpareParts, put_object

MIN_PART_SIZE = 5 * 1024 * 1024  # S3's minimum for every part but the last
# S3 allows 10,000 parts and the size is unknown up front, so part_size caps the object size:
# 8 MiB -> 78 GiB per item. Raise it for larger items (memory grows with it).
DEFAULT_PART_SIZE = 8 * 1024 * 1024
# parts in flight per upload, and spare part buffers per store: a lone upload sends this many
# parts while it fills the next; concurrent ones share the spares
DEFAULT_PARALLEL_UPLOADS = 2
READ_SIZE = 1 << 20
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 120.0
RETRIES = 3
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchObject", "ResourceNotFound"})


class S3Store:
    """An ``ObjectStore`` on one S3 bucket (created on first use if missing)."""

    def __init__(
        self,
        endpoint: str,
        access_key: str,
        secret_key: str,
        bucket: str,
        *,
        secure: bool = False,
        region: str | None = None,
        part_size: int = DEFAULT_PART_SIZE,
        parallel_uploads: int = DEFAULT_PARALLEL_UPLOADS,
    ) -> None:
        """Configure the client; no network traffic happens until the first call.

        ``endpoint`` is ``host:port`` as the minio SDK expects it.

        Raises:
            ValueError: ``part_size`` below S3's 5 MiB minimum, ``parallel_uploads`` < 1, or an
                endpoint the SDK rejects.
        """
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE}")
        if parallel_uploads < 1:
            raise ValueError("parallel_uploads must be >= 1")
        self.bucket = bucket
        self.part_size = part_size
        self.parallel_uploads = parallel_uploads
        self._spares = SpareParts(parallel_uploads, part_size)
        http = urllib3.PoolManager(
            timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT_S, read=READ_TIMEOUT_S),
            maxsize=parallel_uploads + 4,
            retries=urllib3.Retry(total=RETRIES, backoff_factor=0.2,
                                  status_forcelist=[500, 502, 503, 504]),
        )
        self._client = Minio(endpoint, access_key=access_key, secret_key=secret_key,
                             secure=secure, region=region, http_client=http)
        self._bucket_ready = False
        self._bucket_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"S3Store(bucket={self.bucket!r})"

    def _ensure_bucket(self) -> None:
        if self._bucket_ready:
            return
        with self._bucket_lock:
            try:
                if not self._client.bucket_exists(self.bucket):
                    try:
                        self._client.make_bucket(self.bucket)
                    except S3Error as exc:  # lost a creation race with another process
                        if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                            raise
            except _TRANSPORT_ERRORS as exc:
                raise BackendUnavailable(f"S3 bucket {self.bucket} unavailable: {exc}") from exc
            self._bucket_ready = True

    def put(self, name: str, chunks: Iterable[bytes]) -> int:
        """Stream ``chunks`` into ``name`` (one ``PUT`` up to ``part_size``, else a multipart
        upload from one part buffer of its own and the store's spares); return the object size.

        An exception from ``chunks`` aborts the upload and propagates unchanged.

        Raises:
            BackendUnavailable: S3 unreachable or failing (the upload is aborted).
            ValueError: malformed name, or more than ``s3_multipart.MAX_PARTS`` parts (aborted).
        """
        validate_object_name(name)
        self._ensure_bucket()
        return put_object(self._client, self.bucket, name, PartSource(chunks),
                          spares=self._spares, parallel=self.parallel_uploads)

    def get(self, name: str, offset: int = 0, length: int | None = None, *,
            piece_size: int | None = None) -> Iterator[bytes]:
        """Stream a byte range of ``name`` (the request is made by this call) in pieces of
        ``piece_size`` bytes (default ``READ_SIZE``).

        Raises:
            ObjectNotFound: no such object (or bucket).
            BackendUnavailable: S3 unreachable or failing (also while iterating).
            ValueError: malformed name, negative offset or length, ``piece_size`` below 1.
        """
        validate_object_name(name)
        validate_range(offset, length, piece_size)
        if length == 0:
            return iter(())
        try:
            response = self._client.get_object(self.bucket, name, offset=offset,
                                               length=length or 0)
        except S3Error as exc:
            if exc.code in _NOT_FOUND_CODES:
                raise ObjectNotFound(name) from exc
            if exc.code == "InvalidRange":  # offset at or past the end: nothing to read
                return iter(())
            raise BackendUnavailable(f"S3 get {name} failed: {exc}") from exc
        except _TRANSPORT_ERRORS as exc:
            raise BackendUnavailable(f"S3 get {name} failed: {exc}") from exc
        return self._stream(response, name, piece_size or READ_SIZE)

    @staticmethod
    def _stream(response: urllib3.BaseHTTPResponse, name: str,
                piece_size: int) -> Iterator[bytes]:
        try:
            while True:
                data = response.read(piece_size)
                if not data:
                    return
                yield data
        except _TRANSPORT_ERRORS as exc:
            raise BackendUnavailable(f"S3 read {name} failed: {exc}") from exc
        finally:
            response.close()
            response.release_conn()

    def delete(self, name: str) -> None:
        """Remove ``name``; a missing object is not an error.

        Raises:
            BackendUnavailable: S3 unreachable or failing.
            ValueError: malformed name.
        """
        validate_object_name(name)
        try:
            self._client.remove_object(self.bucket, name)
        except S3Error as exc:
            if exc.code in _NOT_FOUND_CODES:
                return
            raise BackendUnavailable(f"S3 delete {name} failed: {exc}") from exc
        except _TRANSPORT_ERRORS as exc:
            raise BackendUnavailable(f"S3 delete {name} failed: {exc}") from exc

    def exists(self, name: str) -> bool:
        """Whether ``name`` exists.

        Raises:
            BackendUnavailable: S3 unreachable or failing.
            ValueError: malformed name.
        """
        try:
            self.size(name)
        except ObjectNotFound:
            return False
        return True

    def size(self, name: str) -> int:
        """Size of ``name`` in bytes.

        Raises:
            ObjectNotFound: no such object (or bucket).
            BackendUnavailable: S3 unreachable or failing.
            ValueError: malformed name.
        """
        validate_object_name(name)
        try:
            stat = self._client.stat_object(self.bucket, name)
        except S3Error as exc:
            if exc.code in _NOT_FOUND_CODES:
                raise ObjectNotFound(name) from exc
            raise BackendUnavailable(f"S3 stat {name} failed: {exc}") from exc
        except _TRANSPORT_ERRORS as exc:
            raise BackendUnavailable(f"S3 stat {name} failed: {exc}") from exc
        if stat.size is None:
            raise BackendUnavailable(f"S3 stat {name} returned no size")
        return int(stat.size)

    def list(self, prefix: str = "") -> Iterator[str]:
        """Names of all objects starting with ``prefix`` (lexicographic, as S3 lists them).

        Raises:
            BackendUnavailable: S3 unreachable or failing.
            ValueError: the prefix cannot begin any object name.
        """
        validate_prefix(prefix)
        try:
            for obj in self._client.list_objects(self.bucket, prefix=prefix or None,
                                                 recursive=True):
                if obj.object_name is not None and not obj.is_dir:
                    yield obj.object_name
        except S3Error as exc:
            if exc.code == "NoSuchBucket":
                return
            raise BackendUnavailable(f"S3 list {prefix!r} failed: {exc}") from exc
        except _TRANSPORT_ERRORS as exc:
            raise BackendUnavailable(f"S3 list {prefix!r} failed: {exc}") from exc

    def check(self) -> None:
        """Make sure the bucket exists and answers.

        Raises:
            BackendUnavailable: S3 unreachable, credentials rejected, or bucket unusable.
        """
        self._bucket_ready = False
        self._ensure_bucket()

