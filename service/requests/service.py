"""Mutual legal assistance requests: filing, transitions, deliveries -- each on the custody record.

A request's entries carry its id in the entry's ``package`` field (the id of the record's
subject), so its chain of custody is verified exactly as a package's is. Every transition records
its entry, then writes the new state, the history row and the events (with their webhook outbox
rows) in one transaction.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Connection

from service.events import repository as events
from service.ledger.ledger import Ledger
from service.packages.errors import PackageNotFound
from service.packages.gate import Gate
from service.packages.policy import Caller
from service.packages.service import PackageService
from service.requests import repository as repo
from service.requests.deadlines import (
    LEGAL_BASIS,
    TERMINAL,
    Deadline,
    Instrument,
    RulesTable,
    State,
    Urgency,
    compute_deadlines,
    next_deadline,
)
from service.requests.errors import (
    InvalidRequestData,
    RequestAccessDenied,
    RequestNotFound,
    RequestStateConflict,
)
from service.requests.lifecycle import (
    DELIVERABLE,
    TRANSITIONS,
    Side,
    TransitionRefused,
    target_state,
)

ZoneOf = Callable[[str], ZoneInfo]  # authority -> zone; raises InvalidRequestData if unknown

MAX_NOTE_CHARS = 10_000


def new_request_id() -> str:
    return "req_" + secrets.token_hex(16)


@dataclass(frozen=True)
class Filing:
    executing_authority: str
    instrument: Instrument
    reference: str
    case_reference: str
    offence_category: str
    measures: list[str]
    urgency: Urgency
    confidentiality: str
    attachments_package: str | None


@dataclass(frozen=True)
class RequestView:
    request: repo.RequestRow
    history: list[repo.HistoryRow]
    deliveries: list[repo.DeliveryRow]
    deadlines: list[Deadline]
    downloaded: dict[str, int]  # package id -> items the requesting authority downloaded


class RequestService:
    def __init__(self, gate: Gate, packages: PackageService, *, rules: RulesTable,
                 zone_of: ZoneOf, ledger: Ledger) -> None:
        self._gate = gate
        self._packages = packages
        self._rules = rules
        self._zone_of = zone_of
        self._ledger = ledger

    @property
    def rules(self) -> RulesTable:
        return self._rules

    def now(self) -> datetime:
        return self._gate.now()

    # -- access -------------------------------------------------------------------------------

    def _legal(self, request: repo.RequestRow) -> dict[str, str]:
        return {"basis": LEGAL_BASIS[Instrument(request.instrument)],
                "request_reference": request.reference}

    def _visible(self, caller: Caller, request_id: str, action: str,
                 request: repo.RequestRow | None) -> repo.RequestRow:
        """The request if the caller's authority is one of its two; else record and 404."""
        if request is None or caller.authority not in (request.requesting_authority,
                                                       request.executing_authority):
            self._gate.recorder.record(caller, action, outcome="denied",
                                       reason="no such request for this authority",
                                       details={"requested_request": request_id[:80]})
            raise RequestNotFound(f"request {request_id} not found")
        return request

    def _refuse(self, caller: Caller, action: str, request: repo.RequestRow,
                error: Exception, outcome: str = "denied") -> Exception:
        self._gate.recorder.record(caller, action, package=request.id, outcome=outcome,
                                   reason=str(error), legal=self._legal(request))
        return error

    # -- filing -------------------------------------------------------------------------------

    def file(self, caller: Caller, filing: Filing) -> repo.RequestRow:
        action = "request.filed"
        if caller.role != "investigator":
            self._gate.recorder.record(caller, action, outcome="denied",
                                       reason="only investigators file requests")
            raise RequestAccessDenied("only investigators file requests")
        problem = None
        if filing.executing_authority == caller.authority:
            problem = "a request goes to another authority"
        elif (filing.instrument, filing.urgency) not in self._rules:
            problem = f"no deadline rules for {filing.instrument} / {filing.urgency}"
        if problem is None:
            try:
                zone = self._zone_of(filing.executing_authority)
            except InvalidRequestData as exc:
                problem = str(exc)
        if problem is not None:
            self._gate.recorder.record(caller, action, outcome="failed", reason=problem)
            raise InvalidRequestData(problem)
        request_id = new_request_id()
        legal = {"basis": LEGAL_BASIS[filing.instrument], "request_reference": filing.reference}
        if filing.attachments_package:
            # The signed form and annexes: a sealed package of the requesting authority, sent
            # to the executing one under the request's legal basis (on the package's record).
            try:
                package = self._packages.read_row(filing.attachments_package)
            except PackageNotFound:
                package = None
            if package is None or package.owner_authority != caller.authority:
                self._gate.recorder.record(caller, action, outcome="failed",
                                           reason="attachments package not found")
                raise InvalidRequestData(
                    f"attachments package {filing.attachments_package} not found")
            self._packages.share(caller, package.id, authority=filing.executing_authority,
                                 legal_basis=legal["basis"],
                                 request_reference=filing.reference, expires_at=None)
        now = self._gate.now()
        index = self._gate.recorder.record(
            caller, action, package=request_id, legal=legal,
            details={"requesting": caller.authority, "executing": filing.executing_authority,
                     "instrument": filing.instrument.value, "urgency": filing.urgency.value,
                     "state": State.FILED.value, "attachments": filing.attachments_package})
        values: dict[str, Any] = dict(
            id=request_id, requesting_authority=caller.authority,
            executing_authority=filing.executing_authority, instrument=filing.instrument.value,
            reference=filing.reference, case_reference=filing.case_reference,
            offence_category=filing.offence_category, measures=list(filing.measures),
            urgency=filing.urgency.value, confidentiality=filing.confidentiality,
            attachments_package=filing.attachments_package, state=State.FILED.value,
            resume_state=None, timezone=str(zone), filed_by=caller.subject, filed_at=now,
            acknowledged_at=None, recognised_at=None, decided_at=None, closed_at=None,
            updated_at=now)
        values.update(self._next(repo.RequestRow(next_due_at=None, next_milestone=None,
                                                 **values)))
        with self._gate.mutating() as conn:
            self._gate.before_write(conn)
            repo.insert_request(conn, **values)
            repo.add_history(conn, request_id, action=action, state=State.FILED.value, at=now,
                             authority=caller.authority, subject=caller.subject, note="",
                             ledger_index=index)
            request = repo.get_request(conn, request_id)
            assert request is not None
            self._emit(conn, request, "request.filed", now, actor=caller)
        return request

    # -- transitions --------------------------------------------------------------------------

    def transition(self, caller: Caller, request_id: str, name: str, *, note: str = "",
                   until: datetime | None = None) -> repo.RequestRow:
        """Apply transition ``name`` (see ``lifecycle.TRANSITIONS``) as ``caller``.

        Raises:
            RequestNotFound, RequestAccessDenied, RequestStateConflict, InvalidRequestData.
        """
        t = TRANSITIONS[name]
        with self._gate.mutating() as conn:
            request = self._visible(caller, request_id, t.action,
                                    repo.lock_request(conn, request_id))
            side = self._side(caller, request)
            if caller.role != "investigator" or side is not t.side:
                raise self._refuse(caller, t.action, request, RequestAccessDenied(
                    f"only the {t.side.value} authority's investigators can {name} a request"))
            try:
                target = target_state(t, State(request.state),
                                      State(request.resume_state) if request.resume_state
                                      else None)
            except TransitionRefused as exc:
                raise self._refuse(caller, t.action, request, RequestStateConflict(str(exc)),
                                   outcome="failed") from None
            if t.needs_note and not note.strip():
                raise self._refuse(caller, t.action, request, InvalidRequestData(
                    f"{name} needs grounds or text (--note)"), outcome="failed")
            now = self._gate.now()
            if until is not None:
                if until.tzinfo is None or until <= now:
                    raise self._refuse(caller, t.action, request, InvalidRequestData(
                        "until must be a future time with a time zone"), outcome="failed")
                until = until.astimezone(UTC)
            details: dict[str, str | int | bool | None] = {
                "from": request.state, "to": target.value}
            if until is not None:
                details["until"] = until.isoformat()
            index = self._gate.recorder.record(caller, t.action, package=request.id,
                                               legal=self._legal(request), details=details)
            self._gate.before_write(conn)
            changes = self._state_change(request, target, now)
            if name == "ask":
                changes["resume_state"] = request.state
            elif name == "answer":
                changes["resume_state"] = None
            merged = repo.RequestRow(**{**request.__dict__, **changes})
            changes.update(self._next(merged))
            repo.update_request(conn, request.id, **changes)
            repo.add_history(conn, request.id, action=t.action, state=target.value, at=now,
                             authority=caller.authority, subject=caller.subject,
                             note=note[:MAX_NOTE_CHARS] + (f" (until {until.isoformat()})"
                                                           if until else ""),
                             ledger_index=index)
            updated = repo.get_request(conn, request.id)
            assert updated is not None
            self._emit(conn, updated, t.action, now, actor=caller, note=note)
        return updated

    @staticmethod
    def _state_change(request: repo.RequestRow, target: State, now: datetime) -> dict[str, Any]:
        changes: dict[str, Any] = {"state": target.value, "updated_at": now}
        if target is State.ACKNOWLEDGED and request.acknowledged_at is None:
            changes["acknowledged_at"] = now
        if target is State.RECOGNISED and request.recognised_at is None:
            changes["recognised_at"] = now
            changes["decided_at"] = now
        if target is State.REFUSED:
            changes["decided_at"] = request.decided_at or now
        if target in TERMINAL:
            changes["closed_at"] = now
        return changes

    def _next(self, request: repo.RequestRow) -> dict[str, Any]:
        upcoming = next_deadline(self.deadlines(request))
        return {"next_due_at": upcoming.due_at if upcoming else None,
                "next_milestone": upcoming.milestone.value if upcoming else None}

    def deadlines(self, request: repo.RequestRow) -> list[Deadline]:
        return compute_deadlines(request.timeline(), self._rules, ZoneInfo(request.timezone))

    @staticmethod
    def _side(caller: Caller, request: repo.RequestRow) -> Side:
        return Side.REQUESTING if caller.authority == request.requesting_authority \
            else Side.EXECUTING

    # -- deliveries ---------------------------------------------------------------------------

    def deliver(self, caller: Caller, request_id: str, package_id: str, *,
                expires_at: datetime | None) -> tuple[repo.RequestRow, repo.DeliveryRow]:
        """Share ``package_id`` with the requesting authority as (part of) the answer."""
        action = "request.delivered"
        with self._gate.engine.connect() as conn:
            request = self._visible(caller, request_id, action, repo.get_request(conn,
                                                                                 request_id))
        if caller.role != "investigator" or self._side(caller, request) is not Side.EXECUTING:
            raise self._refuse(caller, action, request, RequestAccessDenied(
                "only the executing authority's investigators answer a request"))
        if State(request.state) not in DELIVERABLE:
            raise self._refuse(caller, action, request, RequestStateConflict(
                f"the request is {request.state}; packages answer it once acknowledged or "
                "recognised"), outcome="failed")
        legal = self._legal(request)
        # The share is the package's own record (share.created, with the request's basis).
        self._packages.share(caller, package_id, authority=request.requesting_authority,
                             legal_basis=legal["basis"],
                             request_reference=legal["request_reference"],
                             expires_at=expires_at)
        package = self._packages.read_row(package_id)
        assert package.manifest_sha256 is not None
        now = self._gate.now()
        with self._gate.mutating() as conn:
            locked = repo.lock_request(conn, request_id)
            assert locked is not None
            request = locked
            index = self._gate.recorder.record(
                caller, action, package=request.id, legal=legal,
                details={"delivered_package": package_id,
                         "manifest_sha256": package.manifest_sha256, "state": request.state})
            self._gate.before_write(conn)
            if repo.get_delivery(conn, request.id, package_id) is None:
                repo.add_delivery(conn, request_id=request.id, package_id=package_id,
                                  manifest_sha256=package.manifest_sha256, delivered_at=now,
                                  delivered_by=caller.subject, ledger_index=index)
            repo.add_history(conn, request.id, action=action, state=request.state, at=now,
                             authority=caller.authority, subject=caller.subject,
                             note=f"package {package_id}", ledger_index=index)
            repo.update_request(conn, request.id, updated_at=now)
            self._emit(conn, request, action, now, actor=caller,
                       extra={"package": package_id,
                              "manifest_sha256": package.manifest_sha256})
            delivery = repo.get_delivery(conn, request.id, package_id)
        assert delivery is not None
        return self.read_row(request_id), delivery

    # -- reading ------------------------------------------------------------------------------

    def read_row(self, request_id: str) -> repo.RequestRow:
        with self._gate.engine.connect() as conn:
            request = repo.get_request(conn, request_id)
        if request is None:
            raise RequestNotFound(f"request {request_id} not found")
        return request

    def authorize_read(self, caller: Caller, request_id: str, action: str) -> repo.RequestRow:
        """Either authority of the request, any role; everyone else a recorded 404."""
        with self._gate.engine.connect() as conn:
            return self._visible(caller, request_id, action, repo.get_request(conn, request_id))

    def read(self, caller: Caller, request_id: str) -> RequestView:
        request = self.authorize_read(caller, request_id, "request.read")
        self._gate.recorder.record(caller, "request.read", package=request.id,
                                   legal=self._legal(request))
        with self._gate.engine.connect() as conn:
            history = repo.request_history(conn, request.id)
            delivered = repo.request_deliveries(conn, request.id)
        downloaded = {}
        for d in delivered:
            entries = self._ledger.package_entries(d.package_id, limit=10_000)
            downloaded[d.package_id] = len({
                e.entry.item for e in entries
                if e.entry.action.value == "download.completed"
                and e.entry.actor.authority == request.requesting_authority})
        return RequestView(request, history, delivered, self.deadlines(request), downloaded)

    def list(self, caller: Caller, f: repo.ListFilter) -> list[repo.RequestRow]:
        with self._gate.engine.connect() as conn:
            rows = repo.list_requests(conn, f)
        self._gate.recorder.record(caller, "request.listed",
                                   details={"count": len(rows), "offset": f.offset})
        return rows

    # -- events -------------------------------------------------------------------------------

    def _emit(self, conn: Connection, request: repo.RequestRow, event_type: str,
              now: datetime, *,
              actor: Caller, note: str = "", extra: dict[str, Any] | None = None) -> None:
        data = event_data(request)
        data["actor"] = {"authority": actor.authority, "subject": actor.subject}
        if note:
            data["note"] = note[:MAX_NOTE_CHARS]
        data.update(extra or {})
        events.emit(conn, (request.requesting_authority, request.executing_authority),
                    event_type, data, now=now)


def event_data(request: repo.RequestRow) -> dict[str, Any]:
    """What an event says about a request (both of its authorities may receive it)."""
    return {"request": request.id, "reference": request.reference,
            "requesting_authority": request.requesting_authority,
            "executing_authority": request.executing_authority,
            "instrument": request.instrument, "urgency": request.urgency,
            "state": request.state,
            "next_deadline": None if request.next_due_at is None else {
                "milestone": request.next_milestone,
                "due_at": request.next_due_at.isoformat()}}
