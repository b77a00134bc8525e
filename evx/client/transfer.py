"""Moving evidence: download (stream into a partial file, resume with ``Range`` + ``If-Range``,
verify, then place it without following or replacing anything); uploads are in
:mod:`evx.client.uploads`.

Memory stays flat whatever the size: files are read and written in ``BLOCK_BYTES`` blocks and
hashed incrementally, never held whole.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import stat
import time
from dataclasses import dataclass
from typing import Any

import httpx

from evx.client.errors import AuthenticationError, IntegrityFailure, UnavailableError
from evx.client.http import Api, item_path
from evx.client.outdir import NotOurs, OutputFolder
from evx.client.progress import Progress
from evx.protocol import headers as fields
from evx.protocol.localnames import PARTIAL_DIR
from evx.protocol.names import decode_text, display, encode_bytes

BLOCK_BYTES = 1024 * 1024
_DIGEST = re.compile(r"(?:^|,)\s*sha-256\s*=\s*:([A-Za-z0-9+/=]+):")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


def sha256_field(hex_digest: str) -> str:
    """RFC 9530 ``sha-256=:<base64>:``."""
    return f"sha-256=:{base64.b64encode(bytes.fromhex(hex_digest)).decode()}:"


def parse_sha256_field(value: str | None) -> str | None:
    """The hex sha-256 of an RFC 9530 ``Repr-Digest``/``Content-Digest`` value, or None."""
    if not value:
        return None
    match = _DIGEST.search(value)
    if match is None:
        return None
    try:
        raw = base64.b64decode(match.group(1), validate=True)
    except ValueError:
        return None
    return raw.hex() if len(raw) == 32 else None


# -- download -------------------------------------------------------------------------------

@dataclass
class DownloadResult:
    name: str  # text form
    local: str  # where it is below -o, text form (differs from name where it was mapped)
    size: int
    sha256: str
    status: str  # "downloaded" | "present"
    resumed_from: int = 0
    kind: str = "file"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "local": self.local, "kind": self.kind, "size": self.size,
                "sha256": self.sha256, "status": self.status, "resumed_from": self.resumed_from}


def _served_digest(response: httpx.Response, name: str, sha256: str, size: int,
                   offset: int) -> str:
    """The response's Repr-Digest once it names this item and, when resuming, the range asked."""
    served = parse_sha256_field(response.headers.get(fields.REPR_DIGEST))
    etag = response.headers.get(fields.ETAG, "").strip()
    if served is None or (etag and etag != f'"{served}"'):
        raise IntegrityFailure(f"the service sent {name!r} without a usable sha-256 "
                               "Repr-Digest", slug="digest-mismatch")
    if not hmac.compare_digest(served, sha256):
        raise IntegrityFailure(
            f"the service announces {name!r} with sha256 {served}, but the package "
            f"records {sha256}; refusing it", slug="digest-mismatch",
            hint="Report this to the owning authority and the operator.")
    if offset:
        if response.status_code == 200:
            raise _Restart()
        match = _CONTENT_RANGE.fullmatch(response.headers.get(fields.CONTENT_RANGE, ""))
        if response.status_code != 206 or match is None or \
                int(match.group(1)) != offset or int(match.group(3)) != size:
            raise _Restart()
    return served


