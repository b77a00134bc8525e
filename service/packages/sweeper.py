"""Cleans up after processes that died: evidence objects that no item owns (a crash mid-upload,
or a failed delete), and downloads that never finished (recorded as aborted).

The invariant that makes this safe: an upload records its object name as *pending* (committed)
before the first byte is written, and the item row replaces the pending row in one transaction.
So every object in the store is owned by an item or a pending row -- except orphans. Pending rows
older than the grace period are uploads that died; their objects are removed, the death is put
on the record (the process may have died after recording the upload and before the item row
committed, so the custody record must say the item never arrived), then the row goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.engine import Engine

from service.packages import repository as repo
from service.recorder import CustodyRecorder
from storage.evidence import ENVELOPE_SUFFIX, ITEM_PREFIX, EvidenceVault
from storage.filesystem import FileSystemStore
from storage.staged import STAGING_PREFIX, object_name_of_segment, remove_staged

log = structlog.get_logger("evx.sweeper")


@dataclass(frozen=True)
class SweepReport:
    stale_pending: int  # uploads that died: their objects and rows removed
    unowned: int  # objects owned by nothing (reconcile only)
    temporaries: int = 0  # half-written temporary files of a killed writer (filesystem store)
    unfinished_downloads: int = 0  # started, never completed: their server died; now recorded
    expired_uploads: int = 0  # resumable uploads idle for longer than the grace: now recorded


@dataclass(frozen=True)
class Sweeper:
    """The system actor of the sweeper's ledger entries."""

    authority: str
    subject: str = "evx-sweeper"
    role: str = "system"


def sweep(engine: Engine, vault: EvidenceVault, *, now: datetime, grace: timedelta,
          recorder: CustodyRecorder, operator_authority: str,
          reconcile: bool = False) -> SweepReport:
    """Remove the objects of uploads pending for longer than ``grace``; with ``reconcile``, also
    every object under the item prefix that no item and no pending upload owns.

    Raises:
        storage.errors.BackendUnavailable: the store failed (rows of undeleted objects stay).
        service.ledger.errors.LedgerUnavailable: the death of an upload could not be recorded
            (its row stays; the next sweep records it).
    """
    with engine.connect() as conn:
        stale = repo.pending_uploads_before(conn, now - grace)
    actor = Sweeper(operator_authority)
    for upload in stale:
        remove_staged(vault.store, upload.object_name)
        vault.delete_object(upload.object_name)
        if upload.package_id is not None:
            recorder.record(actor, "item.uploaded", package=upload.package_id,
                            item=upload.item, outcome="failed",
                            reason="the upload never completed (its server process died); "
                                   "nothing was stored",
                            details={"uploader_authority": upload.authority,
                                     "uploader": upload.subject,
                                     "started_at": upload.started_at.isoformat()})
        with engine.begin() as conn:
            repo.remove_pending_object(conn, upload.object_name)
        log.warning("swept_stale_upload", object=upload.object_name,
                    package=upload.package_id)
    expired = _expire_idle_uploads(engine, vault, now - grace, recorder, actor)
    unowned = 0
    if reconcile:
        # List first, then read owners: an object listed before its upload finished is owned
        # by its pending row or (atomically after) its item row in the later snapshot.
        listed = {n.removesuffix(ENVELOPE_SUFFIX) for n in vault.store.list(ITEM_PREFIX)}
        staged = list(vault.store.list(STAGING_PREFIX))
        with engine.connect() as conn:
            uploading = repo.upload_object_names(conn)
            owned = repo.known_object_names(conn) | repo.all_pending_objects(conn) | uploading
        for name in sorted(listed - owned):
            vault.delete_object(name)
            unowned += 1
            log.warning("swept_unowned_object", object=name)
        # Segments of uploads that are gone (completed items keep no segments either).
        in_progress = {n.rsplit("/", 1)[1] for n in uploading}
        for segment in staged:
            stem = object_name_of_segment(segment)
            if stem is not None and stem not in in_progress:
                vault.store.delete(segment)
                unowned += 1
    with engine.connect() as conn:
        unfinished = repo.open_downloads_before(conn, now - grace)
    for download in unfinished:
        recorder.record(actor, "download.aborted", package=download.package_id,
                        item=download.item, outcome="failed",
                        reason="the download never finished (its server process died); "
                               "bytes sent unknown",
                        details={"started_index": download.started_index,
                                 "downloader_authority": download.authority,
                                 "downloader": download.subject})
        with engine.begin() as conn:
            repo.remove_open_download(conn, download.started_index)
        log.warning("swept_unfinished_download", started_index=download.started_index)
    temporaries = 0
    store = vault.store
    if isinstance(store, FileSystemStore):
        temporaries = store.remove_stale_temporaries(grace.total_seconds(), now=now.timestamp())
    return SweepReport(len(stale), unowned, temporaries, len(unfinished), expired)


def _expire_idle_uploads(engine: Engine, vault: EvidenceVault, cutoff: datetime,
                         recorder: CustodyRecorder, actor: Sweeper) -> int:
    """Resumable uploads that received nothing since ``cutoff`` are abandoned: their staged
    bytes go, and the custody record says the item never arrived (then the session row)."""
    with engine.connect() as conn:
        idle = repo.idle_upload_sessions(conn, cutoff)
    for upload in idle:
        remove_staged(vault.store, upload.object_name)
        vault.delete_object(upload.object_name)
        recorder.record(actor, "item.uploaded", package=upload.package_id, item=upload.item,
                        outcome="failed",
                        reason="the resumable upload was abandoned (no byte for longer than "
                               "the expiry) and expired; nothing was stored",
                        details={"uploader_authority": upload.authority,
                                 "uploader": upload.subject,
                                 "started_at": upload.created_at.isoformat(),
                                 "last_activity": upload.updated_at.isoformat(),
                                 "bytes_received": upload.received, "size": upload.length})
        with engine.begin() as conn:
            repo.remove_upload_session(conn, upload.id)
        log.warning("expired_idle_upload", upload=upload.id, package=upload.package_id)
    return len(idle)
