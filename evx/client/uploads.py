"""Uploading a file, reading it once: small files in one request with their ``Content-Digest``,
large ones through the service's resumable uploads (draft-ietf-httpbis-resumable-upload, see
docs/api.md), hashed while they are sent.

A large upload that breaks off -- connection cut, server restarted, this process killed --
continues from the service's durable offset (``HEAD``), on the next attempt or the next run of
the command: the service tells a caller who asks again for the same item where its upload
stands. The whole-file SHA-256 goes in the ``Repr-Digest`` of the completing request; the service
refuses a mismatch and stores nothing. Memory stays flat: the file is read in ``BLOCK_BYTES``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from evx.client.errors import ClientError, IntegrityFailure, UnavailableError, UsageError
from evx.client.http import Api, item_path, package_path
from evx.client.progress import Progress
from evx.client.sources import Source, open_source
from evx.client.transfer import sha256_field
from evx.protocol import headers as hdr
from evx.protocol.names import decode_text, display

BLOCK_BYTES = 1024 * 1024
# Below this a file is read into memory, hashed and sent in one request (one read, one round
# trip); at or above it the upload is resumable (one read, hashed while sent).
RESUMABLE_FROM_BYTES = 16 * 1024 * 1024
PARTIAL_UPLOAD = "application/partial-upload"


def file_sha256(source: Source, progress: Progress, label: str, length: int | None = None) -> \
        tuple[Any, int]:
    """SHA-256 state and byte count of the first ``length`` bytes (all if None) of the file
    (opened without following links, checked to be the file listed)."""
    digest = hashlib.sha256()
    done = 0
    task = progress.start(label, length if length is not None else source.size)
    with open_source(source) as fd:
        while length is None or done < length:
            want = BLOCK_BYTES if length is None else min(BLOCK_BYTES, length - done)
            block = os.read(fd, want)
            if not block:
                break
            digest.update(block)
            done += len(block)
            progress.advance(task, len(block))
    progress.finish(task)
    return digest, done


def upload_file(api: Api, package_id: str, source: Source, existing: dict[str, Any] | None,
                progress: Progress) -> tuple[str, int, str]:
    """Upload ``source`` as an item; return ``(status, size, sha256)`` with status
    ``uploaded`` or ``skipped`` (already there with the same kind and SHA-256). A link or an
    empty directory is added from its metadata; a file is opened only without following links
    and checked to be the file listed (device, inode, size, modification time).

    Raises:
        UsageError: an item of that name exists with other content, or the file changed.
        IntegrityFailure: the service computed another digest than this side.
        UnavailableError: the connection kept failing (a large upload resumes on the next run).
    """
    if source.kind != "file":
        return _add_entry(api, package_id, source, existing)
    size = source.size
    if existing is not None:
        digest, length = file_sha256(source, progress, f"checking {display(source.name)}")
        _same_or_refuse(source, existing, digest.hexdigest(), length)
        return "skipped", length, digest.hexdigest()
    if size < RESUMABLE_FROM_BYTES:
        return "uploaded", *_upload_small(api, package_id, source, size, progress)
    return "uploaded", *ResumableUpload(api, package_id, source, size, progress).run()


def _same_or_refuse(source: Source, existing: dict[str, Any], sha256: str, size: int) -> None:
    kind = existing.get("kind") or "file"
    if kind == source.kind and hmac.compare_digest(existing["sha256"], sha256) and \
            existing["size"] == size:
        return
    raise UsageError(
        f"the package already holds a different item {display(source.name)} ({kind}, sha256 "
        f"{existing['sha256']}, {existing['size']} bytes; local {source.kind} sha256 {sha256}, "
        f"{size} bytes)", hint="Items are immutable: upload it under another name, or into a "
        "new package.", slug="item-exists")


def _add_entry(api: Api, package_id: str, source: Source,
               existing: dict[str, Any] | None) -> tuple[str, int, str]:
    """A symbolic link (its target recorded) or an empty directory, as an item."""
    raw = decode_text(source.target) if source.target is not None else b""
    sha256 = hashlib.sha256(raw).hexdigest()
    if existing is not None:
        _same_or_refuse(source, existing, sha256, len(raw))
        return "skipped", len(raw), sha256
    body = api.json("POST", package_path(package_id) + "/items",
                    json={"name": source.name, "kind": source.kind,
                          **({"target": source.target} if source.kind == "link" else {})})
    if body.get("sha256") != sha256 or body.get("kind") != source.kind:
        raise IntegrityFailure(f"the service recorded {display(source.name)} as "
                               f"{body.get('kind')} {body.get('sha256')}, not {source.kind} "
                               f"{sha256}", slug="digest-mismatch")
    return "uploaded", len(raw), sha256


def _read_up_to(fd: int, limit: int) -> bytes:
    chunks, got = [], 0
    while got < limit and (block := os.read(fd, min(BLOCK_BYTES, limit - got))):
        chunks.append(block)
        got += len(block)
    return b"".join(chunks)


def _upload_small(api: Api, package_id: str, source: Source, size: int,
                  progress: Progress) -> tuple[int, str]:
    with open_source(source) as fd:
        data = _read_up_to(fd, RESUMABLE_FROM_BYTES)
    if len(data) != size:
        raise _changed(source, size, len(data))
    sha256 = hashlib.sha256(data).hexdigest()
    task = progress.start(f"uploading {display(source.name)}", size)
    body = api.json("PUT", item_path(package_id, source.name), content=data, headers={
        hdr.CONTENT_DIGEST: sha256_field(sha256), "Content-Type": "application/octet-stream"})
    progress.advance(task, size)
    progress.finish(task)
    _check_stored(source, body, size, sha256)
    return size, sha256


def _check_stored(source: Source, body: dict[str, Any], size: int, sha256: str) -> None:
    if body.get("sha256") != sha256 or body.get("size") != size:
        raise IntegrityFailure(f"the service stored {display(source.name)} with sha256 "
                               f"{body.get('sha256')} ({body.get('size')} bytes), not {sha256}",
                               slug="digest-mismatch")


def _changed(source: Source, expected: int, actual: int) -> UsageError:
    return UsageError(f"{source.shown} changed while it was uploaded ({expected} bytes when it "
                      f"was listed, {actual} now)", slug="file-changed",
                      hint="Evidence must not change while it is uploaded: upload a copy made "
                           "after acquisition, or find out what is writing to it.")


class ResumableUpload:
    """One large file through the resumable-upload protocol (see the module docstring)."""

    def __init__(self, api: Api, package_id: str, source: Source, size: int,
                 progress: Progress, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.api = api
        self.package_id = package_id
        self.source = source
        self.size = size
        self.progress = progress
        self.sleep = sleep
        self.digest = hashlib.sha256()
        self.hashed = 0  # bytes of the file fed to ``digest`` (a prefix)
        self.location = ""
        self.task: Any = None
        self.shown = 0  # bytes the progress bar shows as sent

    def run(self) -> tuple[int, str]:
        offset = self._open()
        self.task = self.progress.start(f"uploading {display(self.source.name)}", self.size, offset)
        self.shown = offset
        try:
            if offset:
                self.digest, self.hashed = file_sha256(
                    self.source, self.progress, f"checking {display(self.source.name)}",
                    offset)
                if self.hashed != offset:
                    raise _changed(self.source, self.size, self.hashed)
            failures = 0
            lost = False  # the last request broke off: ask the service where it stands
            while True:
                try:
                    if lost:
                        offset, lost = self._offset(), False
                    if offset < self.size:
                        offset = self._append(offset)
                        failures = 0
                        continue
                    return self.size, self._complete(offset)
                except _Retry as retry:
                    failures += 1
                    if failures > self.api.retry.retries:
                        raise UnavailableError(
                            f"the upload of {self.source.name!r} kept breaking off "
                            f"({retry.cause})", slug="transfer-interrupted",
                            hint="Run the same command again: the upload continues where the "
                                 "service stored it.") from retry.cause
                    wait = self.api.retry.wait(failures)  # --retries, the client's backoff
                    if self.api.retry.on_retry is not None:
                        self.api.retry.on_retry(f"the upload of {self.source.name} broke off "
                                                f"({retry.cause}); resuming in {wait:.1f} s "
                                                f"({failures} of {self.api.retry.retries} "
                                                "retries)")
                    self.sleep(wait)
                    lost = True
        finally:
            self.progress.finish(self.task)

    # -- protocol steps -----------------------------------------------------------------------

    def _open(self) -> int:
        """Upload creation, or the offset of this officer's upload of the item in progress."""
        try:
            response = self.api.request(
                "PUT", item_path(self.package_id, self.source.name), content=b"",
                headers={hdr.UPLOAD_COMPLETE: "?0", hdr.UPLOAD_LENGTH: str(self.size),
                         "Content-Type": "application/octet-stream"})
        except ClientError as exc:
            upload = exc.details.get("upload") if exc.slug == "upload-in-progress" else None
            if not upload:
                raise
            if exc.details.get("length") != self.size:
                raise UsageError(
                    f"an upload of {self.source.name!r} of {exc.details.get('length')} bytes is "
                    f"in progress, but the file has {self.size}", slug="upload-in-progress",
                    hint="The file changed since the first attempt; cancel that upload or use "
                         "another item name.") from exc
            self.location = str(upload)
            return int(exc.details.get("offset") or 0)
        self.location = response.headers["location"]
        return int(response.headers.get("upload-offset", "0"))

    def _offset(self) -> int:
        try:
            response = self.api.request("HEAD", self.location)
        except UnavailableError as exc:
            raise _Retry(exc) from exc
        offset = int(response.headers["upload-offset"])
        if offset > self.hashed:  # a newer request of ours got further: hash up to there
            self.digest, self.hashed = file_sha256(self.source, self.progress,
                                                   f"checking {display(self.source.name)}",
                                                   offset)
        self.progress.advance(self.task, offset - self.shown)  # back to what is stored
        self.shown = offset
        return offset

    def _append(self, offset: int) -> int:
        try:
            response = self.api.request(
                "PATCH", self.location, content=self._blocks(offset),
                headers={hdr.UPLOAD_OFFSET: str(offset), hdr.UPLOAD_COMPLETE: "?0",
                         "Content-Type": PARTIAL_UPLOAD})
        except UnavailableError as exc:
            raise _Retry(exc) from exc
        except ClientError as exc:
            if exc.slug in ("mismatching-upload-offset", "upload-superseded"):
                raise _Retry(exc) from exc
            raise
        return int(response.headers["upload-offset"])

    def _complete(self, offset: int) -> str:
        sha256 = self.digest.hexdigest()
        try:
            body = self.api.json("PATCH", self.location, content=b"", headers={
                hdr.UPLOAD_OFFSET: str(offset), hdr.UPLOAD_COMPLETE: "?1",
                hdr.REPR_DIGEST: sha256_field(sha256), "Content-Type": PARTIAL_UPLOAD})
        except UnavailableError as exc:
            raise _Retry(exc) from exc
        _check_stored(self.source, body, self.size, sha256)
        return sha256

    def _blocks(self, offset: int) -> Iterator[bytes]:
        """The file from ``offset`` to its declared end; bytes past ``hashed`` are hashed as
        they are read, so each byte is hashed once however often it is sent."""
        position = offset
        with open_source(self.source) as fd, os.fdopen(os.dup(fd), "rb") as handle:
            handle.seek(offset)
            while position < self.size:
                block = handle.read(min(BLOCK_BYTES, self.size - position))
                if not block:
                    raise _changed(self.source, self.size, position)
                if position + len(block) > self.hashed:
                    fresh = block[self.hashed - position:] if self.hashed > position else block
                    self.digest.update(fresh)
                    self.hashed += len(fresh)
                position += len(block)
                self.progress.advance(self.task, len(block))
                self.shown += len(block)
                yield block
            if handle.read(1):
                raise _changed(self.source, self.size, position + 1)


class _Retry(Exception):
    def __init__(self, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.cause = cause

