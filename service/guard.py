"""Bounded before trusted: the ASGI layer that stands between the socket and the endpoints.

Before any byte of a request body is read:

* a route that needs a token gets the caller authenticated first (the token is in a header, so
  authentication never needs the body); a stranger's body is never read -- 401 at once;
* a route that takes a JSON body gets at most ``max_json_bytes``: a larger ``Content-Length`` is
  a 413 at once, and a body without a length (chunked) is cut off with a 413 as soon as it
  passes the maximum while being read.

Routes that stream evidence (marked with :func:`streams_body`) are bounded by their own limits
(the item maximum, transfer limits) instead of the JSON maximum.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import anyio.to_thread
import structlog
from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import problems

log = structlog.get_logger("evx.guard")

PRINCIPAL_SCOPE_KEY = "evx.principal"  # the principal the guard authenticated, for the endpoint

_STREAMING_ATTR = "__evx_streams_body__"
_METHODS_WITH_BODY = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def streams_body(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """Mark an endpoint whose request body is evidence streamed by the endpoint itself (it is
    bounded by the item maximum and the transfer limits, not by the JSON maximum)."""
    setattr(endpoint, _STREAMING_ATTR, True)
    return endpoint


class BodyTooLarge(Exception):
    """A request body passed the maximum for its route."""


def _needs_token(route: APIRoute, authenticator: Callable[..., Any]) -> bool:
    stack = [route.dependant]
    while stack:
        dependant = stack.pop()
        if dependant.call is authenticator:
            return True
        stack.extend(dependant.dependencies)
    return False


def _api_routes(routes: list[Any]) -> Iterator[APIRoute]:
    """Every APIRoute, including those of included routers (which FastAPI keeps nested)."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        nested = getattr(route, "original_router", None)  # an included APIRouter
        if nested is not None:
            yield from _api_routes(nested.routes)


class RequestGuard:
    """ASGI middleware: authenticate before reading a body, and bound JSON bodies.

    ``authenticate(headers) -> principal`` raises :class:`problems.Problem` (a 401) for a
    refused caller; it runs on a worker thread (a key lookup may touch the database).
    """

    def __init__(self, app: ASGIApp, *, routes: Callable[[], list[Any]],
                 authenticator: Callable[..., Any],
                 authenticate: Callable[[dict[str, str], str], Any],
                 max_json_bytes: int) -> None:
        self.app = app
        self._routes = routes
        self._authenticator = authenticator
        self._authenticate = authenticate
        self.max_json_bytes = max_json_bytes
        self._route_info: dict[int, tuple[bool, bool]] = {}

    def _info(self, scope: Scope) -> tuple[bool, bool] | None:
        """(streams its body, needs a token) of the route ``scope`` goes to, if any."""
        for route in _api_routes(self._routes()):
            match, _ = route.matches(scope)
            if match is Match.FULL:
                info = self._route_info.get(id(route))
                if info is None:
                    info = (bool(getattr(route.endpoint, _STREAMING_ATTR, False)),
                            _needs_token(route, self._authenticator))
                    self._route_info[id(route)] = info
                return info
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _METHODS_WITH_BODY:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", ())}
        info = self._info(scope)
        streaming, needs_token = info if info is not None else (False, False)
        path = scope.get("path", "")
        if needs_token:
            try:
                principal = await anyio.to_thread.run_sync(self._authenticate, headers, path)
            except problems.Problem as exc:
                # Connection: close -- the server would otherwise go on reading (and parsing)
                # the unread body to reach the next request on this connection.
                await _problem(send, scope, exc.kind, exc.detail,
                               {"WWW-Authenticate": 'Bearer realm="evidence-exchange"',
                                "Connection": "close"},
                               **exc.extensions)
                return
            scope[PRINCIPAL_SCOPE_KEY] = principal
        if streaming:
            await self.app(scope, receive, send)
            return
        limit = self.max_json_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            await _too_large(send, scope, limit)
            return
        await self._bounded(scope, receive, send, limit)

    async def _bounded(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        received = 0
        refused = False
        started = False

        async def bounded_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    if not started:
                        await _too_large(send, scope, limit)
                    # The endpoint sees a client that went away: it stops reading and its
                    # answer (if any) is dropped below.
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        await self.app(scope, bounded_receive, guarded_send)


async def _too_large(send: Send, scope: Scope, limit: int) -> None:
    await _problem(send, scope, problems.BODY_TOO_LARGE,
                   f"The request body exceeds {limit} bytes, the maximum for this route.",
                   {"Connection": "close"})


async def _problem(send: Send, scope: Scope, kind: problems.ProblemType, detail: str,
                   headers: dict[str, str] | None = None, **extensions: Any) -> None:
    response = problems.problem_response(kind, detail, scope.get("path"), headers=headers,
                                         **extensions)
    await response(scope, _no_receive, send)


async def _no_receive() -> Message:  # a response never reads the request
    return {"type": "http.disconnect"}
