"""Queries of events, webhook endpoints and the outbox: the only place that touches their tables.

:func:`emit` is called inside the transaction of the change it reports, so the change, the event
and its outbox rows commit (or vanish) together.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from service.db import as_utc
from service.events.tables import events, webhook_attempts, webhook_deliveries, webhook_endpoints

_aware = as_utc

# Set on a connection whose transaction put a delivery in the outbox: its commit wakes the
# notifier (service/runtime.py). Only those commits: the notifier's own commits woke it again,
# a busy loop that kept a core and the database busy (issue 11, /healthz under load).
OUTBOX_WRITTEN = "evx.outbox_written"


@dataclass(frozen=True)
class EventRow:
    seq: int
    id: str
    authority: str
    type: str
    occurred_at: datetime
    data: dict[str, Any]


def new_event_id() -> str:
    return "msg_" + secrets.token_hex(16)


def emit(conn: Connection, authorities: Iterable[str], event_type: str, data: dict[str, Any], *,
         now: datetime, once_key: str | None = None) -> list[EventRow]:
    """One event per authority, and an outbox row per matching webhook endpoint of it.

    With ``once_key``, an authority that already has an event with that key gets no new one
    (the unique constraint settles races between replicas).
    """
    created = []
    for authority in dict.fromkeys(authorities):
        if once_key is not None and conn.execute(sa.select(events.c.seq).where(
                events.c.authority == authority, events.c.once_key == once_key)).first():
            continue
        event_id = new_event_id()
        seq = conn.execute(events.insert().values(
            id=event_id, authority=authority, type=event_type, occurred_at=now, data=data,
            once_key=once_key).returning(events.c.seq)).scalar_one()
        for endpoint_id, types in conn.execute(sa.select(
                webhook_endpoints.c.id, webhook_endpoints.c.event_types).where(
                webhook_endpoints.c.authority == authority,
                webhook_endpoints.c.disabled_at.is_(None))):
            if types and event_type not in types:
                continue
            conn.execute(webhook_deliveries.insert().values(
                event_seq=seq, endpoint_id=endpoint_id, status="pending", attempts=0,
                next_attempt_at=now))
            conn.info[OUTBOX_WRITTEN] = True
        created.append(EventRow(seq, event_id, authority, event_type, now, data))
    return created


def events_after(conn: Connection, authority: str, after: int, limit: int,
                 types: list[str] | None = None) -> list[EventRow]:
    stmt = sa.select(events).where(events.c.authority == authority, events.c.seq > after)
    if types:
        stmt = stmt.where(events.c.type.in_(types))
    rows = conn.execute(stmt.order_by(events.c.seq).limit(limit)).all()
    return [EventRow(r.seq, r.id, r.authority, r.type, _aware(r.occurred_at), r.data)  # type: ignore[arg-type]
            for r in rows]


def latest(conn: Connection, authority: str, limit: int) -> list[EventRow]:
    """The ``limit`` newest events of ``authority``, newest first (the web application's
    notices)."""
    rows = conn.execute(sa.select(events).where(events.c.authority == authority)
                        .order_by(events.c.seq.desc()).limit(limit)).all()
    return [EventRow(r.seq, r.id, r.authority, r.type, _aware(r.occurred_at), r.data)  # type: ignore[arg-type]
            for r in rows]


def last_seq(conn: Connection, authority: str) -> int:
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(events.c.seq), 0)).where(
        events.c.authority == authority)).scalar_one())


# -- webhook endpoints -----------------------------------------------------------------------------


@dataclass(frozen=True)
class EndpointRow:
    id: str
    authority: str
    url: str
    secret: str
    event_types: list[str]
    created_at: datetime
    disabled_at: datetime | None


def add_endpoint(conn: Connection, *, authority: str, url: str, secret: str,
                 event_types: list[str], now: datetime) -> EndpointRow:
    endpoint_id = "ep_" + secrets.token_hex(12)
    conn.execute(webhook_endpoints.insert().values(
        id=endpoint_id, authority=authority, url=url, secret=secret, event_types=event_types,
        created_at=now))
    return EndpointRow(endpoint_id, authority, url, secret, event_types, now, None)


def endpoints(conn: Connection, authority: str | None = None) -> list[EndpointRow]:
    stmt = sa.select(webhook_endpoints).order_by(webhook_endpoints.c.created_at)
    if authority is not None:
        stmt = stmt.where(webhook_endpoints.c.authority == authority)
    return [EndpointRow(r.id, r.authority, r.url, r.secret, list(r.event_types),
                        _aware(r.created_at), _aware(r.disabled_at))  # type: ignore[arg-type]
            for r in conn.execute(stmt)]


def disable_endpoint(conn: Connection, endpoint_id: str, now: datetime) -> bool:
    result = conn.execute(webhook_endpoints.update().where(
        webhook_endpoints.c.id == endpoint_id, webhook_endpoints.c.disabled_at.is_(None))
        .values(disabled_at=now))
    return result.rowcount == 1


# -- the outbox ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DueDelivery:
    id: int
    attempts: int
    url: str
    secret: str
    event_id: str
    event_type: str
    occurred_at: datetime
    data: dict[str, Any]


def claim_due(conn: Connection, now: datetime, limit: int, lease_until: datetime) -> list[
        DueDelivery]:
    """Pending deliveries due by ``now``, leased until ``lease_until`` (so a second replica does
    not send them meanwhile; a crashed sender's lease simply runs out)."""
    d, e, w = webhook_deliveries, events, webhook_endpoints
    stmt = (sa.select(d.c.id, d.c.attempts, w.c.url, w.c.secret, e.c.id.label("event_id"),
                      e.c.type, e.c.occurred_at, e.c.data)
            .join(e, e.c.seq == d.c.event_seq).join(w, w.c.id == d.c.endpoint_id)
            .where(d.c.status == "pending", d.c.next_attempt_at <= now)
            .order_by(d.c.next_attempt_at, d.c.id).limit(limit))
    if conn.dialect.name == "postgresql":
        stmt = stmt.with_for_update(of=d, skip_locked=True)
    rows = conn.execute(stmt).all()
    if rows:
        conn.execute(d.update().where(d.c.id.in_([r.id for r in rows]))
                     .values(next_attempt_at=lease_until))
    return [DueDelivery(r.id, r.attempts, r.url, r.secret, r.event_id, r.type,
                        _aware(r.occurred_at), r.data) for r in rows]  # type: ignore[arg-type]


def record_attempt(conn: Connection, delivery_id: int, attempt: int, *, at: datetime,
                   status_code: int | None, error: str | None, ms: int, delivered: bool,
                   next_attempt_at: datetime | None) -> None:
    conn.execute(webhook_attempts.insert().values(
        delivery_id=delivery_id, attempt=attempt, at=at, status_code=status_code,
        error=error[:500] if error else None, ms=ms))
    values: dict[str, Any] = {"attempts": attempt, "last_status": status_code,
                              "last_error": error[:500] if error else None}
    if delivered:
        values.update(status="delivered", delivered_at=at)
    elif next_attempt_at is None:
        values.update(status="failed")
    else:
        values.update(next_attempt_at=next_attempt_at)
    conn.execute(webhook_deliveries.update().where(webhook_deliveries.c.id == delivery_id)
                 .values(**values))


@dataclass(frozen=True)
class DeliveryLog:
    id: int
    endpoint_id: str
    url: str
    event_id: str
    event_type: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    delivered_at: datetime | None
    last_status: int | None
    last_error: str | None


def delivery_log(conn: Connection, authority: str, limit: int, status: str | None = None) -> list[
        DeliveryLog]:
    d, e, w = webhook_deliveries, events, webhook_endpoints
    stmt = (sa.select(d, w.c.url, e.c.id.label("event_id"), e.c.type)
            .join(e, e.c.seq == d.c.event_seq).join(w, w.c.id == d.c.endpoint_id)
            .where(w.c.authority == authority).order_by(d.c.id.desc()).limit(limit))
    if status:
        stmt = stmt.where(d.c.status == status)
    return [DeliveryLog(r.id, r.endpoint_id, r.url, r.event_id, r.type, r.status, r.attempts,
                        _aware(r.next_attempt_at) if r.status == "pending" else None,
                        _aware(r.delivered_at), r.last_status, r.last_error)
            for r in conn.execute(stmt)]


def attempts_of(conn: Connection, delivery_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    result: dict[int, list[dict[str, Any]]] = {i: [] for i in delivery_ids}
    if not delivery_ids:
        return result
    for r in conn.execute(sa.select(webhook_attempts).where(
            webhook_attempts.c.delivery_id.in_(delivery_ids)).order_by(
            webhook_attempts.c.delivery_id, webhook_attempts.c.attempt)):
        result[r.delivery_id].append({"attempt": r.attempt, "at": _aware(r.at),
                                      "status_code": r.status_code, "error": r.error,
                                      "ms": r.ms})
    return result
