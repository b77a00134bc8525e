"""Requests in the browser: the inbox (incoming and outgoing, overdue first, then by next
deadline) and one request's page, where its investigators take the steps `evx request` offers
(acknowledge, ask, recognise, refuse, postpone, deliver, fulfil; answer and withdraw on the
requesting side) through CSRF-protected forms and the same service as the API."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from pydantic import ValidationError

from service.requests.lifecycle import DELIVERABLE, TRANSITIONS, Side
from service.requests.schemas import DeliveryCreate, TransitionBody
from service.web.catalogue import t
from service.web.pages import (
    MAX_LISTED,
    PREFIX,
    WebError,
    _current,
    _domain,
    _form,
    _render,
    _runtime,
    _to_sign_in,
)

if TYPE_CHECKING:
    from service.identity.caller import Caller

router = APIRouter(prefix=PREFIX, include_in_schema=False)
B = TypeVar("B", TransitionBody, DeliveryCreate)


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _utc(text: str) -> str | None:
    """A form's date and time (UTC unless it names a zone), for the models to parse."""
    text = text.strip()
    if not text:
        return None
    return text if "+" in text or text.endswith("Z") else text + "Z"


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{e['loc'][0] if e['loc'] else ''}: {e['msg']}" for e in exc.errors())


@router.get("/requests", response_class=HTMLResponse)
async def requests_page(request: Request) -> Response:
    session = await _current(request)
    if session is None:
        return _to_sign_in()
    from service.requests import repository as requests_repo

    officer = session.principal
    service = _runtime(request).requests
    rows = await _domain(lambda: service.list(officer, requests_repo.ListFilter(
        authority=officer.authority, side=None, states=(), open_only=False, due_before=None,
        overdue_at=None, sort="due", limit=MAX_LISTED, offset=0)))
    now = service.now()
    listed = [(r, r.requesting_authority == officer.authority,
               r.next_due_at is not None and now >= _aware(r.next_due_at)) for r in rows]
    listed.sort(key=lambda x: (not x[2], _aware(x[0].next_due_at) if x[0].next_due_at
                               else datetime.max.replace(tzinfo=UTC)))
    return _render(request, "requests.html", session, requests=listed)


def _back(request_id: str, error: str | None = None) -> RedirectResponse:
    url = f"{PREFIX}/requests/{quote(request_id, safe='')}"
    if error:
        url += "?error=" + quote(error[:300], safe="")
    return RedirectResponse(url, status_code=303)


@router.get("/requests/{request_id}", response_class=HTMLResponse)
async def request_page(request: Request, request_id: str, error: str = "") -> Response:
    session = await _current(request)
    if session is None:
        return _to_sign_in()
    officer = session.principal
    runtime = _runtime(request)
    view = await _domain(lambda: runtime.requests.read(officer, request_id))
    r = view.request
    side = Side.REQUESTING if r.requesting_authority == officer.authority else Side.EXECUTING
    acting = officer.role == "investigator"
    # The steps this officer may take now (the service checks again when one is posted).
    steps = [(name, step) for name, step in TRANSITIONS.items()
             if acting and step.side is side and r.state in {s.value for s in step.sources}]
    deliverable = acting and side is Side.EXECUTING and r.state in {s.value for s in DELIVERABLE}
    packages = []
    if deliverable:
        rows = await _domain(lambda: runtime.packages.list(officer, limit=MAX_LISTED, offset=0))
        packages = [p for p, _, _ in rows
                    if p.owner_authority == officer.authority and p.sealed_at is not None]
    now = runtime.requests.now()
    return _render(request, "request.html", session, r=view.request, view=view,
                   outgoing=side is Side.REQUESTING, steps=steps, deliverable=deliverable,
                   packages=packages, now=now, error=error or None)


async def _act(request: Request, request_id: str, build: Callable[[dict[str, str]], B],
               call: Callable[[Caller, B], object]) -> Response:
    """A posted step: the session's form (CSRF checked), its fields as the API's model, the
    service call; back to the request's page, with the reason when something was refused."""
    session = await _current(request)
    if session is None:
        return _to_sign_in()
    fields = await _form(request, session)
    try:
        body = build(fields)
    except ValidationError as exc:
        return _back(request_id, _problems(exc))
    try:
        await _domain(lambda: call(session.principal, body))
    except WebError as exc:
        return _back(request_id, exc.message)
    return _back(request_id)


@router.post("/requests/{request_id}/steps/{name}")
async def take_step(request: Request, request_id: str, name: str) -> Response:
    if name not in TRANSITIONS:
        raise WebError(404, t("request.unknown_step"))
    service = _runtime(request).requests
    return await _act(
        request, request_id,
        lambda f: TransitionBody.model_validate({"note": f.get("note", ""),
                                                 "until": _utc(f.get("until", ""))}),
        lambda officer, body: service.transition(officer, request_id, name, note=body.note,
                                                 until=body.until))


@router.post("/requests/{request_id}/deliveries")
async def deliver(request: Request, request_id: str) -> Response:
    service = _runtime(request).requests
    return await _act(
        request, request_id,
        lambda f: DeliveryCreate.model_validate({"package": f.get("package", ""),
                                                 "expires_at": _utc(f.get("expires_at", ""))}),
        lambda officer, body: service.deliver(officer, request_id, body.package,
                                              expires_at=body.expires_at))
