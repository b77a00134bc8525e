"""The web application's pages (``/app/``): server-rendered, enhanced by small ES modules.

Every page is rendered for the officer of the session cookie, through the same services (and
so the same authorisation and ledger entries) as the API. Every form that changes something
carries the session's CSRF token; a form without it, or sent from another origin, is refused
before anything happens.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import parse_qs, quote

import anyio.to_thread
import jinja2
import structlog
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from markupsafe import Markup
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import problems
from service.identity.registry import TrustRegistry
from service.packages.archive import archive_folder
from service.packages.schemas import PackageCreate, ShareCreate
from service.web import signin
from service.web.catalogue import LANGUAGE, MESSAGES, shown, t
from service.web.sessions import (
    CSRF_FIELD,
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    SIGN_IN_SECONDS,
    WebSession,
    cookie_value,
)
from service.wiring import service_of

if TYPE_CHECKING:
    from service.identity.authorities import Authority
    from service.identity.caller import Caller
    from service.packages.repository import ShareRow
    from service.runtime import Runtime

log = structlog.get_logger("evx.web")
HERE = Path(__file__).parent
PREFIX = "/app"
MAX_FORM_BYTES = 64 * 1024  # a form here is a few fields; the guard bounds it as JSON too
MAX_LISTED = 500  # packages fetched for one list page (filtered and sorted here)

#: No inline script or style, nothing from elsewhere, never framed, forms post here only.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # same-origin, not no-referrer: with no-referrer a browser sends "Origin: null" on forms.
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}

router = APIRouter(prefix=PREFIX, include_in_schema=False)
# Autoescaping on for every template: names, titles and legal bases are hostile input.
templates = Jinja2Templates(env=jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(HERE / "templates")), autoescape=True))
T = TypeVar("T")


def _when(value: datetime | None) -> Markup:
    """A date as ``<time>``: UTC in the text (what a page without script shows) and in the
    title; time.js shows it in the browser's own time zone, named."""
    if value is None:
        return Markup("")
    aware = (value if value.tzinfo else value.replace(tzinfo=UTC)).astimezone(UTC)
    utc = aware.strftime("%Y-%m-%d %H:%M UTC")
    return Markup('<time datetime="{}" title="{}" data-utc>{}</time>').format(
        aware.strftime("%Y-%m-%dT%H:%M:%SZ"), utc, utc)


def _size(n: int) -> str:
    for unit, factor in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= factor:
            return f"{n / factor:.1f} {unit}"
    return t("size.bytes", n=n)


templates.env.globals.update(t=t, lang=LANGUAGE)
templates.env.filters.update(shown=shown, when=_when, size=_size,
                             item_url=lambda name: quote(name, safe="/"),
                             q=lambda value: quote(value, safe=""))


class WebError(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


def _runtime(request: Request) -> Runtime:
    from service.runtime import Runtime  # the app-level object, built after this module loads

    return service_of(request, Runtime)


def _session(request: Request) -> WebSession | None:
    """The request's live session (may ask the provider: call on a worker thread)."""
    token = cookie_value(request.headers.get("cookie"), SESSION_COOKIE)
    return signin.live_session(_runtime(request), token) if token else None


async def _current(request: Request) -> WebSession | None:
    """The live session, admitted by the same rate limits as the API (every page a signed-in
    officer opens writes a ledger entry)."""
    session = await anyio.to_thread.run_sync(_session, request)
    if session is not None:
        runtime = _runtime(request)
        throttled = runtime.request_limits.admit(session.principal)
        if throttled is not None:
            runtime.metrics.throttled.labels(throttled.scope).inc()
            raise WebError(429, t("error.throttled", seconds=throttled.retry_after),
                           headers={"Retry-After": str(throttled.retry_after)})
    return session


def _render(request: Request, template: str, session: WebSession | None, status: int = 200,
            **context: Any) -> HTMLResponse:
    officer = session.principal if session else None
    operator = _runtime(request).settings.operator_authority
    return templates.TemplateResponse(request, template, {
        "session": session, "officer": officer,
        "ledger_reader": officer is not None and officer.authority == operator and
        officer.role == "auditor",
        "csrf": session.csrf if session else "", **context}, status_code=status)


def _to_sign_in() -> RedirectResponse:
    return RedirectResponse(f"{PREFIX}/sign-in", status_code=303)


async def _domain(call: Callable[[], T]) -> T:
    """Run a service call on a worker thread; its domain errors become a WebError."""
    try:
        return await anyio.to_thread.run_sync(call)
    except problems.Problem as exc:
        raise WebError(exc.kind.status, exc.detail) from None
    except Exception as exc:
        kind = problems.kind_of(exc)
        if kind is None:
            raise
        raise WebError(kind.status, str(exc) or kind.title) from None


async def _form(request: Request, session: WebSession) -> dict[str, str]:
    """The posted form, after checking it came from this origin with the session's token."""
    origin = request.headers.get("origin")
    expected = f"{request.url.scheme}://{request.url.netloc}"
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise WebError(413, "The form is too large.")
    fields = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace"),
                                            keep_blank_values=True).items()}
    if (origin is not None and origin != expected) or \
            not session.csrf_matches(fields.get(CSRF_FIELD)):
        log.warning("csrf_refused", path=request.url.path)
        raise WebError(403, t("error.csrf"))
    return fields


