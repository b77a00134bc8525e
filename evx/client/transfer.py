"""Moving evidence: download (stream into a partial file, resume with ``Range`` + ``If-Range``,
verify, then move into place); uploads are in :mod:`evx.client.uploads`.

Memory stays flat whatever the size: files are read and written in ``BLOCK_BYTES`` blocks and
hashed incrementally, never held whole.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from evx.client.errors import AuthenticationError, IntegrityFailure, UnavailableError, UsageError
from evx.client.files import destination
from evx.client.http import Api, item_path
from evx.client.platform import fsync_directory
from evx.client.progress import Progress
from evx.protocol import headers as fields

BLOCK_BYTES = 1024 * 1024
_DIGEST = re.compile(r"(?:^|,)\s*sha-256\s*=\s*:([A-Za-z0-9+/=]+):")
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")


def sha256_of(path: Path, transfers: Progress | None = None,
              label: str = "") -> tuple[str, int]:
    """Hex SHA-256 and length of the file, streaming."""
    digest = hashlib.sha256()
    length = 0
    task = transfers.start(label, path.stat().st_size) if transfers and label else None
    with path.open("rb") as handle:
        while True:
            block = handle.read(BLOCK_BYTES)
            if not block:
                break
            digest.update(block)
            length += len(block)
            if task is not None and transfers is not None:
                transfers.advance(task, len(block))
    if task is not None and transfers is not None:
        transfers.finish(task)
    return digest.hexdigest(), length


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
    name: str
    path: Path
    size: int
    sha256: str
    status: str  # "downloaded" | "present"
    resumed_from: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "size": self.size,
                "sha256": self.sha256, "status": self.status, "resumed_from": self.resumed_from}


class _Broken(Exception):
    """The body stopped early; ``received`` bytes of this attempt were written."""

    def __init__(self, received: int, cause: BaseException) -> None:
        super().__init__(str(cause))
        self.received = received
        self.cause = cause


def _discard(partial: Path) -> None:
    try:
        partial.unlink()
    except FileNotFoundError:
        pass


def download_one(api: Api, package_id: str, item: dict[str, Any], out_dir: Path,
                 transfers: Progress, *, limit_rate: int | None = None) -> DownloadResult:
    """Download one item into ``out_dir``, resuming a partial download left by an earlier run.

    The file appears at its final name only after the SHA-256 of all its bytes matched both the
    package metadata and the ``Repr-Digest`` the service sent (then fsync and an atomic link).
    A mismatch deletes the partial file.

    Raises:
        IntegrityFailure: The bytes or the service's digests do not match the metadata.
        UsageError: A different file already exists at the destination.
        UnavailableError: The connection kept breaking (the partial file is kept: run again).
    """
    name, size, sha256 = item["name"], int(item["size"]), str(item["sha256"]).lower()
    final, partial = destination(out_dir, name)
    if final.exists() or final.is_symlink():
        if final.is_file() and not final.is_symlink():
            have, length = sha256_of(final, transfers, f"checking {name}")
            if hmac.compare_digest(have, sha256) and length == size:
                return DownloadResult(name, final, size, sha256, "present")
        raise UsageError(f"{final} already exists and is not this item",
                         hint="Move it away or choose another -o directory.", slug="exists")
    partial.parent.mkdir(parents=True, exist_ok=True)
    # Always fetch at least the last byte: the response carries the service's Repr-Digest.
    offset = 0
    if partial.exists():
        offset = min(partial.stat().st_size, max(size - 1, 0))
    digest = hashlib.sha256()
    resumed_from = offset
    with partial.open("ab" if offset else "wb") as handle:
        handle.truncate(offset)
        if offset:
            # Resuming: the bytes already here count only once hashed again (flat memory).
            digest, length = _prefix_digest(partial, offset, transfers,
                                            f"checking partial {name}")
            if length != offset:
                offset = resumed_from = 0
                handle.truncate(0)
                digest = hashlib.sha256()
        task = transfers.start(f"downloading {name}", size, offset)
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
                                f"received are kept in {partial}: run the same command again "
                                "to resume.")
                raise
            except _Broken as broken:
                handle.flush()
                offset += broken.received
                attempts += 1
                stalled = stalled + 1 if broken.received == 0 else 0
                if stalled >= 2:
                    # Broken off twice in a row at this very byte, on fresh connections: the
                    # service stops streaming where stored bytes fail their integrity check.
                    raise IntegrityFailure(
                        f"the service stopped sending {name!r} repeatedly at byte {offset} of "
                        f"{size}: the stored item is probably damaged (the service serves no "
                        "byte that fails its integrity check)", slug="stored-item-damaged",
                        hint=f"Report it to the operator and the owning authority; nothing was "
                             f"saved at {final} (the bytes verified so far stay in {partial} "
                             "for a later retry).") from broken.cause
                if attempts > api.retry.retries:
                    raise UnavailableError(
                        f"the transfer of {name!r} broke off at byte {offset} of {size} "
                        f"({broken.cause})", slug="transfer-interrupted",
                        hint=f"The {offset} bytes received are kept in {partial}: run the "
                             "same command again to resume.") from broken.cause
                wait = api.retry.wait(attempts)
                if api.retry.on_retry is not None:
                    api.retry.on_retry(f"the transfer of {name} broke off at byte {offset}; "
                                       f"resuming in {wait:.1f} s ({attempts} of "
                                       f"{api.retry.retries} retries)")
                time.sleep(wait)
            except _Restart:
                handle.truncate(0)
                handle.seek(0)
                offset = resumed_from = 0
                digest = hashlib.sha256()
                transfers.reset(task, f"downloading {name}", 0)
        transfers.finish(task)
        handle.flush()
        os.fsync(handle.fileno())
    got = digest.hexdigest()
    if offset + received != size or not hmac.compare_digest(got, sha256) or \
            not hmac.compare_digest(served_digest, sha256):
        _discard(partial)
        raise IntegrityFailure(
            f"{name!r} does NOT match its recorded digest: received {offset + received} bytes "
            f"with sha256 {got}; the package records {sha256} ({size} bytes) and the service "
            f"announced {served_digest}. The partial file was deleted; nothing was saved.",
            slug="digest-mismatch", hint="Try again; if it persists, report it to the owning "
                                         "authority and the operator.")
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(partial, final)  # never replaces a file that appeared meanwhile
        partial.unlink()
    except FileExistsError as exc:
        raise UsageError(f"{final} appeared during the download; the verified copy stays at "
                         f"{partial}", slug="exists") from exc
    except OSError:
        os.replace(partial, final)  # a filesystem without hard links
    fsync_directory(final.parent)
    fsync_directory(partial.parent)
    return DownloadResult(name, final, size, sha256, "downloaded", resumed_from)


class _Restart(Exception):
    """The service sent the whole item although a range was asked: start over."""


def _prefix_digest(path: Path, length: int, transfers: Progress, label: str) -> tuple[Any, int]:
    digest = hashlib.sha256()
    done = 0
    task = transfers.start(label, length)
    with path.open("rb") as handle:
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
