"""A package's custody record: its entries, each with an inclusion proof to a fresh checkpoint."""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from custody.bundle import make_bundle, verify_bundle
from custody.errors import VerificationError
from custody.policy import MAX_POLICY_BYTES, Policy, PolicyError
from custody.verify import ProvenEntry
from evx.client.bundle import sealed_manifest
from service.auth import Officer
from service.ledger.endpoints import CollectorDep, LedgerDep, RecorderDep
from service.ledger.ledger import Ledger
from service.ledger.witnesses import served_note
from service.packages.endpoints import ERRORS
from service.packages.gate import Gate
from service.packages.policy import Operation
from service.problems import AS_PROBLEM, CONFLICT, VALIDATION, Problem
from service.wiring import EngineDep, SettingsDep, provide

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


MAX_BUNDLE_ENTRIES = 10_000  # one bundle proves every entry of the package in one response


@router.post("/{package_id}/custody/bundle", responses={
    **ERRORS, 200: {"description": "The custody bundle (docs/ledger-format.md section 10)",
                    "content": {"application/json": {}}},
    409: {"description": "No checkpoint the hub has satisfies the policy's quorum",
          **AS_PROBLEM},
    422: {"description": "The policy is not a tlog-policy", **AS_PROBLEM}})
async def custody_bundle(
    package_id: str, officer: Officer, request: Request, engine: EngineDep, gate: GateDep,
    ledger: LedgerDep, recorder: RecorderDep, collector: CollectorDep, settings: SettingsDep,
) -> Response:
    """The package's custody bundle, made under the caller's own witness policy (the body,
    ``text/plain``: the one the auditor pinned) and verified under it before it is sent: every
    entry of the package proven in the newest checkpoint the policy accepts, with the sealed
    manifest. What ``evx custody PKG --bundle FILE`` makes; ``evx verify-bundle`` checks it."""
    body = await request.body()
    if len(body) > MAX_POLICY_BYTES:
        raise Problem(VALIDATION, f"the policy is larger than {MAX_POLICY_BYTES} bytes")
    try:
        policy = Policy.parse(body)
    except PolicyError as exc:
        raise Problem(VALIDATION, f"the policy is not a tlog-policy: {exc}") from None

    def work() -> bytes:
        with engine.connect() as conn:
            gate.authorize(conn, officer, package_id, Operation.READ_CUSTODY, "custody.read")
        recorder.record(officer, "custody.read", package=package_id)
        # The newest witnessed checkpoint, else one signed now (enough for "quorum none").
        note = served_note(collector, ledger, settings.witness_quorum) or \
            ledger.sign_checkpoint().note
        try:
            size = policy.verify_checkpoint(note).checkpoint.size
        except VerificationError as exc:
            raise Problem(CONFLICT, f"no checkpoint of this hub satisfies the policy: {exc}") \
                from None
        stored = [s for s in ledger.package_entries(package_id, limit=MAX_BUNDLE_ENTRIES)
                  if s.index < size]
        proofs = ledger.inclusion_proofs([s.index for s in stored], size) if stored else []
        proven = [ProvenEntry(s.entry, tuple(proof)) for s, proof in zip(stored, proofs,
                                                                          strict=True)]
        data = make_bundle(package_id, policy, proven, note,
                           sealed_manifest(package_id, [s.entry for s in stored]))
        verify_bundle(data, policy)  # never hand out a bundle that does not verify
        return data

    data = await anyio.to_thread.run_sync(work)
    return Response(data, media_type="application/json", headers={
        "Content-Disposition": f'attachment; filename="custody-bundle-{quote(package_id)}.json"',
        "Cache-Control": "no-store"})