# -- sign-in -------------------------------------------------------------------------------


@router.get("/sign-in", response_class=HTMLResponse)
def sign_in_page(request: Request) -> HTMLResponse:
    with _runtime(request).engine.connect() as conn:
        authorities = [a for a in TrustRegistry(conn).list_authorities()
                       if a.issuer is not None and a.client_id is not None]
    return _render(request, "sign_in.html", None, authorities=authorities)


@router.get("/sign-in/{authority}")
def sign_in_start(request: Request, authority: str) -> Response:
    runtime = _runtime(request)
    try:
        provider = signin.provider_for(runtime, authority)
    except signin.SignInRefused as exc:
        return _render(request, "error.html", None, status=400,
                       message=t("sign_in.failed", reason=str(exc)), retry=True)
    verifier = signin.code_verifier()
    redirect_uri = str(request.url_for("sign_in_callback"))
    state = runtime.web_sessions.begin_sign_in(provider.authority, verifier, redirect_uri)
    response = RedirectResponse(signin.authorization_url(
        provider, state=state, verifier=verifier, redirect_uri=redirect_uri), status_code=303)
    response.set_cookie(SIGN_IN_COOKIE, state, max_age=SIGN_IN_SECONDS, path="/", secure=True,
                        httponly=True, samesite="lax")
    return response


@router.get("/callback", name="sign_in_callback")
def sign_in_callback(request: Request, state: str = "", code: str = "",
                     error: str = "") -> Response:
    runtime = _runtime(request)
    bound = cookie_value(request.headers.get("cookie"), SIGN_IN_COOKIE)

    def refused(reason: str) -> Response:
        response = _render(request, "error.html", None, status=400,
                           message=t("sign_in.failed", reason=reason), retry=True)
        response.delete_cookie(SIGN_IN_COOKIE, path="/", secure=True, httponly=True)
        return response

    # The answer must come back to the browser that started this sign-in (login CSRF).
    if not state or bound is None or not secrets.compare_digest(bound, state):
        return refused("the answer does not belong to a sign-in started in this browser")
    pending = runtime.web_sessions.take_sign_in(state)
    if pending is None:
        return refused("the sign-in took too long or was already used")
    if error or not code:
        return refused(error or "no authorization code")
    try:
        done = signin.finish(runtime, pending, code)
    except signin.SignInRefused as exc:
        return refused(str(exc))
    # Fixation: whatever session the browser held is ended; the new one has a fresh id.
    runtime.web_sessions.end(cookie_value(request.headers.get("cookie"), SESSION_COOKIE))
    token = runtime.web_sessions.open(
        done.principal, client_id=done.provider.client_id, refresh_token=done.refresh_token,
        revocation_endpoint=done.provider.revocation_endpoint,
        end_session_endpoint=done.provider.end_session_endpoint)
    log.info("web_signed_in", authority=done.principal.authority,
             subject=done.principal.subject, role=done.principal.role)
    # A page, not a redirect: the SameSite=Strict cookie is sent on the next navigation only
    # if that navigation starts here (a redirect chain from the provider is cross-site).
    response = _render(request, "signed_in.html", None)
    response.set_cookie(SESSION_COOKIE, token, path="/", secure=True, httponly=True,
                        samesite="strict")
    response.delete_cookie(SIGN_IN_COOKIE, path="/", secure=True, httponly=True)
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    session = await _current(request)
    if session is None:
        return _to_sign_in()
    await _form(request, session)
    runtime = _runtime(request)
    ended = await anyio.to_thread.run_sync(lambda: runtime.web_sessions.end(
        cookie_value(request.headers.get("cookie"), SESSION_COOKIE)))
    if ended is not None:
        await anyio.to_thread.run_sync(lambda: signin.revoke_at_provider(ended))
    response = _render(request, "signed_out.html", None,
                       provider_logout=ended.end_session_endpoint if ended else None)
    response.delete_cookie(SESSION_COOKIE, path="/", secure=True, httponly=True,
                           samesite="strict")
    return response


