"""The HTTP side: one httpx client per command, RFC 9457 problems turned into client errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from evx.client.errors import (
    AuthenticationError,
    ClientError,
    DeniedError,
    IntegrityFailure,
    UnavailableError,
    UsageError,
)

DEFAULT_URL = "http://127.0.0.1:8000"
CONNECT_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 300.0  # a large item's first bytes may wait on the store
MAX_PROBLEM_BYTES = 64 * 1024  # bound what is read of an error body
USER_AGENT = "evx-client/0.1"


def server_origin(url: str) -> str:
    """``scheme://host:port`` of a server URL (what the trust state is keyed by).

    Raises:
        UsageError: Not an http(s) URL with a host.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"server URL {url!r} is not an http(s) URL",
                         hint="Set --url or EVX_URL, e.g. http://127.0.0.1:8000")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    host = parts.hostname
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}:{port}"


def item_path(package_id: str, name: str) -> str:
    """The URL path of an item; ``/`` in its name stays a separator (the API's ``{name:path}``)."""
    return f"/v1/packages/{quote(package_id, safe='')}/items/{quote(name, safe='/')}"


def package_path(package_id: str) -> str:
    return f"/v1/packages/{quote(package_id, safe='')}"


# problem slug -> (error class, advice). The service's `detail` is shown too.
_PROBLEMS: dict[str, tuple[type[ClientError], str]] = {
    "unauthenticated": (AuthenticationError,
                        "Send a token issued by your authority: --token or EVX_TOKEN."),
    "forbidden": (DeniedError, "Your authority or role may not do this on this package."),
    "share-expired": (DeniedError, "The share with your authority has expired; ask the owning "
                                   "authority to share the package again."),
    "share-revoked": (DeniedError, "The owning authority revoked the share with your "
                                   "authority; contact them."),
    "not-found": (DeniedError, "Check the package id and item name (evx package list / show)."),
    "package-sealed": (UsageError, "A sealed package never changes; create a new package."),
    "package-not-sealed": (UsageError, "Seal the package first: evx seal PACKAGE."),
    "item-exists": (UsageError, "Items are immutable; upload under another name."),
    "conflict": (UsageError, "The request conflicts with the package's current state."),
    "too-large": (UsageError, "The item exceeds the service's maximum item size."),
    "validation": (UsageError, "The service refused the request as invalid."),
    "bad-request": (UsageError, "The service refused the request as malformed."),
    "method-not-allowed": (UsageError, "This server does not offer that operation."),
    "range-not-satisfiable": (UsageError, "The requested byte range is outside the item."),
    "digest-mismatch": (IntegrityFailure,
                        "The bytes the service received do not match the SHA-256 computed "
                        "here: the file changed while it was sent, or the transfer was "
                        "corrupted. Nothing was stored; upload again."),
    "integrity-failure": (IntegrityFailure,
                          "The service found the stored evidence damaged and served nothing. "
                          "Report it to the operator with the package id and item name."),
    "ledger-unavailable": (UnavailableError,
                           "The custody ledger cannot be written, so the service refused the "
                           "operation. Retry later; if it persists, tell the operator."),
    "store-unavailable": (UnavailableError, "The evidence store is unavailable; retry later."),
    "internal": (UnavailableError, "The service failed; retry later, and tell the operator "
                                   "if it persists."),
}

_TOKEN_ADVICE = {
    "expired": "Your token has expired. Ask your authority for a new one and set EVX_TOKEN.",
    "not_yet_valid": "Your token is not valid yet: check this machine's clock.",
    "bad_audience": "Your token was issued for another service.",
    "unknown_issuer": "Your token's issuer is not a registered partner authority here.",
    "unknown_key": "Your token was signed with a key this service does not know or retired.",
}


