"""RFC 9457 problem details: the one place where errors become HTTP responses.

Domain errors carry no HTTP status; :data:`PROBLEM_TYPES` maps each error class (by the most
specific class in its MRO) to a status, a stable type URI and a title a user can act on.
"""

from __future__ import annotations

import itertools
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

# The problem types are part of the contract the client shares (evx/protocol/problems.py).
from evx.protocol.problems import (  # noqa: F401 - the service uses them as problems.X
    BAD_REQUEST,
    BODY_TOO_LARGE,
    CONFLICT,
    DIGEST_MISMATCH,
    FORBIDDEN,
    INCONSISTENT_UPLOAD_LENGTH,
    INTEGRITY,
    INTERNAL,
    ITEM_EXISTS,
    LEDGER_INCONSISTENT,
    LEDGER_UNAVAILABLE,
    METHOD_NOT_ALLOWED,
    MISMATCHING_UPLOAD_OFFSET,
    NAME_CONFLICT,
    NOT_A_FILE,
    NOT_FOUND,
    PACKAGE_NOT_SEALED,
    PACKAGE_SEALED,
    PROBLEM_JSON,
    RANGE_NOT_SATISFIABLE,
    REQUEST_STATE,
    SERVICE_BUSY,
    SHARE_EXPIRED,
    SHARE_REVOKED,
    STORE_UNAVAILABLE,
    TOO_LARGE,
    TOO_MANY_REQUESTS,
    TRANSFER_STALLED,
    TYPE_BASE,
    UNAUTHENTICATED,
    UPLOAD_IN_PROGRESS,
    UPLOAD_NOT_FOUND,
    UPLOAD_SUPERSEDED,
    VALIDATION,
    ProblemType,
)

logger = structlog.get_logger("evx.problems")

MAX_VALIDATION_ERRORS = 20  # a 422 never grows with the request (review L8)
MAX_ERROR_TEXT = 200


class Problem(Exception):
    """An error raised by the HTTP layer itself with an explicit problem type."""

    def __init__(self, kind: ProblemType, detail: str, *,
                 headers: dict[str, str] | None = None, **extensions: Any) -> None:
        super().__init__(detail)
        self.kind = kind
        self.detail = detail
        self.headers = headers
        self.extensions = extensions


_BY_STATUS = {
    400: BAD_REQUEST, 401: UNAUTHENTICATED, 403: FORBIDDEN, 404: NOT_FOUND,
    405: METHOD_NOT_ALLOWED, 409: CONFLICT, 413: TOO_LARGE,
    416: RANGE_NOT_SATISFIABLE, 422: VALIDATION,
}


def problem_response(kind: ProblemType, detail: str, instance: str | None = None,
                     headers: dict[str, str] | None = None, **extensions: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": kind.type_uri, "title": kind.title,
                            "status": kind.status, "detail": detail}
    if instance:
        body["instance"] = instance
    body.update(extensions)
    return JSONResponse(body, status_code=kind.status, media_type=PROBLEM_JSON, headers=headers)


# Domain error class -> problem type. Filled in one place: register_domain_errors().
_DOMAIN: dict[type[Exception], ProblemType] = {}


# Problems whose cause is described in the operator's terms (object names, file paths, key ids):
# the caller gets this text, the log gets the cause.
INTERNAL_DETAIL: dict[ProblemType, str] = {
    INTEGRITY: "Stored evidence failed its integrity check, so nothing was served. The "
               "operator finds the cause in the service log under this response's request id.",
    STORE_UNAVAILABLE: "The evidence store is unavailable; nothing was done. Retry later.",
}


def register_error(error: type[Exception], kind: ProblemType) -> None:
    """Declare how a domain error class is rendered (the most specific registered class wins)."""
    _DOMAIN[error] = kind


def kind_of(exc: BaseException) -> ProblemType | None:
    """The problem type a domain error is rendered as, or None if it is not a domain error."""
    return _lookup(exc)