# -- packages ------------------------------------------------------------------------------


@router.get("/", response_class=HTMLResponse)
async def packages_page(request: Request, q: str = "", show: str = "all",
                        sort: str = "newest") -> Response:
    session = await _current(request)
    if session is None:
        return _to_sign_in()
    officer = session.principal
    service = _runtime(request).packages
    rows = await _domain(lambda: service.list(officer, limit=MAX_LISTED, offset=0))
    needle = q.strip().casefold()
    listed = []
    for package, items, _ in rows:
        owned = package.owner_authority == officer.authority
        if (show == "owned" and not owned) or (show == "shared" and owned) or \
                (show == "draft" and package.sealed_at is not None):
            continue
        if needle and needle not in package.title.casefold() and \
                needle not in package.case_reference.casefold():
            continue
        listed.append((package, len(items), owned))
    if sort == "title":
        listed.sort(key=lambda p: p[0].title.casefold())
    else:
        listed.sort(key=lambda p: p[0].created_at, reverse=sort != "oldest")
    notices = await anyio.to_thread.run_sync(lambda: _notices(_runtime(request), officer))
    return _render(request, "packages.html", session, packages=listed, q=q, show=show,
                   sort=sort, notices=notices)


MAX_NOTICES = 10


def _notices(runtime: Runtime, officer: Caller) -> list[tuple[datetime, str, str | None]]:
    """The authority's newest events as (when, text, package id) for the notices panel."""
    from service.events import repository as events

    with runtime.engine.connect() as conn:
        rows = events.latest(conn, officer.authority, MAX_NOTICES)
    shown_rows = []
    for row in rows:
        data = {k: "" if v is None else str(v) for k, v in row.data.items()}
        key = f"notice.{row.type}"
        if row.type.startswith("request."):
            text = t("notice.request", reference=data.get("reference", ""), event=row.type)
        elif key in MESSAGES:
            try:
                text = t(key, **data)
            except KeyError:
                text = t("notice.other", event=row.type)
        else:
            text = t("notice.other", event=row.type)
        shown_rows.append((row.occurred_at, text, data.get("package") or None))
    return shown_rows


