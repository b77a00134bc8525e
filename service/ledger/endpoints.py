"""Ledger endpoints: checkpoint, verifier key, proofs, entries and the export.

Checkpoints, the key and proofs reveal only hashes: every authenticated partner may read them.
Entries and the export reveal who did what to which package: the operator's auditors only (other
auditors read the entries about their packages through ``/v1/packages/{id}/custody``).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import AsyncIterator
from typing import IO, Annotated, Any, cast

import anyio
import anyio.to_thread
from fastapi import APIRouter, Depends, Query
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel

from custody.checkpoint import Checkpoint
from custody.errors import VerificationError
from service.auth import Officer
from service.identity.tokens import Principal
from service.ledger.errors import LedgerAccessDenied, LedgerCorrupted
from service.ledger.ledger import Ledger
from service.ledger.models import StoredCheckpoint
from service.ledger.witnesses import CosignatureCollector, served_note
from service.recorder import CustodyRecorder
from service.settings import Settings
from service.wiring import SettingsDep, provide, provide_optional

router = APIRouter(prefix="/v1/ledger", tags=["ledger"])
MAX_ENTRIES_PAGE = 1000
EXPORT_QUEUE_PIECES = 64  # bounded hand-off between the exporting thread and the response


class InclusionProofOut(BaseModel):
    index: int
    tree_size: int
    leaf_hash: str
    proof: list[str]


class ConsistencyProofOut(BaseModel):
    from_size: int
    to_size: int
    proof: list[str]


class EntryOut(BaseModel):
    index: int
    leaf_hash: str
    entry: dict[str, Any]


class EntriesOut(BaseModel):
    tree_size: int
    entries: list[EntryOut]


LedgerDep = Annotated[Ledger, Depends(provide("ledger", Ledger))]
RecorderDep = Annotated[CustodyRecorder, Depends(provide("recorder", CustodyRecorder))]


#: The witnesses' cosignature collector, None when no witness is configured.
CollectorDep = Annotated[CosignatureCollector | None,
                         Depends(provide_optional("collector", CosignatureCollector))]


def _require_operator_auditor(settings: Settings, recorder: CustodyRecorder, officer: Principal,
                              action: str) -> None:
    if officer.role == "auditor" and officer.authority == settings.operator_authority:
        return
    reason = "only the operator's auditors read the whole ledger; use the package custody"
    recorder.record(officer, action, outcome="denied", reason=reason)
    raise LedgerAccessDenied(reason)


def current_checkpoint(ledger: Ledger) -> StoredCheckpoint:
    """The latest signed checkpoint if it covers the whole tree, else a freshly signed one."""
    latest = ledger.latest_checkpoint()
    if latest is not None and latest.tree_size == ledger.tree_size():
        try:
            Checkpoint.verify(latest.note, ledger.verifier_key)
        except VerificationError:
            raise LedgerCorrupted("the latest checkpoint is not signed by the current log "
                                  "key; refusing to serve it") from None
        return latest
    return ledger.sign_checkpoint()


@router.get("/checkpoint", response_class=PlainTextResponse,
            responses={200: {"content": {"text/plain": {}},
                             "description": "C2SP tlog-checkpoint signed note"}})
async def checkpoint(officer: Officer, ledger: LedgerDep, collector: CollectorDep,
                     settings: SettingsDep) -> PlainTextResponse:
    """The latest signed checkpoint of the whole ledger (C2SP signed note). With witnesses
    configured: the newest checkpoint cosigned by a majority of them (``EVX_WITNESS_QUORUM``),
    with one cosignature line per witness after the log's signature; before any cosignature, the
    log-signed checkpoint alone."""
    witnessed = await anyio.to_thread.run_sync(served_note, collector, ledger,
                                               settings.witness_quorum)
    if witnessed is not None:
        return PlainTextResponse(witnessed, media_type="text/plain; charset=utf-8")
    signed = await anyio.to_thread.run_sync(current_checkpoint, ledger)
    return PlainTextResponse(signed.note, media_type="text/plain; charset=utf-8")


@router.get("/key", response_class=PlainTextResponse,
            responses={200: {"content": {"text/plain": {}},
                             "description": "C2SP note verifier key"}})
def verifier_key(ledger: LedgerDep) -> PlainTextResponse:
    """The log's public key as a C2SP note verifier key (pin it on first use)."""
    key = str(ledger.verifier_key)
    return PlainTextResponse(key + "\n", media_type="text/plain; charset=utf-8")


@router.get("/proofs/inclusion", response_model=InclusionProofOut)
def inclusion_proof(officer: Officer, ledger: LedgerDep,
                    index: Annotated[int, Query(ge=0, le=2**53)],
                    tree_size: Annotated[int, Query(ge=1, le=2**53)]) -> InclusionProofOut:
    """RFC 9162 inclusion proof of entry ``index`` in the tree of ``tree_size`` entries."""
    proof = ledger.inclusion_proof(index, tree_size)
    leaf = ledger.entry(index).leaf_hash
    return InclusionProofOut(index=index, tree_size=tree_size, leaf_hash=leaf.hex(),
                             proof=[h.hex() for h in proof])


