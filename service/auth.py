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
from service.problems import UNAUTHENTICATED, Problem

log = structlog.get_logger("evx.auth")
_bearer = HTTPBearer(auto_error=False, description="A JWT signed by the officer's authority.")


def current_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The authenticated officer. Failures are counted and logged -- never put in the ledger,
    where unauthenticated garbage could flood it."""
    already = request.scope.get(PRINCIPAL_SCOPE_KEY)  # the guard did it before the body
    if already is not None:
        return already  # type: ignore[no-any-return]
    return authenticate_request(request.app.state.runtime, request.headers.get("authorization"),
                                request.url.path,
                                request.client.host if request.client else None)


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