def _lookup(exc: BaseException) -> ProblemType | None:
    for klass in type(exc).__mro__:
        if klass in _DOMAIN:
            return _DOMAIN[klass]
    return None


def install(app: FastAPI) -> None:
    """Install the handlers that render every error as problem details."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Bearer realm="evidence-exchange"'} \
            if exc.kind.status == 401 else exc.headers
        return problem_response(exc.kind, exc.detail, request.url.path, headers=headers,
                                **exc.extensions)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Bounded: a request with thousands of bad fields gets the first few, not a response
        # larger than itself (an amplifier).
        found = exc.errors()
        errors = [{"loc": [str(p)[:MAX_ERROR_TEXT] for p in e.get("loc", ())][:8],
                   "msg": str(e.get("msg", ""))[:MAX_ERROR_TEXT]}
                  for e in itertools.islice(found, MAX_VALIDATION_ERRORS)]
        return problem_response(VALIDATION, "The request does not match the API schema.",
                                request.url.path, errors=errors, errors_total=len(found))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = _BY_STATUS.get(exc.status_code, ProblemType(exc.status_code, "http-error",
                                                             "HTTP error"))
        return problem_response(kind, str(exc.detail), request.url.path,
                                headers=getattr(exc, "headers", None))

    async def _domain(request: Request, exc: Exception) -> JSONResponse:
        kind = _lookup(exc)
        if kind is None:  # pragma: no cover - only registered classes are routed here
            kind = INTERNAL
        headers: dict[str, str] | None = None
        if kind.status == 401:
            headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        elif kind is RANGE_NOT_SATISFIABLE and isinstance(getattr(exc, "size", None), int):
            headers = {"Content-Range": f"bytes */{exc.size}"}  # type: ignore[attr-defined]
        extensions = getattr(exc, "problem_extensions", None) or {}
        if kind is UPLOAD_IN_PROGRESS and "upload" in extensions:
            headers = {"Location": extensions["upload"]}
        detail = str(exc) or kind.title
        internal = INTERNAL_DETAIL.get(kind)
        if internal is not None:
            # The store's own words name objects, paths and KEK ids: for the operator's log
            # (with the request id), never for the caller (review L7).
            logger.warning("storage_error", path=request.url.path, error=type(exc).__name__,
                           reason=detail)
            detail = internal
        return problem_response(kind, detail, request.url.path, headers=headers, **extensions)

    for error_class in _DOMAIN:
        app.add_exception_handler(error_class, _domain)

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        # No stack trace leaves the service; the log has the class and the path.
        logger.error("unhandled_error", path=request.url.path, error=type(exc).__name__,
                     exc_info=exc)
        return problem_response(INTERNAL, "An internal error occurred; it has been logged.",
                                request.url.path)


def register_domain_errors() -> None:
    """The mapping of every domain's errors to problem types, in one place."""
    from service.identity import errors as identity
    from service.ledger import errors as ledger
    from service.limits import TransferStalled
    from service.packages import errors as pkg
    from service.requests import errors as req
    from storage import errors as storage

    for error, kind in [
        (TransferStalled, TRANSFER_STALLED),
        (pkg.PackageNotFound, NOT_FOUND),
        (pkg.ItemNotFound, NOT_FOUND),
        (pkg.AccessDenied, FORBIDDEN),
        (pkg.ShareExpired, SHARE_EXPIRED),
        (pkg.ShareRevoked, SHARE_REVOKED),
        (pkg.PackageSealed, PACKAGE_SEALED),
        (pkg.PackageNotSealed, PACKAGE_NOT_SEALED),
        (pkg.ItemExists, ITEM_EXISTS),
        (pkg.DigestMismatch, DIGEST_MISMATCH),
        (pkg.ItemTooLarge, TOO_LARGE),
        (pkg.InvalidRequest, VALIDATION),
        (pkg.RangeNotSatisfiable, RANGE_NOT_SATISFIABLE),
        (pkg.UploadGone, UPLOAD_NOT_FOUND),
        (pkg.UploadInProgress, UPLOAD_IN_PROGRESS),
        (pkg.UploadSuperseded, UPLOAD_SUPERSEDED),
        (pkg.UploadOffsetMismatch, MISMATCHING_UPLOAD_OFFSET),
        (pkg.UploadLengthMismatch, INCONSISTENT_UPLOAD_LENGTH),
        (req.RequestNotFound, NOT_FOUND),
        (req.RequestAccessDenied, FORBIDDEN),
        (req.InvalidRequestData, VALIDATION),
        (req.RequestStateConflict, REQUEST_STATE),
        (pkg.NameConflict, NAME_CONFLICT),
        (pkg.NotAFile, NOT_A_FILE),
        (identity.AuthenticationFailed, UNAUTHENTICATED),
        (ledger.LedgerUnavailable, LEDGER_UNAVAILABLE),
        (ledger.LedgerCorrupted, LEDGER_INCONSISTENT),
        (ledger.LedgerAccessDenied, FORBIDDEN),
        (ledger.InvalidProofRequest, VALIDATION),
        (ledger.EntryNotFound, NOT_FOUND),
        (storage.IntegrityError, INTEGRITY),
        (storage.BackendUnavailable, STORE_UNAVAILABLE),
        (storage.ObjectNotFound, INTEGRITY),
    ]:
        register_error(error, kind)


