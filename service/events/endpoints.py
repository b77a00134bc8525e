"""The event feed (for partners that cannot receive webhooks) and the webhook delivery log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from service.auth import Officer
from service.events import repository as repo
from service.packages.endpoints import ERRORS
from service.packages.errors import AccessDenied
from service.wiring import EngineDep

router = APIRouter(tags=["events"])


class EventOut(BaseModel):
    seq: int = Field(description="Position in this authority's feed; pass it as after=.")
    id: str = Field(description="The event id (webhook-id of its webhook deliveries).")
    type: str
    timestamp: datetime
    data: dict[str, Any]


class EventFeed(BaseModel):
    events: list[EventOut]
    last: int = Field(description="The seq to pass as after= next time.")


class AttemptOut(BaseModel):
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    ms: int


class DeliveryOut(BaseModel):
    id: int
    endpoint: str
    url: str
    event_id: str
    event_type: str
    status: str = Field(description="pending | delivered | failed")
    attempts: int
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    attempts_log: list[AttemptOut]


class EndpointOut(BaseModel):
    id: str
    url: str
    event_types: list[str] = Field(description="Empty: every type.")
    created_at: datetime
    disabled_at: datetime | None


class WebhooksOut(BaseModel):
    endpoints: list[EndpointOut]
    deliveries: list[DeliveryOut]


@router.get("/v1/events", response_model=EventFeed, responses=ERRORS)
async def event_feed(
    officer: Officer, engine: EngineDep,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    type_: Annotated[list[str] | None, Query(alias="type", max_length=20)] = None,
) -> EventFeed:
    """Events concerning the caller's authority after ``after``, oldest first. ``after=0`` is
    the start; keep the returned ``last``."""

    def read() -> list[repo.EventRow]:
        with engine.connect() as conn:
            return repo.events_after(conn, officer.authority, after, limit, type_)

    rows = await anyio.to_thread.run_sync(read)
    return EventFeed(events=[EventOut(seq=r.seq, id=r.id, type=r.type, timestamp=r.occurred_at,
                                      data=r.data) for r in rows],
                     last=rows[-1].seq if rows else after)


@router.get("/v1/webhooks", response_model=WebhooksOut, responses=ERRORS)
def webhook_log(officer: Officer, engine: EngineDep,
                status: Annotated[str | None, Query(pattern="^(pending|delivered|failed)$")]
                = None,
                limit: Annotated[int, Query(ge=1, le=500)] = 100) -> WebhooksOut:
    """The authority's webhook endpoints and its latest deliveries with every attempt (for its
    auditors, who administer it; endpoints are registered by the hub with `evx webhook add`)."""
    if officer.role != "auditor":
        raise AccessDenied("the webhook log is for the authority's auditors")
    with engine.connect() as conn:
        endpoints = repo.endpoints(conn, officer.authority)
        deliveries = repo.delivery_log(conn, officer.authority, limit, status)
        attempts = repo.attempts_of(conn, [d.id for d in deliveries])
    return WebhooksOut(
        endpoints=[EndpointOut(id=e.id, url=e.url, event_types=e.event_types,
                               created_at=e.created_at, disabled_at=e.disabled_at)
                   for e in endpoints],
        deliveries=[DeliveryOut(id=d.id, endpoint=d.endpoint_id, url=d.url,
                                event_id=d.event_id, event_type=d.event_type, status=d.status,
                                attempts=d.attempts, next_attempt_at=d.next_attempt_at,
                                delivered_at=d.delivered_at,
                                attempts_log=[AttemptOut(**a) for a in attempts[d.id]])
                    for d in deliveries])