@router.get("/proofs/consistency", response_model=ConsistencyProofOut)
def consistency_proof(officer: Officer, ledger: LedgerDep,
                      from_size: Annotated[int, Query(alias="from", ge=1, le=2**53)],
                      to_size: Annotated[int, Query(alias="to", ge=1, le=2**53)]
                      ) -> ConsistencyProofOut:
    """RFC 9162 consistency proof that the tree of ``to`` entries extends that of ``from``."""
    proof = ledger.consistency_proof(from_size, to_size)
    return ConsistencyProofOut(from_size=from_size, to_size=to_size,
                               proof=[h.hex() for h in proof])


@router.get("/entries", response_model=EntriesOut)
def entries(officer: Officer, ledger: LedgerDep, recorder: RecorderDep, settings: SettingsDep,
            start: Annotated[int, Query(ge=0, le=2**53)] = 0,
            limit: Annotated[int, Query(ge=1, le=MAX_ENTRIES_PAGE)] = 100) -> EntriesOut:
    """A page of the whole ledger (operator's auditors)."""
    _require_operator_auditor(settings, recorder, officer, "ledger.read")
    recorder.record(officer, "ledger.read", details={"start": start, "limit": limit})
    stored = ledger.entries(start, limit)
    return EntriesOut(tree_size=ledger.tree_size(),
                      entries=[EntryOut(index=s.index, leaf_hash=s.leaf_hash.hex(),
                                        entry=s.entry.to_dict()) for s in stored])


class ExportCancelled(Exception):
    """The response was abandoned; the exporting thread stops."""


class _QueueWriter:
    """A write-only file object handing bytes to the response through a bounded queue."""

    def __init__(self, pieces: queue.Queue[bytes | BaseException | None],
                 cancelled: threading.Event) -> None:
        self._pieces = pieces
        self._cancelled = cancelled

    def write(self, data: bytes) -> int:
        while True:
            if self._cancelled.is_set():
                raise ExportCancelled("the client went away")
            try:
                self._pieces.put(bytes(data), timeout=0.5)
                return len(data)
            except queue.Full:
                continue

    def flush(self) -> None:
        return None


@router.get("/export", response_class=StreamingResponse,
            responses={200: {"content": {"application/x-ndjson": {}},
                             "description": "JSON Lines export (docs/ledger-format.md)"}})
async def export(officer: Officer, ledger: LedgerDep, recorder: RecorderDep,
                 settings: SettingsDep, collector: CollectorDep,
                 witnessed: Annotated[bool, Query(
                     description="Export under the newest witnessed checkpoint (the one "
                                 "/v1/ledger/checkpoint serves, with its cosignatures) instead "
                                 "of a fresh one; the same as without when there is none.")
                 ] = False) -> StreamingResponse:
    """The whole ledger with a fresh signed checkpoint, for ``evx ledger verify`` (operator's
    auditors)."""
    def authorize_and_record() -> None:
        _require_operator_auditor(settings, recorder, officer, "ledger.exported")
        recorder.record(officer, "ledger.exported")

    await anyio.to_thread.run_sync(authorize_and_record)
    pieces: queue.Queue[bytes | BaseException | None] = queue.Queue(EXPORT_QUEUE_PIECES)
    cancelled = threading.Event()

    def produce() -> None:
        try:
            note = served_note(collector, ledger, settings.witness_quorum) if witnessed else None
            # The export only calls write() and flush(), which _QueueWriter has.
            out = cast(IO[bytes], _QueueWriter(pieces, cancelled))
            if note is not None:
                ledger.export_with(out, note)
            else:
                ledger.export(out)
            pieces.put(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the response, which re-raises
            if not cancelled.is_set():
                pieces.put(exc)

    threading.Thread(target=produce, name="ledger-export", daemon=True).start()

    def take() -> bytes | BaseException | None:
        return pieces.get()

    async def body() -> AsyncIterator[bytes]:
        try:
            while True:
                piece = await anyio.to_thread.run_sync(take)
                if piece is None:
                    return
                if isinstance(piece, BaseException):
                    raise piece
                yield piece
        finally:
            cancelled.set()
            _drain(pieces)

    return StreamingResponse(body(), media_type="application/x-ndjson",
                             headers={"Content-Disposition": 'attachment; filename="ledger.jsonl"',
                                      "Cache-Control": "no-store"})


def _drain(pieces: queue.Queue[bytes | BaseException | None]) -> None:
    # Unblock a producer stuck on a full queue after the client went away.
    while True:
        try:
            pieces.get_nowait()
        except queue.Empty:
            return
