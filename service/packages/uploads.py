"""Resumable uploads (draft-ietf-httpbis-resumable-upload): an item sent over several requests,
each continuing from the last durable point, on the record when complete.

The session row owns the item's object name from the first byte (like a pending object), so
the sweeper expires an abandoned upload and puts that on the record. ``item.uploaded`` is
recorded only after the whole-item SHA-256 -- rebuilt from what was stored whenever a request
resumes -- matched the ``Repr-Digest`` of the completing request.
"""

from __future__ import annotations

import hmac
import secrets
import threading
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import structlog

from service.packages import repository as repo
from service.packages.errors import (
    DigestMismatch,
    InvalidRequest,
    ItemExists,
    PackageSealed,
    UploadGone,
    UploadInProgress,
    UploadLengthMismatch,
    UploadOffsetMismatch,
    UploadSuperseded,
)
from service.packages.gate import Gate
from service.packages.policy import Caller, Operation
from service.packages.transfers import admit_new_item, record_item
from storage.errors import UnknownKey
from storage.staged import BodyReader, StagedItems, StageKey

log = structlog.get_logger("evx.uploads")


@dataclass(frozen=True)
class AppendOutcome:
    """Where an upload stands after a request: ``item`` is set once it is complete."""

    session: repo.UploadSession
    received: int  # bytes of this request's content read
    item: repo.ItemRow | None = None


# Digests of uploads whose bytes all arrived in a request of this process, kept for the request
# that completes them (which a client can only send once it has read the whole file): the
# completion then needs no second pass over the stored item. Anything else -- a resumption after
# a break, another replica, a restart -- rebuilds the digest from storage.
RECEIVED_DIGESTS_KEPT = 256


