"""Evidence bytes in and out: streaming upload and download of items, each on the record.

Nothing half-written survives a failed upload: the object is registered as pending before the
first byte, removed on failure, and swept if the process dies. A download is recorded durably
before its first byte and its completion or abort (with the bytes sent) afterwards.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from evx.protocol.names import InvalidName, check_name, check_target, parent_names
from service.events import repository as events
from service.packages import repository as repo
from service.packages.errors import (
    AccessDenied,
    DigestMismatch,
    InvalidItemName,
    ItemExists,
    ItemNotFound,
    ItemTooLarge,
    NameConflict,
    NotAFile,
    PackageSealed,
    ShareExpired,
    ShareRevoked,
)
from service.packages.gate import Gate
from service.packages.policy import Caller, Operation
from storage.errors import UnknownKey
from storage.evidence import EvidenceVault, StoredItem


@dataclass(frozen=True)
class Download:
    """An authorised, recorded download about to stream."""

    package: repo.PackageRow
    item: repo.ItemRow
    start: int
    end: int  # exclusive
    chunks: Iterator[bytes]
    started_index: int


class ItemTransfers:
    def __init__(self, gate: Gate, vault: EvidenceVault, *, max_item_bytes: int) -> None:
        self._gate = gate
        self._vault = vault
        self._max_item_bytes = max_item_bytes

    # -- items --------------------------------------------------------------------------------

    def add_entry(self, caller: Caller, package_id: str, name: str, *, kind: str,
                  target: str | None) -> repo.ItemRow:
        """Add a symbolic link (its target recorded, never resolved) or an empty directory.

        A link's size and SHA-256 are those of its target's bytes; a directory's those of no
        bytes. Nothing goes to the object store.
        """
        if kind not in ("link", "directory"):
            raise InvalidItemName(f"unknown item kind {kind!r}")
        admit_new_item(self._gate, caller, package_id, name, None, self._max_item_bytes,
                       kind=kind)
        if kind == "link":
            try:
                raw = check_target(target or "")
            except InvalidName as exc:
                raise self._gate.refuse(caller, "item.uploaded", package_id,
                                        InvalidItemName(str(exc)), item=name,
                                        outcome="failed") from None
        else:
            if target is not None:
                raise self._gate.refuse(caller, "item.uploaded", package_id, InvalidItemName(
                    "a directory item has no target"), item=name, outcome="failed")
            raw = b""
        with self._gate.mutating() as conn:
            insert_item(self._gate, conn, caller, package_id, name, kind=kind, size=len(raw),
                        sha256=hashlib.sha256(raw).hexdigest(), target=target)
        with self._gate.engine.connect() as conn:
            item = repo.get_item(conn, package_id, name)
        assert item is not None
        return item

    def upload(self, caller: Caller, package_id: str, name: str, body: Iterable[bytes], *,
               declared_length: int | None, expected_sha256: bytes | None) -> repo.ItemRow:
        """Store one item, streaming; nothing half-written survives a failure."""
        admit_new_item(self._gate, caller, package_id, name, declared_length,
                       self._max_item_bytes)
        received = 0

        def limited() -> Iterator[bytes]:
            nonlocal received
            for chunk in body:
                received += len(chunk)
                if received > self._max_item_bytes:
                    raise ItemTooLarge(f"item exceeds the maximum of {self._max_item_bytes} bytes")
                yield chunk

        object_name = self._vault.new_object_name()
        with self._gate.engine.begin() as conn:
            repo.add_pending_object(conn, object_name, self._gate.now(), package_id=package_id,
                                    item=name, authority=caller.authority,
                                    subject=caller.subject)
        try:
            stored = self._vault.put_item(package_id, name, limited(), object_name=object_name)
        except ItemTooLarge as exc:
            self._discard(object_name)
            raise self._gate.refuse(caller, "item.uploaded", package_id, exc, item=name,
                               outcome="failed") from None
        except BaseException as exc:
            self._discard(object_name)
            self._record_failure(caller, package_id, name, exc)
            raise
        try:
            if expected_sha256 is not None and not hmac.compare_digest(
                    bytes.fromhex(stored.sha256), expected_sha256):
                raise self._gate.refuse(caller, "item.uploaded", package_id, DigestMismatch(
                    "the received bytes do not match the Content-Digest; nothing was stored"),
                    item=name, outcome="failed")
            return record_item(self._gate, caller, package_id, name, stored,
                               release=lambda conn: repo.remove_pending_object(conn, object_name))
        except BaseException:
            self._discard(object_name)
            raise

    def _record_failure(self, caller: Caller, package_id: str, name: str,
                        exc: BaseException) -> None:
        """Best effort: an upload that broke off (client gone, store down) is on the record too."""
        reason = "client disconnected" if type(exc).__name__ == "ClientDisconnect" \
            else f"upload failed: {type(exc).__name__}"
        try:
            self._gate.recorder.record(caller, "item.uploaded", package=package_id, item=name,
                                  outcome="failed", reason=reason)
        except Exception:  # noqa: BLE001 - the original error is what the caller must see
            return

    def _discard(self, object_name: str) -> None:
        """Remove a partial or refused object; the sweeper retries if this fails."""
        try:
            self._vault.delete_object(object_name)
        except Exception:  # noqa: BLE001 - the pending row stays, the sweeper finishes the job
            return
        with self._gate.engine.begin() as conn:
            repo.remove_pending_object(conn, object_name)

    def begin_download(self, caller: Caller, package_id: str, name: str,
                       byte_range: Callable[[repo.ItemRow], tuple[int, int] | None]) -> Download:
        """Authorise, record ``download.started`` durably, then open the decrypting stream."""
        with self._gate.engine.connect() as conn:
            package = self._gate.authorize(conn, caller, package_id, Operation.DOWNLOAD,
                                      "download.started", item=name[:512])
            item = repo.get_item(conn, package_id, name)
            share = repo.get_share(conn, package_id, caller.authority)
        if item is None:
            try:  # a name no item can have is a 422 (on the record, bounded), not a 404
                check_name(name)
            except InvalidName as exc:
                raise self._gate.refuse(caller, "download.started", package_id,
                                        InvalidItemName(str(exc)), item=name,
                                        outcome="failed") from None
            raise self._gate.refuse(caller, "download.started", package_id,
                               ItemNotFound(f"the package has no item {name!r}"),
                               item=name, outcome="failed")
        if item.kind != "file":
            raise self._gate.refuse(caller, "download.started", package_id, NotAFile(
                f"item {name!r} is a {item.kind}: it has no content (its metadata says what "
                "it is)"), item=name, outcome="failed")
        try:
            selected = byte_range(item)
        except Exception as exc:  # noqa: BLE001 - the endpoint's refusal, recorded then re-raised
            raise self._gate.refuse(caller, "download.started", package_id, exc, item=name,
                               outcome="failed") from None
        start, end = selected if selected else (0, item.size)
        legal = None
        if share is not None and caller.authority != package.owner_authority:
            legal = {"basis": share.legal_basis, "request_reference": share.request_reference}
        index = self._gate.recorder.record(
            caller, "download.started", package=package_id, item=name, legal=legal,
            details={"offset": start, "length": end - start, "sha256": item.sha256})
        with self._gate.engine.begin() as conn:
            repo.add_open_download(conn, started_index=index, package_id=package_id, item=name,
                                   authority=caller.authority, subject=caller.subject,
                                   role=caller.role, started_at=self._gate.now())
        try:
            chunks = self._open(item, package_id, name, start, end - start)
            # Authenticate the first chunk before any header goes out: a tampered object is
            # then a clear 500 integrity failure, not a connection cut after a 200.
            first = next(chunks, b"")
        except Exception as exc:
            self.finish_download(caller, package_id, name, sent=0, error=exc, started_index=index)
            raise
        return Download(package, item, start, end, itertools.chain((first,), chunks), index)

    def recheck(self, caller: Caller, download: Download) -> None:
        """Between chunks: a share revoked or expired since the start stops the download.

        Raises:
            ShareRevoked, ShareExpired, AccessDenied: no longer allowed (the caller aborts,
                and :meth:`finish_download` records why).
        """
        self._gate.still_allowed(caller, download.package, Operation.DOWNLOAD)

    def _open(self, item: repo.ItemRow, package_id: str, name: str, offset: int,
              length: int) -> Iterator[bytes]:
        assert item.storage is not None
        stored = stored_from_json(item.storage)
        # Items named before migration 0006 stay bound to the spelling they were sealed under.
        binding = item.storage.get("binding_item", name)
        try:
            return self._vault.open_item(stored, package_id, binding, offset=offset,
                                         length=length)
        except UnknownKey:
            # Another replica rotated the KEK and rewrapped this item: read the keys again.
            self._vault.keyring.reload()
            return self._vault.open_item(stored, package_id, binding, offset=offset,
                                         length=length)

    def finish_download(self, caller: Caller, package_id: str, name: str, *, sent: int,
                        error: BaseException | None, started_index: int,
                        expected: int | None = None) -> None:
        """Record completion, or an abort with the bytes sent and why."""
        completed = error is None and (expected is None or sent == expected)
        if completed:
            self._gate.recorder.record(caller, "download.completed", package=package_id,
                                       item=name, details={"bytes_sent": sent})
        else:
            if isinstance(error, (ShareRevoked, ShareExpired, AccessDenied)):
                reason = f"stopped during the download: {error}"
            elif error is None or isinstance(error, (GeneratorExit, ConnectionError)):
                reason = "client disconnected"
            else:
                reason = type(error).__name__
            self._gate.recorder.record(caller, "download.aborted", package=package_id,
                                       item=name, outcome="failed", reason=reason,
                                       details={"bytes_sent": sent})
        with self._gate.engine.begin() as conn:
            repo.remove_open_download(conn, started_index)
            package = repo.get_package(conn, package_id)
            if completed and package is not None and package.owner_authority != caller.authority:
                events.emit(conn, [package.owner_authority], "package.downloaded", {
                    "package": package_id, "item": name, "authority": caller.authority,
                    "subject": caller.subject, "bytes_sent": sent}, now=self._gate.now())


def check_place(gate: Gate, conn: Connection, caller: Caller, package_id: str, name: str,
                kind: str) -> None:
    """Refuse (on the record) a name already taken, or one that would make a file or link a
    directory of another item (``dir`` and ``dir/file``): decided at upload, not at download.

    Raises:
        ItemExists, NameConflict: recorded, then raised.
    """
    if repo.get_item(conn, package_id, name) is not None:
        raise gate.refuse(caller, "item.uploaded", package_id,
                          ItemExists(f"item {name!r} already exists"), item=name)
    for parent in repo.items_named(conn, package_id, parent_names(name)):
        if parent.kind != "directory":
            raise gate.refuse(caller, "item.uploaded", package_id, NameConflict(
                f"the item would lie inside the {parent.kind} item {parent.name!r}"),
                item=name, outcome="failed")
    if kind != "directory" and repo.has_items_under(conn, package_id, name):
        raise gate.refuse(caller, "item.uploaded", package_id, NameConflict(
            f"items of the package lie inside this name; it cannot also be a {kind}"),
            item=name, outcome="failed")


def admit_new_item(gate: Gate, caller: Caller, package_id: str, name: str,
                   declared_length: int | None, max_item_bytes: int, *,
                   kind: str = "file") -> None:
    """May ``caller`` add a new item ``name`` of that size (and kind) to the package? Checked
    before anything is stored; refusals are recorded, then raised.

    Raises:
        PackageNotFound, AccessDenied, ShareExpired, ShareRevoked: not allowed.
        InvalidItemName, PackageSealed, ItemExists, NameConflict, ItemTooLarge: not acceptable.
        LedgerUnavailable: a refusal could not be recorded.
    """
    with gate.engine.connect() as conn:
        package = gate.authorize(conn, caller, package_id, Operation.MODIFY, "item.uploaded",
                                 item=name[:512])
        try:
            check_name(name)
        except InvalidName as exc:
            raise gate.refuse(caller, "item.uploaded", package_id, InvalidItemName(str(exc)),
                              outcome="failed") from None
        if package.sealed_at is not None:
            raise gate.refuse(caller, "item.uploaded", package_id,
                              PackageSealed("the package is sealed"), item=name)
        check_place(gate, conn, caller, package_id, name, kind)
    if declared_length is not None and declared_length > max_item_bytes:
        raise gate.refuse(caller, "item.uploaded", package_id, ItemTooLarge(
            f"item is {declared_length} bytes; the maximum is {max_item_bytes}"),
            item=name, outcome="failed")


def insert_item(gate: Gate, conn: Connection, caller: Caller, package_id: str, name: str, *,
                kind: str, size: int, sha256: str, target: str | None = None,
                stored: StoredItem | None = None) -> None:
    """Within ``gate.mutating()``: check again under the package lock, record
    ``item.uploaded``, then insert the item row.

    Raises:
        PackageSealed, ItemExists, NameConflict: the package changed meanwhile (recorded).
        LedgerUnavailable: the entry could not be written (nothing written).
    """
    current = repo.lock_package(conn, package_id)
    if current is None or current.sealed_at is not None:
        raise gate.refuse(caller, "item.uploaded", package_id,
                          PackageSealed("the package was sealed during the upload"), item=name)
    check_place(gate, conn, caller, package_id, name, kind)
    details: dict[str, Any] = {"size": size, "sha256": sha256}
    if kind != "file":
        details["kind"] = kind
    if target is not None:
        details["target"] = target
    gate.recorder.record(caller, "item.uploaded", package=package_id, item=name, details=details)
    gate.before_write(conn)
    repo.insert_item(conn, package_id=package_id, name=name, kind=kind, target=target,
                     size=size, sha256=sha256,
                     object_name=stored.object_name if stored else None,
                     storage=stored_to_json(stored) if stored else None,
                     uploaded_by=caller.subject, uploaded_at=gate.now())
    repo.add_item_dirs(conn, package_id, parent_names(name))


def record_item(gate: Gate, caller: Caller, package_id: str, name: str, stored: StoredItem, *,
                release: Callable[[Connection], None]) -> repo.ItemRow:
    """Put a stored, digest-checked item on the record and in the package, in one transaction
    that also ``release``s whatever owned its objects until now (pending row, upload session).

    Raises:
        PackageSealed, ItemExists, NameConflict: the package changed meanwhile (recorded;
            nothing written).
        LedgerUnavailable: the entry could not be written (nothing written).
    """
    with gate.mutating() as conn:
        insert_item(gate, conn, caller, package_id, name, kind="file",
                    size=stored.plaintext_size, sha256=stored.sha256, stored=stored)
        release(conn)
    with gate.engine.connect() as conn:
        item = repo.get_item(conn, package_id, name)
    assert item is not None
    return item


def stored_to_json(stored: StoredItem) -> dict[str, Any]:
    """What the item row keeps of where its encrypted objects are."""
    return {"object_name": stored.object_name, "plaintext_size": stored.plaintext_size,
            "sha256": stored.sha256, "ciphertext_size": stored.ciphertext_size,
            "key_ids": list(stored.key_ids)}


def stored_from_json(data: dict[str, Any]) -> StoredItem:
    return StoredItem(object_name=data["object_name"], plaintext_size=data["plaintext_size"],
                      sha256=data["sha256"], ciphertext_size=data["ciphertext_size"],
                      key_ids=tuple(data["key_ids"]))


