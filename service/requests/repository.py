"""Queries of the request domain: the only place that touches its tables."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from service.db import as_utc
from service.requests.deadlines import Instrument, State, Timeline, Urgency
from service.requests.tables import deliveries, history, requests

_aware = as_utc


@dataclass(frozen=True)
class RequestRow:
    id: str
    requesting_authority: str
    executing_authority: str
    instrument: str
    reference: str
    case_reference: str
    offence_category: str
    measures: list[str]
    urgency: str
    confidentiality: str
    attachments_package: str | None
    state: str
    resume_state: str | None
    timezone: str
    filed_by: str
    filed_at: datetime
    acknowledged_at: datetime | None
    recognised_at: datetime | None
    decided_at: datetime | None
    closed_at: datetime | None
    updated_at: datetime
    next_due_at: datetime | None
    next_milestone: str | None

    def timeline(self) -> Timeline:
        return Timeline(Instrument(self.instrument), Urgency(self.urgency), State(self.state),
                        self.filed_at, self.acknowledged_at, self.recognised_at,
                        self.decided_at, self.closed_at)


@dataclass(frozen=True)
class HistoryRow:
    request_id: str
    seq: int
    action: str
    state: str
    at: datetime
    authority: str
    subject: str
    note: str
    ledger_index: int


@dataclass(frozen=True)
class DeliveryRow:
    request_id: str
    package_id: str
    manifest_sha256: str
    delivered_at: datetime
    delivered_by: str
    ledger_index: int


def _row(cls: type, row: sa.Row[Any]) -> Any:
    return cls(**{k: _aware(v) for k, v in row._mapping.items()})


def insert_request(conn: Connection, **values: Any) -> None:
    conn.execute(requests.insert().values(**values))


def get_request(conn: Connection, request_id: str) -> RequestRow | None:
    row = conn.execute(sa.select(requests).where(requests.c.id == request_id)).first()
    return None if row is None else _row(RequestRow, row)


def lock_request(conn: Connection, request_id: str) -> RequestRow | None:
    row = conn.execute(sa.select(requests).where(requests.c.id == request_id)
                       .with_for_update()).first()
    return None if row is None else _row(RequestRow, row)


def update_request(conn: Connection, request_id: str, **values: Any) -> None:
    conn.execute(requests.update().where(requests.c.id == request_id).values(**values))


@dataclass(frozen=True)
class ListFilter:
    authority: str
    side: str | None = None          # "incoming" (we execute) | "outgoing" (we requested)
    states: tuple[str, ...] = ()
    open_only: bool = False
    due_before: datetime | None = None   # next deadline at or before
    overdue_at: datetime | None = None   # next deadline passed at this instant
    sort: str = "due"                   # due | filed | updated
    limit: int = 100
    offset: int = 0


def list_requests(conn: Connection, f: ListFilter) -> list[RequestRow]:
    r = requests
    mine = {"incoming": r.c.executing_authority == f.authority,
            "outgoing": r.c.requesting_authority == f.authority}
    stmt = sa.select(r).where(mine[f.side] if f.side else sa.or_(*mine.values()))
    if f.states:
        stmt = stmt.where(r.c.state.in_(f.states))
    if f.open_only:
        stmt = stmt.where(r.c.closed_at.is_(None))
    if f.due_before is not None:
        stmt = stmt.where(r.c.next_due_at.is_not(None), r.c.next_due_at <= f.due_before)
    if f.overdue_at is not None:
        stmt = stmt.where(r.c.next_due_at.is_not(None), r.c.next_due_at <= f.overdue_at)
    order = {
        # Requests without an open deadline last, whatever the database's NULL ordering.
        "due": (sa.case((r.c.next_due_at.is_(None), 1), else_=0), r.c.next_due_at,
                r.c.filed_at),
        "filed": (r.c.filed_at.desc(),),
        "updated": (r.c.updated_at.desc(),),
    }[f.sort]
    rows = conn.execute(stmt.order_by(*order, r.c.id).limit(f.limit).offset(f.offset)).all()
    return [_row(RequestRow, row) for row in rows]


def add_history(conn: Connection, request_id: str, **values: Any) -> None:
    seq = conn.execute(sa.select(sa.func.coalesce(sa.func.max(history.c.seq), -1) + 1).where(
        history.c.request_id == request_id)).scalar_one()
    conn.execute(history.insert().values(request_id=request_id, seq=seq, **values))


def request_history(conn: Connection, request_id: str) -> list[HistoryRow]:
    rows = conn.execute(sa.select(history).where(history.c.request_id == request_id)
                        .order_by(history.c.seq)).all()
    return [_row(HistoryRow, row) for row in rows]


def add_delivery(conn: Connection, **values: Any) -> None:
    conn.execute(deliveries.insert().values(**values))


def request_deliveries(conn: Connection, request_id: str) -> list[DeliveryRow]:
    rows = conn.execute(sa.select(deliveries).where(deliveries.c.request_id == request_id)
                        .order_by(deliveries.c.delivered_at)).all()
    return [_row(DeliveryRow, row) for row in rows]


def get_delivery(conn: Connection, request_id: str, package_id: str) -> DeliveryRow | None:
    row = conn.execute(sa.select(deliveries).where(deliveries.c.request_id == request_id,
                                                   deliveries.c.package_id == package_id)).first()
    return None if row is None else _row(DeliveryRow, row)


def open_with_deadline_before(conn: Connection, before: datetime) -> list[RequestRow]:
    rows = conn.execute(sa.select(requests).where(
        requests.c.closed_at.is_(None), requests.c.next_due_at.is_not(None),
        requests.c.next_due_at <= before).order_by(requests.c.next_due_at).limit(1000)).all()
    return [_row(RequestRow, row) for row in rows]