class ResumableUploads:
    def __init__(self, gate: Gate, staged: StagedItems, *, max_item_bytes: int,
                 idle_expiry: timedelta) -> None:
        self._gate = gate
        self._staged = staged
        self._max_item_bytes = max_item_bytes
        self.idle_expiry = idle_expiry
        self._received: OrderedDict[str, tuple[int, int, Any]] = OrderedDict()
        self._received_lock = threading.Lock()

    # -- creation -----------------------------------------------------------------------------

    def create(self, caller: Caller, package_id: str, name: str,
               length: int) -> repo.UploadSession:
        """Open an upload of ``length`` bytes for item ``name``.

        Raises:
            PackageNotFound, AccessDenied, ...: refused (recorded), as for a one-request upload.
            UploadInProgress: this item already has an upload (with its id when it is the
                caller's own, so the caller can resume it).
            ItemExists, PackageSealed, ItemTooLarge, InvalidItemName: refused (recorded).
        """
        admit_new_item(self._gate, caller, package_id, name, length, self._max_item_bytes)
        with self._gate.engine.connect() as conn:
            existing = repo.upload_session_for_item(conn, package_id, name)
        if existing is not None:
            raise self._in_progress(caller, existing)
        object_name = self._staged.begin(package_id, name, length)
        now = self._gate.now()
        session = repo.UploadSession(
            id="upl_" + secrets.token_hex(16), package_id=package_id, item=name,
            object_name=object_name, length=length, received=0, chunks=0, generation=0,
            authority=caller.authority, subject=caller.subject, role=caller.role,
            created_at=now, updated_at=now)
        try:
            with self._gate.engine.begin() as conn:
                repo.add_upload_session(conn, **session.__dict__)
        except Exception:
            self._staged.discard(object_name)
            with self._gate.engine.connect() as conn:
                existing = repo.upload_session_for_item(conn, package_id, name)
            if existing is not None:  # lost a race with another creation of the same item
                raise self._in_progress(caller, existing) from None
            raise
        return session

    def _in_progress(self, caller: Caller, existing: repo.UploadSession) -> Exception:
        own = (existing.authority, existing.subject) == (caller.authority, caller.subject)
        return UploadInProgress(
            f"item {existing.item!r} already has an upload in progress"
            + ("" if own else " by another officer"),
            upload_id=existing.id if own else None,
            offset=existing.received if own else None, length=existing.length if own else None)

    # -- offset retrieval ---------------------------------------------------------------------

    def status(self, caller: Caller, upload_id: str) -> repo.UploadSession:
        """The caller's upload (its durable offset).

        Raises:
            UploadGone: no such upload of this caller (finished, cancelled, expired, never).
        """
        with self._gate.engine.connect() as conn:
            session = repo.get_upload_session(conn, upload_id)
        if session is None or (session.authority, session.subject) != (caller.authority,
                                                                       caller.subject):
            raise UploadGone(f"upload {upload_id[:48]} does not exist (any more)")
        return session

    # -- appending ----------------------------------------------------------------------------

    def append(self, caller: Caller, upload_id: str, *, offset: int, complete: bool,
               body: Iterable[bytes], length: int | None = None,
               repr_sha256: bytes | None = None) -> AppendOutcome:
        """Append the request content at ``offset`` (which must be the durable offset), store
        it segment by segment, and complete the item if ``complete``.

        Whole chunks received before a broken connection are kept; the body's error is then
        re-raised. A request superseded by a newer one for the same upload stops at its next
        segment.

        Raises:
            UploadGone, UploadOffsetMismatch, UploadLengthMismatch, UploadSuperseded: the
                request does not continue the upload (nothing was stored).
            DigestMismatch: the completed item is not what the Repr-Digest says (recorded;
                the upload is discarded).
            InvalidRequest: completing without a Repr-Digest.
            Exception: the body's own error (client gone) after what arrived was kept.
        """
        session = self.status(caller, upload_id)
        with self._gate.engine.connect() as conn:
            self._gate.authorize(conn, caller, session.package_id, Operation.MODIFY,
                                 "item.uploaded", item=session.item)
        if length is not None and length != session.length:
            raise UploadLengthMismatch(f"the upload is {session.length} bytes, not {length}")
        if offset != session.received:
            raise UploadOffsetMismatch(session.received, offset)
        if complete and repr_sha256 is None:
            raise InvalidRequest("the completing request must carry the item's Repr-Digest "
                                 "(RFC 9530, sha-256)")
        now = self._gate.now()
        with self._gate.engine.begin() as conn:
            if not repo.take_over_upload(conn, session, now):
                raise UploadSuperseded("another request moved this upload meanwhile; ask for "
                                       "its offset (HEAD) and continue from there")
        mine = session.generation + 1
        key = self._open(session)
        digest = self._kept_digest(session)
        if digest is None:
            digest = self._staged.received_digest(key, self._segments(session.id),
                                                  session.chunks)
        reader = BodyReader(body)
        chunks, received = session.chunks, session.received
        while chunks < key.layout.chunk_count:
            written = self._staged.write_segment(key, session.object_name, chunks, reader,
                                                 digest)
            if written is None:
                break
            with self._gate.engine.begin() as conn:
                if not repo.commit_upload_segment(
                        conn, session.id, mine, segment=written.name, first_chunk=chunks,
                        chunk_count=written.chunk_count, received=written.plaintext_end,
                        now=self._gate.now()):
                    raise UploadSuperseded("a newer request took this upload over")
            chunks += written.chunk_count
            received = written.plaintext_end
        if reader.error is not None:
            raise reader.error
        if chunks == key.layout.chunk_count and (reader.buffered or reader.read(1)):
            raise UploadLengthMismatch(f"the content goes past the declared length of "
                                       f"{session.length} bytes")
        session = replace(session, chunks=chunks, received=received, generation=mine)
        if not complete:
            if chunks == key.layout.chunk_count:
                self._keep_digest(session, digest)
            return AppendOutcome(session, reader.received)
        if chunks < key.layout.chunk_count:
            raise UploadLengthMismatch(
                f"the upload was completed at byte {received + reader.buffered} of "
                f"{session.length} (durable offset {received})")
        item = self._complete(caller, session, key, digest.hexdigest(), repr_sha256)
        return AppendOutcome(session, reader.received, item)

    def _complete(self, caller: Caller, session: repo.UploadSession, key: StageKey,
                  sha256: str, expected: bytes | None) -> repo.ItemRow:
        assert expected is not None
        package_id, name = session.package_id, session.item
        if not hmac.compare_digest(bytes.fromhex(sha256), expected):
            self._drop(session)
            raise self._gate.refuse(caller, "item.uploaded", package_id, DigestMismatch(
                "the received bytes do not match the Repr-Digest of the completing request; "
                "nothing was stored"), item=name, outcome="failed")
        stored = self._staged.assemble(key, session.object_name, self._segments(session.id))
        stored = replace(stored, sha256=sha256)
        try:
            item = record_item(self._gate, caller, package_id, name, stored,
                               release=lambda conn: repo.remove_upload_session(conn, session.id))
        except (PackageSealed, ItemExists):
            self._drop(session)
            raise
        try:
            self._staged.remove_segments(session.object_name)
        except Exception as exc:  # noqa: BLE001 - the reconciling sweep removes them later
            log.warning("staged_segments_left", object=session.object_name,
                        error=type(exc).__name__)
        return item

    # -- cancellation -------------------------------------------------------------------------

    def cancel(self, caller: Caller, upload_id: str) -> None:
        """Discard the caller's upload; recorded as a failed ``item.uploaded``.

        Raises:
            UploadGone: no such upload of this caller.
        """
        session = self.status(caller, upload_id)
        self._gate.recorder.record(caller, "item.uploaded", package=session.package_id,
                                   item=session.item, outcome="failed",
                                   reason="upload cancelled by the uploader; nothing was stored",
                                   details={"bytes_received": session.received,
                                            "size": session.length})
        self._drop(session)

    # -- helpers ------------------------------------------------------------------------------

    def _keep_digest(self, session: repo.UploadSession, digest: Any) -> None:
        with self._received_lock:
            self._received[session.id] = (session.generation, session.chunks, digest.copy())
            while len(self._received) > RECEIVED_DIGESTS_KEPT:
                self._received.popitem(last=False)

    def _kept_digest(self, session: repo.UploadSession) -> Any:
        """The digest kept by the request that received the last byte, if nothing moved since."""
        with self._received_lock:
            kept = self._received.pop(session.id, None)
        if kept is None or kept[:2] != (session.generation, session.chunks):
            return None
        return kept[2]

    def _open(self, session: repo.UploadSession) -> StageKey:
        try:
            return self._staged.open(session.object_name, session.package_id, session.item)
        except UnknownKey:
            self._staged.vault.keyring.reload()  # another replica rotated the KEK meanwhile
            return self._staged.open(session.object_name, session.package_id, session.item)

    def _segments(self, upload_id: str) -> list[str]:
        with self._gate.engine.connect() as conn:
            return repo.upload_segment_names(conn, upload_id)

    def _drop(self, session: repo.UploadSession) -> None:
        """Remove the session and its objects (the sweeper finishes if the store fails)."""
        with self._gate.engine.begin() as conn:
            repo.remove_upload_session(conn, session.id)
            repo.add_pending_object(conn, session.object_name, self._gate.now())
        try:
            self._staged.discard(session.object_name)
        except Exception:  # noqa: BLE001 - the pending row stays; the sweeper removes them
            return
        with self._gate.engine.begin() as conn:
            repo.remove_pending_object(conn, session.object_name)


def upload_limits(session: repo.UploadSession, idle_expiry: timedelta,
                  max_item_bytes: int, now: datetime) -> dict[str, int]:
    """The ``Upload-Limit`` members for this upload: size bound and remaining lifetime."""
    remaining = session.updated_at + idle_expiry - now
    return {"max-size": max_item_bytes, "max-age": max(0, int(remaining.total_seconds()))}

