"""HTTP endpoints of the request domain: thin; decisions live in RequestService."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Annotated
from zoneinfo import ZoneInfo

import anyio.to_thread
from fastapi import APIRouter, Depends, Query, Response

from service.auth import Officer
from service.ledger.endpoints import LedgerDep, RecorderDep
from service.packages.custody_endpoints import CustodyOut, proven_record
from service.packages.endpoints import ERRORS
from service.problems import AS_PROBLEM, Responses
from service.requests import repository as repo
from service.requests.deadlines import (
    LEGAL_BASIS,
    Deadline,
    Instrument,
    State,
    parse_duration,
    rules_document,
)
from service.requests.errors import InvalidRequestData
from service.requests.schemas import (
    DeadlineOut,
    DeliveryCreate,
    DeliveryOut,
    HistoryOut,
    NextDeadlineOut,
    RequestCreate,
    RequestList,
    RequestOut,
    RulesOut,
    TransitionBody,
)
from service.requests.service import Filing, RequestService, RequestView
from service.wiring import provide

router = APIRouter(prefix="/v1/requests", tags=["requests"])

RESPONSES: Responses = {
    **ERRORS,
    404: {"description": "No such request for this authority", **AS_PROBLEM},
    409: {"description": "Not possible in the request's state", **AS_PROBLEM},
    422: {"description": "Invalid values", **AS_PROBLEM},
}


class TransitionName(enum.StrEnum):
    acknowledge = "acknowledge"
    ask = "ask"
    answer = "answer"
    recognise = "recognise"
    refuse = "refuse"
    postpone = "postpone"
    execute_partly = "execute-partly"
    fulfil = "fulfil"
    withdraw = "withdraw"


class Side(enum.StrEnum):
    incoming = "incoming"
    outgoing = "outgoing"


class Sort(enum.StrEnum):
    due = "due"
    filed = "filed"
    updated = "updated"


RequestsDep = Annotated[RequestService, Depends(provide("requests", RequestService))]


def _local(at: datetime, zone: str) -> str:
    return at.astimezone(ZoneInfo(zone)).isoformat() + f" ({zone})"


def _deadline_out(d: Deadline, zone: str, now: datetime) -> DeadlineOut:
    return DeadlineOut(milestone=d.milestone.value, due_at=d.due_at,
                       due_local=_local(d.due_at, zone), rule=d.rule.describe(),
                       source=d.rule.source, open=d.open, met_at=d.met_at,
                       overdue=d.overdue(now))


def request_out(r: repo.RequestRow, now: datetime, view: RequestView | None = None) -> RequestOut:
    upcoming = None
    if r.next_due_at is not None and r.next_milestone is not None:
        upcoming = NextDeadlineOut(milestone=r.next_milestone, due_at=r.next_due_at,
                                   due_local=_local(r.next_due_at, r.timezone),
                                   overdue=now >= r.next_due_at)
    out = RequestOut(
        id=r.id, requesting_authority=r.requesting_authority,
        executing_authority=r.executing_authority, instrument=r.instrument,
        legal_basis=LEGAL_BASIS[Instrument(r.instrument)], reference=r.reference,
        case_reference=r.case_reference, offence_category=r.offence_category,
        measures=list(r.measures), urgency=r.urgency, confidentiality=r.confidentiality,
        attachments_package=r.attachments_package, state=r.state, timezone=r.timezone,
        filed_by=r.filed_by, filed_at=r.filed_at, updated_at=r.updated_at,
        next_deadline=upcoming)
    if view is not None:
        out.deadlines = [_deadline_out(d, r.timezone, now) for d in view.deadlines]
        out.history = [HistoryOut(action=h.action, state=h.state, at=h.at, authority=h.authority,
                                  subject=h.subject, note=h.note, ledger_index=h.ledger_index)
                       for h in view.history]
        out.deliveries = [DeliveryOut(package=d.package_id, manifest_sha256=d.manifest_sha256,
                                      delivered_at=d.delivered_at, delivered_by=d.delivered_by,
                                      ledger_index=d.ledger_index,
                                      items_downloaded=view.downloaded.get(d.package_id))
                          for d in view.deliveries]
    return out


@router.post("", status_code=201, response_model=RequestOut, responses=RESPONSES)
def file_request(body: RequestCreate, officer: Officer, service: RequestsDep,
                 response: Response) -> RequestOut:
    """File a request to another authority (the requesting authority's investigators)."""
    row = service.file(officer, Filing(
        executing_authority=body.executing_authority, instrument=body.instrument,
        reference=body.reference, case_reference=body.case_reference,
        offence_category=body.offence_category, measures=body.measures, urgency=body.urgency,
        confidentiality=body.confidentiality, attachments_package=body.attachments_package))
    response.headers["Location"] = f"/v1/requests/{row.id}"
    return request_out(row, service.now())


@router.get("", response_model=RequestList, responses=RESPONSES)
def list_requests(
    officer: Officer, service: RequestsDep,
    side: Side | None = None,
    state: Annotated[list[State] | None, Query()] = None,
    open_only: Annotated[bool, Query(alias="open")] = False,
    due_within: Annotated[str | None, Query(max_length=20,
                                            description="e.g. 7d, 36h or P7D")] = None,
    overdue: bool = False,
    sort: Sort = Sort.due,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> RequestList:
    """Requests the caller's authority filed or must execute; by next deadline by default."""
    now = service.now()
    due_before = None
    if due_within is not None:
        try:
            due_before = now + parse_duration(due_within)
        except ValueError as exc:
            raise InvalidRequestData(str(exc)) from None
    rows = service.list(officer, repo.ListFilter(
        authority=officer.authority, side=side.value if side else None,
        states=tuple(s.value for s in state or ()), open_only=open_only,
        due_before=due_before, overdue_at=now if overdue else None, sort=sort.value,
        limit=limit, offset=offset))
    return RequestList(requests=[request_out(r, now) for r in rows])


@router.get("/rules", response_model=RulesOut, responses=ERRORS)
def deadline_rules(officer: Officer, service: RequestsDep) -> RulesOut:
    """The deadline rules this deployment applies, with their sources."""
    return RulesOut.model_validate({"rules": rules_document(service.rules)})


@router.get("/{request_id}", response_model=RequestOut, responses=RESPONSES)
def get_request(request_id: str, officer: Officer, service: RequestsDep) -> RequestOut:
    """One request with its deadlines, history and deliveries."""
    view = service.read(officer, request_id)
    return request_out(view.request, service.now(), view)


@router.post("/{request_id}/deliveries", status_code=201, response_model=RequestOut,
             responses=RESPONSES)
def deliver(request_id: str, body: DeliveryCreate, officer: Officer,
            service: RequestsDep) -> RequestOut:
    """Share a sealed package with the requesting authority as (part of) the answer; the share
    takes the request's legal basis and reference."""
    row, _ = service.deliver(officer, request_id, body.package, expires_at=body.expires_at)
    return request_out(row, service.now())


@router.post("/{request_id}/{transition}", response_model=RequestOut, responses=RESPONSES)
def transition(request_id: str, transition: TransitionName, officer: Officer, service: RequestsDep,
               body: TransitionBody | None = None) -> RequestOut:
    """acknowledge, ask, recognise, refuse, postpone, execute-partly, fulfil (executing side);
    answer, withdraw (requesting side). refuse, postpone, ask and answer need a note."""
    body = body or TransitionBody()
    row = service.transition(officer, request_id, transition.value, note=body.note,
                             until=body.until)
    return request_out(row, service.now())


@router.get("/{request_id}/custody", response_model=CustodyOut, responses=RESPONSES)
async def request_custody(request_id: str, officer: Officer, service: RequestsDep,
                          ledger: LedgerDep, recorder: RecorderDep,
                          start: Annotated[int, Query(ge=0, le=2**53)] = 0,
                          limit: Annotated[int, Query(ge=1, le=5_000)] = 5_000) -> CustodyOut:
    """The request's chain of custody (every entry with its id), each entry with an inclusion
    proof to a checkpoint signed after this read was recorded."""
    def work() -> CustodyOut:
        found = service.authorize_read(officer, request_id, "custody.read")
        recorder.record(officer, "custody.read", package=found.id)
        return proven_record(ledger, found.id, start, limit)

    return await anyio.to_thread.run_sync(work)

