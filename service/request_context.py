"""The outermost middleware of the app: request ids, metrics, the access log, and what happens to
an error no handler rendered.

Written as plain ASGI rather than Starlette's ``BaseHTTPMiddleware``: that one re-streams every
response body through a memory stream (a copy and a task hand-off per chunk of a download) and,
when a stream is cut after its headers left, still sends the final empty body -- which uvicorn
rejects with a traceback ("Response content shorter than Content-Length").
"""

from __future__ import annotations

import time
import uuid

import structlog
from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from evx.protocol import headers
from service import problems
from service.limits import TransferStalled
from service.metrics import Metrics
from service.packages.errors import AccessDenied
from storage.errors import IntegrityError

REQUEST_ID_HEADER = headers.REQUEST_ID
CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client that closed the connection
MAX_REQUEST_ID_CHARS = 64  # a client-chosen id is echoed into logs; keep it small

log = structlog.get_logger("evx.http")


def request_id_of(scope: Scope) -> str:
    """The caller's ``X-Request-Id`` when it is short printable ASCII, else a new one."""
    incoming = Headers(scope=scope).get(REQUEST_ID_HEADER, "")
    if 0 < len(incoming) <= MAX_REQUEST_ID_CHARS and incoming.isascii() and incoming.isprintable():
        return incoming
    return uuid.uuid4().hex


class RequestContext:
    """Binds the request id, renders unhandled errors as RFC 9457 500s carrying it, counts and
    times every request by route and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status, response_started = message["status"], True
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        path = scope.get("path", "")
        try:
            try:
                await self.app(scope, receive, send_with_id)
            except ClientDisconnect:
                # The caller went away mid-body (Ctrl-C, a file changed under the client): its
                # fault, not ours -- no traceback, and a 4xx in the metrics (nginx's 499), so
                # alerts on 5xx do not page anyone. The attempt is on the record already.
                log.info("client_aborted", method=scope["method"], path=path)
                status = CLIENT_CLOSED_REQUEST
                if not response_started:
                    await Response(status_code=CLIENT_CLOSED_REQUEST)(scope, receive, send_with_id)
            except Exception as exc:
                if response_started:
                    # The status line and Content-Length are out: the only honest end is to cut
                    # the connection, so the client sees a short body, never a complete-looking
                    # one. The transfer's own code put the reason on the record.
                    self._log_cut(scope, exc)
                    return
                log.error("unhandled_error", path=path, error=type(exc).__name__, exc_info=exc)
                status = 500
                response = problems.problem_response(
                    problems.INTERNAL, "An internal error occurred; quote the request id "
                    "when you report it.", path, request_id=request_id)
                await response(scope, receive, send_with_id)
        finally:
            route = scope.get("route")
            route_path = getattr(route, "path", "unmatched")
            elapsed = time.perf_counter() - started
            self.metrics.requests.labels(scope["method"], route_path, str(status)).inc()
            self.metrics.request_seconds.labels(scope["method"], route_path).observe(elapsed)
            log.info("request", method=scope["method"], route=route_path, status=status,
                     ms=round(elapsed * 1000, 2))
            structlog.contextvars.unbind_contextvars("request_id")

    @staticmethod
    def _log_cut(scope: Scope, exc: BaseException) -> None:
        path = scope.get("path", "")
        # Starlette wraps an error that has a handler but came after the response started
        # ("Caught handled exception, but response already started"): the cause is what happened.
        if isinstance(exc, RuntimeError) and exc.__cause__ is not None:
            exc = exc.__cause__
        if isinstance(exc, IntegrityError):
            # Not a bug in this code but an alarm: a stored object failed authentication.
            log.error("transfer_cut", path=path, reason="stored object failed its integrity "
                      "check", error=type(exc).__name__)
        elif isinstance(exc, (AccessDenied, TransferStalled)):
            log.info("transfer_cut", path=path, reason=str(exc), error=type(exc).__name__)
        else:
            log.error("transfer_cut", path=path, error=type(exc).__name__, exc_info=exc)
