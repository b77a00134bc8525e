"""A package's custody record: its entries, each with an inclusion proof to a fresh checkpoint."""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, Field

from service.auth import Officer
from service.ledger.endpoints import LedgerDep, RecorderDep
from service.ledger.ledger import Ledger
from service.packages.endpoints import ERRORS
from service.packages.gate import Gate
from service.packages.policy import Operation
from service.wiring import EngineDep, provide

router = APIRouter(prefix="/v1/packages", tags=["custody"])

MAX_CUSTODY_ENTRIES = 5_000  # one response; page with start= beyond that
GateDep = Annotated[Gate, Depends(provide("gate", Gate))]


class ProvenEntryOut(BaseModel):
    index: int
    leaf_hash: str = Field(description="Hex RFC 9162 leaf hash of the entry's canonical bytes.")
    entry: dict[str, Any] = Field(description="The ledger entry (docs/ledger-format.md).")
    inclusion_proof: list[str] = Field(description="Hex hashes, RFC 9162 order.")


class CustodyOut(BaseModel):
    package: str
    tree_size: int
    checkpoint: str = Field(description="C2SP signed note of the tree the proofs lead to.")
    verifier_key: str
    entries: list[ProvenEntryOut]
    complete: bool = Field(description="False when more entries follow (page with start=).")


@router.get("/{package_id}/custody", response_model=CustodyOut, responses=ERRORS)
async def package_custody(
    package_id: str, officer: Officer, engine: EngineDep, gate: GateDep, ledger: LedgerDep,
    recorder: RecorderDep,
    start: Annotated[int, Query(ge=0, le=2**53)] = 0,
    limit: Annotated[int, Query(ge=1, le=MAX_CUSTODY_ENTRIES)] = MAX_CUSTODY_ENTRIES,
) -> CustodyOut:
    """The package's chain of custody: every entry about it, in order, with inclusion proofs to
    a checkpoint signed after this read was recorded (so the read itself is in the record)."""
    def work() -> CustodyOut:
        with engine.connect() as conn:
            gate.authorize(conn, officer, package_id, Operation.READ_CUSTODY, "custody.read")
        recorder.record(officer, "custody.read", package=package_id)
        return proven_record(ledger, package_id, start, limit)

    return await anyio.to_thread.run_sync(work)


def proven_record(ledger: Ledger, subject: str, start: int, limit: int) -> CustodyOut:
    """Every entry about ``subject`` (a package or a request) from ``start``, with inclusion
    proofs to a checkpoint signed now (after the caller's read was recorded)."""
    checkpoint = ledger.sign_checkpoint()
    size = checkpoint.tree_size
    stored = ledger.package_entries(subject, start=start, limit=limit + 1)
    stored = [s for s in stored if s.index < size]
    complete = len(stored) <= limit
    page = stored[:limit]
    proofs = ledger.inclusion_proofs([s.index for s in page], size) if page else []
    entries = [
        ProvenEntryOut(index=s.index, leaf_hash=s.leaf_hash.hex(), entry=s.entry.to_dict(),
                       inclusion_proof=[h.hex() for h in proof])
        for s, proof in zip(page, proofs, strict=True)
    ]
    return CustodyOut(package=subject, tree_size=size, checkpoint=checkpoint.note,
                      verifier_key=str(ledger.verifier_key), entries=entries,
                      complete=complete)
