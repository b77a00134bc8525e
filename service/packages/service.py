"""The package domain's operations, each on the custody record.

Every operation first decides access (refusals are recorded, then raised), then acts, and records
the outcome durably before it reports success. If the ledger cannot be written the operation is
refused (``LedgerUnavailable``) and nothing leaves the store.
"""

from __future__ import annotations

import hashlib
import itertools
import hmac
import secrets
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy.engine import Connection, Engine

from custody.jcs import canonicalize
from service.packages import repository as repo
from service.packages.errors import (
    AccessDenied,
    DigestMismatch,
    InvalidRequest,
    ItemExists,
    ItemNotFound,
    ItemTooLarge,
    PackageNotFound,
    PackageNotSealed,
    PackageSealed,
    ShareExpired,
    ShareRevoked,
)
from service.packages.names import InvalidItemName, validate_item_name
from service.packages.policy import Caller, Decision, Operation, Refusal, decide
from service.recorder import CustodyRecorder
from storage.errors import UnknownKey
from storage.evidence import StoredItem

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def new_package_id() -> str:
    # 128 random bits: ids are not secrets, but unguessable ids cost nothing.
    return "pkg_" + secrets.token_hex(16)


@dataclass(frozen=True)
class Download:
    """An authorised, recorded download about to stream."""

    package: repo.PackageRow
    item: repo.ItemRow
    start: int
    end: int  # exclusive
    chunks: Iterator[bytes]
    started_index: int