@router.get("/packages/new", response_class=HTMLResponse)
def new_package_page(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return _to_sign_in()
    return _render(request, "new_package.html", session, values={}, error=None)


@router.post("/packages")
async def create_package(request: Request) -> Response:
    session = await _current(request)
    if session is None:
        return _to_sign_in()
    fields = await _form(request, session)
    try:
        body = PackageCreate(case_reference=fields.get("case_reference", ""),
                             title=fields.get("title", ""),
                             description=fields.get("description", ""))
    except ValidationError as exc:
        return _render(request, "new_package.html", session, status=422, values=fields,
                       error="; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors()))
    service = _runtime(request).packages
    package = await _domain(lambda: service.create(
        session.principal, case_reference=body.case_reference, title=body.title,
        description=body.description))
    return RedirectResponse(f"{PREFIX}/packages/{quote(package.id, safe='')}", status_code=303)


@router.get("/packages/{package_id}", response_class=HTMLResponse)
async def package_page(request: Request, package_id: str, error: str = "") -> Response:
    session = await _current(request)
    if session is None:
        return _to_sign_in()
    runtime = _runtime(request)
    service = runtime.packages
    package, items, shares = await _domain(lambda: service.read(session.principal, package_id))
    owner = package.owner_authority == session.principal.authority
    now = service.now()
    directory: list[Authority] = []
    if owner:
        def authorities() -> list[Authority]:
            with runtime.engine.connect() as conn:
                return [a for a in TrustRegistry(conn).list_authorities()
                        if a.id != session.principal.authority]
        directory = await anyio.to_thread.run_sync(authorities)
    share_states = [(s, _share_state(s, now)) for s in shares]
    # The server decides again at the download; this only spares a link that would be refused.
    may_download = session.principal.role == "investigator" and (owner or any(
        state == "state.shared_active" for _, state in share_states))
    return _render(request, "package.html", session, package=package, items=items,
                   owner=owner, shares=share_states, directory=directory,
                   error=error or None, may_download=may_download,
                   folder=archive_folder(package.id),
                   messages={k: v for k, v in MESSAGES.items()
                             if k.startswith(("upload.", "verify.", "package.folder."))})


def _share_state(share: ShareRow, now: datetime) -> str:
    state = share.state()
    if state.revoked_at is not None:
        return "state.shared_revoked"
    return "state.shared_active" if state.active(now) else "state.shared_expired"


def _back(package_id: str, error: str | None = None) -> RedirectResponse:
    url = f"{PREFIX}/packages/{quote(package_id, safe='')}"
    if error:
        url += "?error=" + quote(error[:300], safe="")
    return RedirectResponse(url, status_code=303)


@router.post("/packages/{package_id}/seal")
async def seal_package(request: Request, package_id: str) -> Response:
    session = await _current(request)
    if session is None:
        return _to_sign_in()
    await _form(request, session)
    service = _runtime(request).packages
    try:
        await _domain(lambda: service.seal(session.principal, package_id))
    except WebError as exc:
        return _back(package_id, exc.message)
    return _back(package_id)


@router.post("/packages/{package_id}/shares")
async def share_package(request: Request, package_id: str) -> Response:
    session = await _current(request)
    if session is None:
        return _to_sign_in()
    fields = await _form(request, session)
    expires = fields.get("expires_at", "").strip()
    try:
        body = ShareCreate.model_validate({
            "authority": fields.get("authority", "").strip(),
            "legal_basis": fields.get("legal_basis", ""),
            "request_reference": fields.get("request_reference", ""),
            # a form gives text; the model parses it (as it parses the JSON API's)
            "expires_at": (expires if "+" in expires or expires.endswith("Z")
                           else expires + "Z") if expires else None})
    except ValidationError as exc:
        return _back(package_id, "; ".join(f"{e['loc'][0]}: {e['msg']}" for e in exc.errors()))
    service = _runtime(request).packages
    try:
        await _domain(lambda: service.share(
            session.principal, package_id, authority=body.authority,
            legal_basis=body.legal_basis, request_reference=body.request_reference,
            expires_at=body.expires_at))
    except WebError as exc:
        return _back(package_id, exc.message)
    return _back(package_id)


@router.post("/packages/{package_id}/shares/{authority}/revoke")
async def revoke_share(request: Request, package_id: str, authority: str) -> Response:
    session = await _current(request)
    if session is None:
        return _to_sign_in()
    await _form(request, session)
    service = _runtime(request).packages
    try:
        await _domain(lambda: service.revoke(session.principal, package_id, authority))
    except WebError as exc:
        return _back(package_id, exc.message)
    return _back(package_id)


@router.get("/packages/{package_id}/custody", response_class=HTMLResponse)
async def custody_page(request: Request, package_id: str) -> Response:
    session = await _current(request)
    if session is None:
        return _to_sign_in()
    return _render(request, "custody.html", session, package_id=package_id,
                   messages={k: v for k, v in MESSAGES.items() if k.startswith("custody.")})


@router.get("/ledger", response_class=HTMLResponse)
async def ledger_page(request: Request) -> Response:
    session = await _current(request)
    if session is None:
        return _to_sign_in()
    officer = session.principal
    if officer.authority != _runtime(request).settings.operator_authority or \
            officer.role != "auditor":
        raise WebError(403, t("ledger.operator_only"))
    return _render(request, "ledger.html", session,
                   messages={k: v for k, v in MESSAGES.items()
                             if k.startswith(("custody.", "ledger."))})


# -- wiring --------------------------------------------------------------------------------


class SecurityHeaders:
    """Adds the web application's security headers to every response under ``/app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope.get("path", "").startswith(PREFIX):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                for name, value in SECURITY_HEADERS.items():
                    if name.lower().encode() not in present:
                        headers.append((name.lower().encode(), value.encode()))
                if b"cache-control" not in present:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def install_web(app: FastAPI) -> None:
    """Mount the pages, their static assets and the security headers."""

    @app.exception_handler(WebError)
    async def _web_error(request: Request, exc: WebError) -> Response:
        session = await anyio.to_thread.run_sync(_session, request)  # not admitted twice
        response = _render(request, "error.html", session, status=exc.status,
                           message=exc.message, retry=False)
        response.headers.update(exc.headers or {})
        return response

    from service.web import request_pages  # its routes use this module's helpers

    app.include_router(router)
    app.include_router(request_pages.router)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=str(HERE / "static")), name="web-static")
    app.add_middleware(SecurityHeaders)

    @app.get(PREFIX, include_in_schema=False)
    def _app_root() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=308)
