"""The request's officer: a FastAPI dependency over the identity module's verification."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Protocol, runtime_checkable

import anyio.to_thread
import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.engine import Engine

from evx.protocol.tokens import REFUSAL_ADVICE
from service.guard import PRINCIPAL_SCOPE_KEY
from service.identity.errors import (
    AuthenticationFailed,
    InvalidToken,
    MissingCredentials,
)
from service.identity.http import authenticate, bearer_token
from service.identity.registrar import TrustRegistrar
from service.identity.tokens import Principal, TrustedKey
from service.identity.verified import VerifiedTokens
from service.limits import RequestLimits
from service.metrics import Metrics
from service.problems import FORBIDDEN, TOO_MANY_REQUESTS, UNAUTHENTICATED, Problem
from service.settings import Settings
from service.web.sessions import CSRF_HEADER, SESSION_COOKIE, WebSessions, cookie_value
from service.wiring import provide_service

log = structlog.get_logger("evx.auth")
ADMITTED_SCOPE_KEY = "evx.admitted"  # the request passed the rate limits once
_bearer = HTTPBearer(auto_error=False, description="A JWT signed by the officer's authority.")
#: Methods that change nothing: a cookie-authenticated request with another method needs the
#: session's CSRF token in ``X-CSRF-Token`` (service/web/sessions.py).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


@runtime_checkable
class Authenticating(Protocol):
    """What authenticating a request needs of the running service (service.runtime.Runtime)."""

    settings: Settings
    engine: Engine  # the trust registry, for a web session's provider (service/web/signin.py)
    metrics: Metrics
    request_limits: RequestLimits
    registrar: TrustRegistrar
    verified_tokens: VerifiedTokens
    web_sessions: WebSessions

    def lookup_key(self, issuer: str, kid: str) -> TrustedKey: ...


async def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    runtime: Annotated[Authenticating, Depends(provide_service(Authenticating))],
) -> Principal:
    """The authenticated officer. Failures are counted and logged -- never put in the ledger,
    where unauthenticated garbage could flood it.

    A token verified a moment ago is taken from the verified-token cache on the event loop;
    anything else is verified on a worker thread (a key look-up may touch the database).
    """
    principal = request.scope.get(PRINCIPAL_SCOPE_KEY)  # the guard did it before the body
    if principal is None:
        authorization = request.headers.get("authorization")
        principal = _recently_verified(runtime, authorization)
        if principal is None:
            cookie, csrf = request.headers.get("cookie"), request.headers.get(CSRF_HEADER)
            principal = await anyio.to_thread.run_sync(lambda: authenticate_request(
                runtime, authorization, request.url.path,
                request.client.host if request.client else None, cookie=cookie, csrf=csrf,
                method=request.method))
        request.scope[PRINCIPAL_SCOPE_KEY] = principal
    assert isinstance(principal, Principal)
    if not request.scope.get(ADMITTED_SCOPE_KEY):
        # Every authenticated request writes a ledger entry: its rate is the caller's rate of
        # writing to the record (service/limits.py).
        request.scope[ADMITTED_SCOPE_KEY] = True
        throttled = runtime.request_limits.admit(principal)
        if throttled is not None:
            runtime.metrics.throttled.labels(throttled.scope).inc()
            raise Problem(TOO_MANY_REQUESTS,
                          f"Too many requests from this {throttled.scope}; retry in "
                          f"{throttled.retry_after} s.",
                          headers={"Retry-After": str(throttled.retry_after)})
    return principal


def authenticate_request(runtime: Authenticating, authorization: str | None, path: str,
                         client: str | None = None, *, cookie: str | None = None,
                         csrf: str | None = None, method: str = "GET") -> Principal:
    """The caller's principal, or a 401 :class:`Problem` (counted, and logged if refused).

    A bearer token wins. Without one, the web application's session cookie is accepted (the
    browser's uploads and downloads use the same API), and for any method that changes state
    only together with the session's CSRF token: a 403 otherwise."""
    if authorization is None:
        token = cookie_value(cookie, SESSION_COOKIE)
        if token is not None:
            return _session_principal(runtime, token, csrf, method, path, client)
    cached = _recently_verified(runtime, authorization)
    if cached is not None:
        return cached
    generation = runtime.registrar.generation  # before verifying: a change meanwhile voids it
    try:
        principal = authenticate(authorization, lookup_key=runtime.lookup_key,
                                 settings=runtime.settings)
    except MissingCredentials:
        runtime.metrics.unauthenticated.labels("missing").inc()
        raise Problem(UNAUTHENTICATED, "Send 'Authorization: Bearer <token>' issued by your "
                                       "authority.") from None
    except InvalidToken as exc:
        runtime.metrics.unauthenticated.labels(exc.reason).inc()
        log.warning("token_refused", reason=exc.reason, path=path, client=client)
        raise Problem(UNAUTHENTICATED, REFUSAL_ADVICE.get(exc.reason, "The token was refused."),
                      reason=exc.reason) from None
    runtime.verified_tokens.put(bearer_token(authorization), principal, generation=generation)
    return principal


def _recently_verified(runtime: Authenticating, authorization: str | None) -> Principal | None:
    """The principal of a token verified a moment ago (service/identity/verified.py), or None
    (then the token is verified in full, and refusals are counted and logged there)."""
    try:
        token = bearer_token(authorization)
    except AuthenticationFailed:
        return None
    settings = runtime.settings
    return runtime.verified_tokens.get(
        token, generation=runtime.registrar.generation, now=datetime.now(UTC),
        leeway=timedelta(seconds=settings.token_leeway_seconds))


def _session_principal(runtime: Authenticating, token: str, csrf: str | None, method: str,
                       path: str, client: str | None) -> Principal:
    from service.web.signin import live_session

    session = live_session(runtime, token)
    if session is None:
        runtime.metrics.unauthenticated.labels("session").inc()
        raise Problem(UNAUTHENTICATED, "Your web session has ended: sign in again.")
    if method not in SAFE_METHODS and not session.csrf_matches(csrf):
        runtime.metrics.unauthenticated.labels("csrf").inc()
        log.warning("csrf_refused", path=path, client=client)
        raise Problem(FORBIDDEN, f"A change through a web session needs its {CSRF_HEADER}.")
    return session.principal


Officer = Annotated[Principal, Depends(current_principal)]