class PackageService:
    def __init__(self, engine: Engine, vault: Any, recorder: CustodyRecorder, *,
                 operator_authority: str, max_item_bytes: int,
                 known_authority: Callable[[str], bool], clock: Clock = utcnow) -> None:
        self._engine = engine
        self._vault = vault
        self._recorder = recorder
        self._operator = operator_authority
        self._max_item_bytes = max_item_bytes
        self._known_authority = known_authority
        self._clock = clock
        # SQLite has one writer for the whole file and FOR UPDATE is a no-op there: package
        # mutations of this (single, embedded) process take this lock instead of a row lock.
        self._sqlite_lock = threading.Lock() if engine.dialect.name == "sqlite" else None

    @contextmanager
    def _mutating(self) -> Iterator[Connection]:
        """A transaction for a package mutation.

        Order inside it, always: lock the package row, check, record the ledger entry, call
        :meth:`_before_write`, then write. The entry is written by the ledger's own transaction;
        on SQLite the read snapshot must end before our write (WAL cannot upgrade a snapshot
        older than the ledger's commit) -- the process lock keeps the checks true meanwhile.
        """
        lock = self._sqlite_lock or nullcontext()
        with lock, self._engine.connect() as conn:
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    def _before_write(self, conn: Connection) -> None:
        if self._sqlite_lock is not None:
            conn.commit()

    def now(self) -> datetime:
        return self._clock()

    # -- access -------------------------------------------------------------------------------

    def authorize(self, conn: Connection, caller: Caller, package_id: str, op: Operation,
                   action: str, item: str | None = None) -> repo.PackageRow:
        """Return the package if ``caller`` may do ``op``; else record the refusal and raise."""
        package = repo.get_package(conn, package_id)
        if package is None:
            decision = Decision.refuse(Refusal.NOT_FOUND, "no such package")
        else:
            share = repo.get_share(conn, package_id, caller.authority)
            decision = decide(caller, op, package.owner_authority,
                              share.state() if share else None, self._clock(), self._operator)
        if decision.allowed:
            assert package is not None
            return package
        # Probes of unknown ids are recorded without the id as package (it names no package).
        self._recorder.record(
            caller, action, package=package_id if package else None, item=item,
            outcome="denied", reason=decision.reason,
            details=None if package else {"requested_package": package_id[:80]},
        )
        if decision.refusal is Refusal.NOT_FOUND:
            raise PackageNotFound(f"package {package_id} not found")
        if decision.refusal is Refusal.SHARE_EXPIRED:
            raise ShareExpired(decision.reason)
        if decision.refusal is Refusal.SHARE_REVOKED:
            raise ShareRevoked(decision.reason)
        raise AccessDenied(decision.reason)

    def _refuse(self, caller: Caller, action: str, package: str, error: Exception, *,
                item: str | None = None, outcome: str = "denied") -> Exception:
        self._recorder.record(caller, action, package=package, item=item, outcome=outcome,
                              reason=str(error))
        return error

    # -- packages -----------------------------------------------------------------------------

    def create(self, caller: Caller, *, case_reference: str, title: str,
               description: str) -> repo.PackageRow:
        if caller.role != "investigator":
            self._recorder.record(caller, "package.created", outcome="denied",
                                  reason="only investigators create packages")
            raise AccessDenied("only investigators create packages")
        package_id = new_package_id()
        now = self._clock()
        self._recorder.record(caller, "package.created", package=package_id,
                              details={"case_reference": case_reference})
        with self._engine.begin() as conn:
            repo.insert_package(conn, id=package_id, owner_authority=caller.authority,
                                case_reference=case_reference, title=title,
                                description=description, created_by=caller.subject,
                                created_at=now)
        package = self.read_row(package_id)
        return package

    def read_row(self, package_id: str) -> repo.PackageRow:
        with self._engine.connect() as conn:
            package = repo.get_package(conn, package_id)
        if package is None:
            raise PackageNotFound(f"package {package_id} not found")
        return package

    def read(self, caller: Caller, package_id: str) -> tuple[repo.PackageRow,
                                                              list[repo.ItemRow],
                                                              list[repo.ShareRow]]:
        with self._engine.connect() as conn:
            package = self.authorize(conn, caller, package_id, Operation.READ_METADATA,
                                      "package.read")
            items = repo.package_items(conn, package_id)
            shares = repo.package_shares(conn, package_id)
        self._recorder.record(caller, "package.read", package=package_id)
        if caller.authority != package.owner_authority:
            shares = [s for s in shares if s.authority == caller.authority]
        return package, items, shares

    def list(self, caller: Caller, *, limit: int, offset: int) -> list[tuple[
            repo.PackageRow, list[repo.ItemRow], list[repo.ShareRow]]]:
        everything = caller.role == "auditor" and caller.authority == self._operator
        now = self._clock()
        result = []
        with self._engine.connect() as conn:
            for package in repo.visible_packages(conn, caller.authority, all_packages=everything,
                                                 limit=limit, offset=offset):
                shares = repo.package_shares(conn, package.id)
                mine = next((s for s in shares if s.authority == caller.authority), None)
                decision = decide(caller, Operation.READ_METADATA, package.owner_authority,
                                  mine.state() if mine else None, now, self._operator)
                if not decision.allowed:
                    continue  # an ended share: the package drops out of the recipient's list
                if caller.authority != package.owner_authority:
                    shares = [s for s in shares if s.authority == caller.authority]
                result.append((package, repo.package_items(conn, package.id), shares))
        self._recorder.record(caller, "package.listed",
                              details={"count": len(result), "offset": offset})
        return result

    # -- items --------------------------------------------------------------------------------

    def upload(self, caller: Caller, package_id: str, name: str, body: Iterable[bytes], *,
               declared_length: int | None, expected_sha256: bytes | None) -> repo.ItemRow:
        """Store one item, streaming; nothing half-written survives a failure."""
        with self._engine.connect() as conn:
            package = self.authorize(conn, caller, package_id, Operation.MODIFY,
                                      "item.uploaded", item=name[:512])
            try:
                validate_item_name(name)
            except InvalidItemName as exc:
                raise self._refuse(caller, "item.uploaded", package_id, exc,
                                   outcome="failed") from None
            if package.sealed_at is not None:
                raise self._refuse(caller, "item.uploaded", package_id,
                                   PackageSealed("the package is sealed"), item=name)
            if repo.get_item(conn, package_id, name) is not None:
                raise self._refuse(caller, "item.uploaded", package_id,
                                   ItemExists(f"item {name!r} already exists"), item=name)
        if declared_length is not None and declared_length > self._max_item_bytes:
            raise self._refuse(caller, "item.uploaded", package_id, ItemTooLarge(
                f"item is {declared_length} bytes; the maximum is {self._max_item_bytes}"),
                item=name, outcome="failed")

        received = 0

        def limited() -> Iterator[bytes]:
            nonlocal received
            for chunk in body:
                received += len(chunk)
                if received > self._max_item_bytes:
                    raise ItemTooLarge(f"item exceeds the maximum of {self._max_item_bytes} bytes")
                yield chunk

        object_name = self._vault.new_object_name()
        with self._engine.begin() as conn:
            repo.add_pending_object(conn, object_name, self._clock(), package_id=package_id,
                                    item=name, authority=caller.authority,
                                    subject=caller.subject)
        try:
            stored = self._vault.put_item(package_id, name, limited(), object_name=object_name)
        except ItemTooLarge as exc:
            self._discard(object_name)
            raise self._refuse(caller, "item.uploaded", package_id, exc, item=name,
                               outcome="failed") from None
        except BaseException as exc:
            self._discard(object_name)
            self._record_failure(caller, package_id, name, exc)
            raise
        try:
            if expected_sha256 is not None and not hmac.compare_digest(
                    bytes.fromhex(stored.sha256), expected_sha256):
                raise self._refuse(caller, "item.uploaded", package_id, DigestMismatch(
                    "the received bytes do not match the Content-Digest; nothing was stored"),
                    item=name, outcome="failed")
            with self._mutating() as conn:
                current = repo.lock_package(conn, package_id)
                if current is None or current.sealed_at is not None:
                    raise self._refuse(caller, "item.uploaded", package_id,
                                       PackageSealed("the package was sealed during the upload"),
                                       item=name)
                if repo.get_item(conn, package_id, name) is not None:
                    raise self._refuse(caller, "item.uploaded", package_id,
                                       ItemExists(f"item {name!r} already exists"), item=name)
                self._recorder.record(caller, "item.uploaded", package=package_id, item=name,
                                      details={"size": stored.plaintext_size,
                                               "sha256": stored.sha256})
                self._before_write(conn)
                repo.insert_item(conn, package_id=package_id, name=name, size=stored.plaintext_size,
                                 sha256=stored.sha256, object_name=object_name,
                                 storage=stored_to_json(stored), uploaded_by=caller.subject,
                                 uploaded_at=self._clock())
                repo.remove_pending_object(conn, object_name)
        except BaseException:
            self._discard(object_name)
            raise
        with self._engine.connect() as conn:
            item = repo.get_item(conn, package_id, name)
        assert item is not None
        return item

    def _record_failure(self, caller: Caller, package_id: str, name: str,
                        exc: BaseException) -> None:
        """Best effort: an upload that broke off (client gone, store down) is on the record too."""
        reason = "client disconnected" if type(exc).__name__ == "ClientDisconnect" \
            else f"upload failed: {type(exc).__name__}"
        try:
            self._recorder.record(caller, "item.uploaded", package=package_id, item=name,
                                  outcome="failed", reason=reason)
        except Exception:  # noqa: BLE001 - the original error is what the caller must see
            return

    def _discard(self, object_name: str) -> None:
        """Remove a partial or refused object; the sweeper retries if this fails."""
        try:
            self._vault.delete_object(object_name)
        except Exception:  # noqa: BLE001 - the pending row stays, the sweeper finishes the job
            return
        with self._engine.begin() as conn:
            repo.remove_pending_object(conn, object_name)

    def seal(self, caller: Caller, package_id: str) -> tuple[repo.PackageRow, int]:
        with self._mutating() as conn:
            self.authorize(conn, caller, package_id, Operation.MODIFY, "package.sealed")
            package = repo.lock_package(conn, package_id)
            assert package is not None
            if package.sealed_at is not None:
                raise self._refuse(caller, "package.sealed", package_id,
                                   PackageSealed("the package is already sealed"))
            items = repo.package_items(conn, package_id)
            manifest = manifest_sha256(package_id, items)
            index = self._recorder.record(
                caller, "package.sealed", package=package_id,
                details={"manifest_sha256": manifest, "items": len(items),
                         "bytes": sum(i.size for i in items)})
            self._before_write(conn)
            repo.seal(conn, package_id, sealed_at=self._clock(), sealed_by=caller.subject,
                      manifest_sha256=manifest)
        return self.read_row(package_id), index

    # -- sharing ------------------------------------------------------------------------------

    def share(self, caller: Caller, package_id: str, *, authority: str, legal_basis: str,
              request_reference: str, expires_at: datetime | None) -> repo.ShareRow:
        legal = {"basis": legal_basis, "request_reference": request_reference}
        with self._mutating() as conn:
            package = self.authorize(conn, caller, package_id, Operation.MODIFY,
                                      "share.created")
            repo.lock_package(conn, package_id)
            if package.sealed_at is None:
                raise self._refuse(caller, "share.created", package_id,
                                   PackageNotSealed("seal the package before sharing it"))
            if authority == caller.authority:
                raise self._refuse(caller, "share.created", package_id, InvalidRequest(
                    "a package cannot be shared with its own authority"), outcome="failed")
            if not self._known_authority(authority):
                raise self._refuse(caller, "share.created", package_id, InvalidRequest(
                    f"authority {authority!r} is not in the trust registry"), outcome="failed")
            now = self._clock()
            if expires_at is not None:
                if expires_at.tzinfo is None:
                    raise self._refuse(caller, "share.created", package_id, InvalidRequest(
                        "expires_at needs a time zone"), outcome="failed")
                if expires_at <= now:
                    raise self._refuse(caller, "share.created", package_id, InvalidRequest(
                        "expires_at is in the past"), outcome="failed")
                # Stored and recorded in UTC: SQLite keeps no offset, and the ledger and the
                # share row must say the same instant.
                expires_at = expires_at.astimezone(timezone.utc)
            self._recorder.record(
                caller, "share.created", package=package_id, legal=legal,
                details={"authority": authority,
                         "expires_at": expires_at.isoformat() if expires_at else None})
            self._before_write(conn)
            repo.upsert_share(conn, package_id=package_id, authority=authority,
                              legal_basis=legal_basis, request_reference=request_reference,
                              expires_at=expires_at, created_by=caller.subject, created_at=now)
            share = repo.get_share(conn, package_id, authority)
        assert share is not None
        return share

    def revoke(self, caller: Caller, package_id: str, authority: str) -> repo.ShareRow:
        with self._mutating() as conn:
            self.authorize(conn, caller, package_id, Operation.MODIFY, "share.revoked")
            repo.lock_package(conn, package_id)
            share = repo.get_share(conn, package_id, authority)
            if share is None or share.revoked_at is not None:
                raise self._refuse(caller, "share.revoked", package_id, InvalidRequest(
                    f"there is no active share with {authority!r}"), outcome="failed")
            self._recorder.record(
                caller, "share.revoked", package=package_id,
                legal={"basis": share.legal_basis, "request_reference": share.request_reference},
                details={"authority": authority})
            self._before_write(conn)
            repo.revoke_share(conn, package_id, authority, revoked_at=self._clock(),
                              revoked_by=caller.subject)
            share = repo.get_share(conn, package_id, authority)
        assert share is not None
        return share

    # -- retrieval ----------------------------------------------------------------------------

    def begin_download(self, caller: Caller, package_id: str, name: str,
                       byte_range: Callable[[repo.ItemRow], tuple[int, int] | None]) -> Download:
        """Authorise, record ``download.started`` durably, then open the decrypting stream."""
        with self._engine.connect() as conn:
            package = self.authorize(conn, caller, package_id, Operation.DOWNLOAD,
                                      "download.started", item=name[:512])
            item = repo.get_item(conn, package_id, name)
            share = repo.get_share(conn, package_id, caller.authority)
        if item is None:
            raise self._refuse(caller, "download.started", package_id,
                               ItemNotFound(f"the package has no item {name!r}"),
                               outcome="failed")
        try:
            selected = byte_range(item)
        except Exception as exc:
            raise self._refuse(caller, "download.started", package_id, exc, item=name,
                               outcome="failed") from None
        start, end = selected if selected else (0, item.size)
        legal = None
        if share is not None and caller.authority != package.owner_authority:
            legal = {"basis": share.legal_basis, "request_reference": share.request_reference}
        index = self._recorder.record(
            caller, "download.started", package=package_id, item=name, legal=legal,
            details={"offset": start, "length": end - start, "sha256": item.sha256})
        try:
            chunks = self._open(item, package_id, name, start, end - start)
            # Authenticate the first chunk before any header goes out: a tampered object is
            # then a clear 500 integrity failure, not a connection cut after a 200.
            first = next(chunks, b"")
        except Exception as exc:
            self.finish_download(caller, package_id, name, sent=0, error=exc)
            raise
        return Download(package, item, start, end, itertools.chain((first,), chunks), index)

    def _open(self, item: repo.ItemRow, package_id: str, name: str, offset: int,
              length: int) -> Iterator[bytes]:
        stored = stored_from_json(item.storage)
        try:
            return self._vault.open_item(stored, package_id, name, offset=offset, length=length)
        except UnknownKey:
            # Another replica rotated the KEK and rewrapped this item: read the keys again.
            self._vault.keyring.reload()
            return self._vault.open_item(stored, package_id, name, offset=offset, length=length)

    def finish_download(self, caller: Caller, package_id: str, name: str, *, sent: int,
                        error: BaseException | None, expected: int | None = None) -> None:
        """Record completion, or an abort with the bytes sent and why."""
        if error is None and (expected is None or sent == expected):
            self._recorder.record(caller, "download.completed", package=package_id, item=name,
                                  details={"bytes_sent": sent})
            return
        reason = "client disconnected" if error is None or isinstance(
            error, (GeneratorExit, ConnectionError)) else type(error).__name__
        self._recorder.record(caller, "download.aborted", package=package_id, item=name,
                              outcome="failed", reason=reason, details={"bytes_sent": sent})


def stored_to_json(stored: StoredItem) -> dict[str, Any]:
    """What the item row keeps of where its encrypted objects are."""
    return {"object_name": stored.object_name, "plaintext_size": stored.plaintext_size,
            "sha256": stored.sha256, "ciphertext_size": stored.ciphertext_size,
            "key_ids": list(stored.key_ids)}


def stored_from_json(data: dict[str, Any]) -> StoredItem:
    return StoredItem(object_name=data["object_name"], plaintext_size=data["plaintext_size"],
                      sha256=data["sha256"], ciphertext_size=data["ciphertext_size"],
                      key_ids=tuple(data["key_ids"]))


def manifest_sha256(package_id: str, items: list[repo.ItemRow]) -> str:
    """SHA-256 of the JCS manifest ``{"package", "items": [{"name","size","sha256"}...]}``."""
    manifest = {"package": package_id,
                "items": [{"name": i.name, "size": i.size, "sha256": i.sha256}
                          for i in sorted(items, key=lambda i: i.name)]}
    return hashlib.sha256(canonicalize(manifest)).hexdigest()

