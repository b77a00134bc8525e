"""The request's officer: a FastAPI dependency over the identity module's verification."""

from __future__ import annotations

from typing import Annotated, Any

import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from evx.protocol.tokens import REFUSAL_ADVICE
from service.guard import PRINCIPAL_SCOPE_KEY
from service.identity.errors import InvalidToken, MissingCredentials
from service.identity.http import authenticate
from service.identity.tokens import Principal
from service.problems import TOO_MANY_REQUESTS, UNAUTHENTICATED, Problem

log = structlog.get_logger("evx.auth")
ADMITTED_SCOPE_KEY = "evx.admitted"  # the request passed the rate limits once
_bearer = HTTPBearer(auto_error=False, description="A JWT signed by the officer's authority.")


def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The authenticated officer. Failures are counted and logged -- never put in the ledger,
    where unauthenticated garbage could flood it."""
    principal = request.scope.get(PRINCIPAL_SCOPE_KEY)  # the guard did it before the body
    runtime = request.app.state.runtime
    if principal is None:
        principal = authenticate_request(runtime, request.headers.get("authorization"),
                                         request.url.path,
                                         request.client.host if request.client else None)
        request.scope[PRINCIPAL_SCOPE_KEY] = principal
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
    return principal  # type: ignore[no-any-return]


def authenticate_request(runtime: Any, authorization: str | None, path: str,
                         client: str | None = None) -> Principal:
    """The caller's principal, or a 401 :class:`Problem` (counted, and logged if refused)."""
    try:
        return authenticate(authorization, lookup_key=runtime.lookup_key,
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


Officer = Annotated[Principal, Depends(current_principal)]