class _Broken(Exception):
    """The body stopped early; ``received`` bytes of this attempt were written."""

    def __init__(self, received: int, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.received = received
        self.cause = cause


def _hash_fd(fd: int, transfers: Progress, label: str, size: int) -> tuple[str, int]:
    digest = hashlib.sha256()
    length = 0
    task = transfers.start(label, size)
    os.lseek(fd, 0, os.SEEK_SET)
    while block := os.read(fd, BLOCK_BYTES):
        digest.update(block)
        length += len(block)
        transfers.advance(task, len(block))
    transfers.finish(task)
    return digest.hexdigest(), length


def download_one(api: Api, package_id: str, item: dict[str, Any], out: OutputFolder,
                 local: tuple[bytes, ...], transfers: Progress, *,
                 limit_rate: int | None = None) -> DownloadResult:
    """Download one item to ``local`` (path components below ``-o``), resuming a partial
    download left by an earlier run; a link or directory item is created from its metadata.

    A file appears at its final name only after the SHA-256 of all its bytes matched both the
    package metadata and the ``Repr-Digest`` the service sent (then fsync and a hard link that
    never replaces anything). A mismatch deletes the partial file.

    Raises:
        IntegrityFailure: The bytes or the service's digests do not match the metadata.
        UsageError: A different file already exists at the destination, or something in the
            output folder is a link or a file evx did not create.
        UnavailableError: The connection kept breaking (the partial file is kept: run again).
    """
    name, size, sha256 = item["name"], int(item["size"]), str(item["sha256"]).lower()
    kind = item.get("kind") or "file"
    local_text = encode_bytes(b"/".join(local))
    if kind in ("link", "directory"):
        return _make_from_metadata(item, kind, out, local, local_text)
    if out.lstat(local) is not None:
        return _already_there(name, size, sha256, out, local, local_text, transfers)
    fd, partial_stat = out.open_partial(name)
    # Always fetch at least the last byte: the response carries the service's Repr-Digest.
    offset = min(partial_stat.st_size, max(size - 1, 0))
    digest = hashlib.sha256()
    resumed_from = offset
    with os.fdopen(fd, "r+b") as handle:
        handle.truncate(offset)
        if offset:
            # Resuming: the bytes already here count only once hashed again (flat memory).
            digest, length = _prefix_digest(handle, offset, transfers,
                                            f"checking partial {display(name)}")
            if length != offset:
                offset = resumed_from = 0
                handle.truncate(0)
                digest = hashlib.sha256()
        handle.seek(offset)
        task = transfers.start(f"downloading {display(name)}", size, offset)
        attempts = stalled = 0
        while True:
            try:
                received, served_digest = _fetch(api, package_id, name, sha256, size, offset,
                                                 handle, digest, transfers, task, limit_rate)
                break
            except (UnavailableError, AuthenticationError) as exc:
                handle.flush()
                if offset:  # what was received is verified later, when the run completes
                    exc.hint = (f"{exc.hint + ' ' if exc.hint else ''}The {offset} bytes "
                                f"received are kept in {PARTIAL_DIR}: run the same command "
                                "again to resume.")
                raise
            except _Broken as broken:
                handle.flush()
                offset += broken.received
                attempts += 1
                stalled = stalled + 1 if broken.received == 0 else 0
                _wait_to_resume(api, broken, name, offset, size, attempts, stalled,
                                out.shown(local))
            except _Restart:
                handle.truncate(0)
                handle.seek(0)
                offset = resumed_from = 0
                digest = hashlib.sha256()
                transfers.reset(task, f"downloading {display(name)}", 0)
        transfers.finish(task)
        handle.flush()
        os.fsync(handle.fileno())
        written = os.fstat(handle.fileno())
    got = digest.hexdigest()
    if offset + received != size or not hmac.compare_digest(got, sha256) or \
            not hmac.compare_digest(served_digest, sha256):
        out.drop_partial(name)
        raise IntegrityFailure(
            f"{display(name)} does NOT match its recorded digest: received {offset + received} "
            f"bytes with sha256 {got}; the package records {sha256} ({size} bytes) and the "
            f"service announced {served_digest}. The partial file was deleted; nothing was "
            "saved.", slug="digest-mismatch",
            hint="Try again; if it persists, report it to the owning authority and the "
                 "operator.")
    out.place(name, written, local)
    return DownloadResult(name, local_text, size, sha256, "downloaded", resumed_from)


def _make_from_metadata(item: dict[str, Any], kind: str, out: OutputFolder,
                        local: tuple[bytes, ...], local_text: str) -> DownloadResult:
    """A link or directory item: created from its metadata, nothing is fetched."""
    name, sha256 = item["name"], str(item["sha256"]).lower()
    if kind == "directory":
        status = out.make_directory(local)
        return DownloadResult(name, local_text, 0, sha256,
                              "downloaded" if status == "created" else "present", kind=kind)
    target = decode_text(str(item["target"]))
    if not hmac.compare_digest(hashlib.sha256(target).hexdigest(), sha256):
        raise IntegrityFailure(f"the target of link {display(name)} does not match its "
                               "recorded digest", slug="digest-mismatch")
    status = out.make_link(local, target)
    return DownloadResult(name, local_text, int(item["size"]), sha256,
                          "downloaded" if status == "created" else "present", kind=kind)


def _already_there(name: str, size: int, sha256: str, out: OutputFolder,
                   local: tuple[bytes, ...], local_text: str,
                   transfers: Progress) -> DownloadResult:
    """Something exists at the destination: "present" if it is this item's file, else refused."""
    existing = out.lstat(local)
    fd = out.open_existing(local) if existing and stat.S_ISREG(existing.st_mode) else None
    if fd is not None:
        try:
            have, length = _hash_fd(fd, transfers, f"checking {display(name)}", size)
        finally:
            os.close(fd)
        if hmac.compare_digest(have, sha256) and length == size:
            return DownloadResult(name, local_text, size, sha256, "present")
    raise NotOurs(f"{out.shown(local)} already exists and is not this item",
                  hint="Move it away or choose another -o directory.", slug="exists")


def _wait_to_resume(api: Api, broken: _Broken, name: str, offset: int, size: int,
                    attempts: int, stalled: int, shown: str) -> None:
    """After a transfer broke off at ``offset``: refuse, give up, or wait before resuming."""
    if stalled >= 2:
        # Broken off twice in a row at this very byte, on fresh connections: the
        # service stops streaming where stored bytes fail their integrity check.
        raise IntegrityFailure(
            f"the service stopped sending {display(name)} repeatedly at byte "
            f"{offset} of {size}: the stored item is probably damaged (the service "
            "serves no byte that fails its integrity check)",
            slug="stored-item-damaged",
            hint="Report it to the operator and the owning authority; nothing was "
                 f"saved at {shown} (the bytes verified so far stay in "
                 f"{PARTIAL_DIR} for a later retry).") from broken.cause
    if attempts > api.retry.retries:
        raise UnavailableError(
            f"the transfer of {display(name)} broke off at byte {offset} of {size} "
            f"({broken.cause})", slug="transfer-interrupted",
            hint=f"The {offset} bytes received are kept in {PARTIAL_DIR}: run the "
                 "same command again to resume.") from broken.cause
    wait = api.retry.wait(attempts)
    if api.retry.on_retry is not None:
        api.retry.on_retry(f"the transfer of {display(name)} broke off at byte "
                           f"{offset}; resuming in {wait:.1f} s ({attempts} of "
                           f"{api.retry.retries} retries)")
    time.sleep(wait)


class _Restart(Exception):
    """The service sent the whole item although a range was asked: start over."""


def _prefix_digest(handle: Any, length: int, transfers: Progress,
                   label: str) -> tuple[Any, int]:
    digest = hashlib.sha256()
    done = 0
    task = transfers.start(label, length)
    handle.seek(0)
    while done < length:
        block = handle.read(min(BLOCK_BYTES, length - done))
        if not block:
            break
        digest.update(block)
        done += len(block)
        transfers.advance(task, len(block))
    transfers.finish(task)
    return digest, done


def _fetch(api: Api, package_id: str, name: str, sha256: str, size: int, offset: int,
           handle: Any, digest: Any, transfers: Progress, task: Any,
           limit_rate: int | None) -> tuple[int, str]:
    """One GET of the item from ``offset``; appends to ``handle``. Returns (bytes, Repr-Digest)."""
    headers = {}
    if offset:
        headers = {fields.RANGE: f"bytes={offset}-", fields.IF_RANGE: f'"{sha256}"'}
    received = 0
    try:
        with api.stream("GET", item_path(package_id, name) + "/content",
                        headers=headers) as response:
            served = _served_digest(response, name, sha256, size, offset)
            started = time.monotonic()
            try:
                for block in response.iter_bytes():  # as it arrives: a cut body keeps what came
                    if offset + received + len(block) > size:
                        raise IntegrityFailure(f"the service sent more than the {size} bytes "
                                               f"of {name!r}", slug="digest-mismatch")
                    handle.write(block)
                    digest.update(block)
                    received += len(block)
                    transfers.advance(task, len(block))
                    if limit_rate:
                        ahead = received / limit_rate - (time.monotonic() - started)
                        if ahead > 0:
                            time.sleep(ahead)
            except httpx.TransportError as exc:
                raise _Broken(received, exc) from exc
    except UnavailableError as exc:
        # opening the stream failed after its retries; a body broken off is handled above
        if received:
            raise _Broken(received, exc) from exc
        raise
    if offset + received < size:
        raise _Broken(received, RuntimeError("the response ended early"))
    return received, served