def error_from_response(response: httpx.Response, body: bytes | None = None) -> ClientError:
    """The client error for a non-success response (problem details when the service sent
    them, else the status)."""
    status = response.status_code
    raw = body if body is not None else response.content[:MAX_PROBLEM_BYTES]
    problem: dict[str, Any] = {}
    if response.headers.get("content-type", "").startswith(("application/problem+json",
                                                             "application/json")):
        try:
            parsed = json.loads(raw)
            if isinstance(parsed, dict):
                problem = parsed
        except ValueError:
            problem = {}
    slug = str(problem.get("type", "")).rstrip("/").rsplit("/", 1)[-1] or None
    detail = str(problem.get("detail") or problem.get("title") or f"HTTP {status}")
    request_id = response.headers.get("x-request-id")
    details: dict[str, Any] = {"status": status}
    if request_id:
        details["request_id"] = request_id
    if slug is None:
        slug = {401: "unauthenticated", 403: "forbidden", 404: "not-found"}.get(status)
        if slug is None:
            slug = "internal" if status >= 500 else "bad-request"
    kind, hint = _PROBLEMS.get(slug, (UnavailableError if status >= 500 else UsageError,
                                      "The service refused the request."))
    if slug == "unauthenticated":
        reason = problem.get("reason")
        if isinstance(reason, str):
            details["reason"] = reason
            hint = _TOKEN_ADVICE.get(reason, hint)
            if reason == "expired":
                detail = "the token has expired"
    if request_id and (slug == "integrity-failure" or kind is UnavailableError):
        hint = f"{hint} (request id {request_id})"
    return kind(detail, hint=hint, slug=slug, details=details)


class Api:
    """A connection to one evidence-exchange server as one officer."""

    def __init__(self, url: str, token: str | None) -> None:
        self.origin = server_origin(url)
        self.url = url.rstrip("/")
        self._token = token
        self._client = httpx.Client(
            base_url=self.url,
            timeout=httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S),
            headers={"User-Agent": USER_AGENT},
            follow_redirects=False,
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Api:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _headers(self, extra: dict[str, str] | None, auth: bool) -> dict[str, str]:
        headers = dict(extra or {})
        if auth:
            if not self._token:
                raise AuthenticationError(
                    "no token", hint="Give --token or set EVX_TOKEN to a token issued by your "
                                     "authority.", slug="unauthenticated")
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def request(self, method: str, path: str, *, auth: bool = True,
                headers: dict[str, str] | None = None, **kwargs: Any) -> httpx.Response:
        """Send a request; a non-2xx answer raises the matching :class:`ClientError`."""
        try:
            response = self._client.request(method, path, headers=self._headers(headers, auth),
                                            **kwargs)
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        if response.status_code >= 400:
            raise error_from_response(response)
        return response

    def json(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.request(method, path, **kwargs)
        try:
            return response.json()
        except ValueError as exc:
            raise UnavailableError(f"the server sent a body that is not JSON for {path}") from exc

    @contextmanager
    def stream(self, method: str, path: str, *, auth: bool = True,
               headers: dict[str, str] | None = None, **kwargs: Any
               ) -> Iterator[httpx.Response]:
        """A streaming response; a non-2xx answer raises before the body is read."""
        try:
            with self._client.stream(method, path, headers=self._headers(headers, auth),
                                     **kwargs) as response:
                if response.status_code >= 400:
                    body = b""
                    for piece in response.iter_bytes():
                        body += piece
                        if len(body) >= MAX_PROBLEM_BYTES:
                            break
                    raise error_from_response(response, body[:MAX_PROBLEM_BYTES])
                yield response
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc

    def _transport_error(self, exc: httpx.TransportError) -> ClientError:
        if isinstance(exc, httpx.ConnectError):
            return UnavailableError(f"cannot connect to {self.url}: {exc}",
                                    hint="Is the server running? Check --url / EVX_URL.",
                                    slug="connection-failed")
        return UnavailableError(f"the connection to {self.url} failed: "
                                f"{type(exc).__name__}: {exc}",
                                hint="Retry; transfers resume where they stopped.",
                                slug="connection-failed")