#: The OpenAPI ``responses`` value of an error answered with a problem document (a route's
#: ``responses={404: {"description": ..., **AS_PROBLEM}}``).
AS_PROBLEM: dict[str, Any] = {"model": None, "content": {"application/problem+json": {}}}
#: A route's ``responses`` argument, as FastAPI types it.
Responses = dict[int | str, dict[str, Any]]

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details.",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string", "description": "Stable URI naming the kind of problem."},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string", "description": "What happened and what to do."},
        "instance": {"type": "string"},
        "reason": {"type": "string", "description": "Why a token was refused (401)."},
        "errors": {"type": "array", "items": {"type": "object"}},
    },
    "additionalProperties": True,
}

_COMMON_ERRORS = {
    "400": "The request is malformed",
    "401": "Missing or refused token",
    "403": "Not allowed",
    "404": "Not found",
    "405": "Method not allowed",
    "409": "Conflicts with the current state",
    "413": "Too large",
    "416": "Range not satisfiable",
    "429": "Too many requests (Retry-After says when to retry)",
    "422": "The request is invalid",
    "500": "Internal error (nothing is served)",
    "503": "A dependency (ledger, store) is unavailable; nothing was done",
}
_UNAUTHENTICATED_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/v1/ledger/key",
                                    "/openapi.json", "/v1/authorities/{authority_id}/sign-in"})


def problem_openapi(app: FastAPI) -> dict[str, Any]:
    """The app's OpenAPI schema with every error response declared as problem+json."""
    if app.openapi_schema:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(title=app.title, version=app.version, description=app.description,
                         routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components["Problem"] = PROBLEM_SCHEMA
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    problem_content = {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, methods in schema.get("paths", {}).items():
        for operation in methods.values():
            responses = operation.setdefault("responses", {})
            wanted = dict(_COMMON_ERRORS)
            if path in _UNAUTHENTICATED_PATHS:
                wanted = {k: v for k, v in wanted.items() if k in ("500",)}
                if path == "/readyz":
                    responses.setdefault("503", {"description": "Not ready"})
            for status, description in wanted.items():
                existing = responses.get(status, {})
                responses[status] = {"description": existing.get("description", description),
                                     "content": problem_content}
            for status, response in responses.items():
                if status.startswith(("4", "5")) and path not in ("/readyz",):
                    response["content"] = problem_content
    app.openapi_schema = schema
    return schema
