"""The HTTP side: one httpx client per command, RFC 9457 problems turned into client errors."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
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
from evx.protocol import headers as fields
from evx.protocol import problems
from evx.protocol.tokens import REFUSAL_ADVICE

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


# problem type -> (error class, advice). The service's `detail` is shown too.
_PROBLEMS: dict[str, tuple[type[ClientError], str]] = {
    problems.UNAUTHENTICATED.slug: (AuthenticationError, "Send a token issued by your "
                                                         "authority: --token or EVX_TOKEN."),
    problems.FORBIDDEN.slug: (DeniedError, "Your authority or role may not do this on this "
                                           "package."),
    problems.SHARE_EXPIRED.slug: (DeniedError, "The share with your authority has expired; ask "
                                               "the owning authority to share the package "
                                               "again."),
    problems.SHARE_REVOKED.slug: (DeniedError, "The owning authority revoked the share with your "
                                               "authority; contact them."),
    problems.NOT_FOUND.slug: (DeniedError, "Check the package id and item name (evx package "
                                           "list / show)."),
    problems.PACKAGE_SEALED.slug: (UsageError, "A sealed package never changes; create a new "
                                               "package."),
    problems.PACKAGE_NOT_SEALED.slug: (UsageError, "Seal the package first: evx seal PACKAGE."),
    problems.ITEM_EXISTS.slug: (UsageError, "Items are immutable; upload under another name."),
    problems.NAME_CONFLICT.slug: (UsageError, "A file or link cannot also be the directory of "
                                              "another item of the package."),
    problems.NOT_A_FILE.slug: (UsageError, "Links and directories have no content; evx "
                                           "download creates them from their metadata."),
    problems.CONFLICT.slug: (UsageError, "The request conflicts with the package's current "
                                         "state."),
    problems.REQUEST_STATE.slug: (UsageError, "The request is not in a state that allows "
                                              "this; see evx request show."),
    problems.UPLOAD_NOT_FOUND.slug: (UsageError, "The upload was completed, cancelled or "
                                                 "expired; run the same command again."),
    problems.UPLOAD_IN_PROGRESS.slug: (UsageError, "Another upload of this item is in "
                                                   "progress; wait for it or retry later."),
    problems.UPLOAD_SUPERSEDED.slug: (UsageError, "A newer upload of this item took over."),
    problems.MISMATCHING_UPLOAD_OFFSET.slug: (UsageError, "The server's upload offset moved; "
                                                          "run the same command again."),
    problems.INCONSISTENT_UPLOAD_LENGTH.slug: (UsageError, "The file's length changed "
                                                           "during the upload; upload it "
                                                           "again."),
    problems.TOO_LARGE.slug: (UsageError, "The item exceeds the service's maximum item size."),
    problems.BODY_TOO_LARGE.slug: (UsageError, "The request is larger than the service "
                                               "accepts for this operation."),
    problems.TOO_MANY_REQUESTS.slug: (UnavailableError, "The service limits how fast one "
                                                        "officer or authority may make "
                                                        "requests; retry in a minute."),
    problems.VALIDATION.slug: (UsageError, "The service refused the request as invalid."),
    problems.BAD_REQUEST.slug: (UsageError, "The service refused the request as malformed."),
    problems.METHOD_NOT_ALLOWED.slug: (UsageError, "This server does not offer that "
                                                   "operation."),
    problems.RANGE_NOT_SATISFIABLE.slug: (UsageError, "The requested byte range is outside "
                                                      "the item."),
    problems.DIGEST_MISMATCH.slug: (IntegrityFailure,
                                    "The bytes the service received do not match the SHA-256 "
                                    "computed here: the file changed while it was sent, or the "
                                    "transfer was corrupted. Nothing was stored; upload again."),
    problems.INTEGRITY.slug: (IntegrityFailure,
                              "The service found the stored evidence damaged and served "
                              "nothing. Report it to the operator with the package id and item "
                              "name."),
    problems.LEDGER_INCONSISTENT.slug: (IntegrityFailure,
                                        "The service found its ledger inconsistent with its "
                                        "signed checkpoints and serves nothing. Report it to "
                                        "the operator and your auditors."),
    problems.LEDGER_UNAVAILABLE.slug: (UnavailableError,
                                       "The custody ledger cannot be written, so the service "
                                       "refused the operation. Retry later; if it persists, "
                                       "tell the operator."),
    problems.TRANSFER_STALLED.slug: (UnavailableError, "The connection moved too slowly and "
                                                       "the service cut it; run the command "
                                                       "again."),
    problems.SERVICE_BUSY.slug: (UnavailableError, "The service is at its transfer capacity; "
                                                   "retry in a moment."),
    problems.STORE_UNAVAILABLE.slug: (UnavailableError, "The evidence store is unavailable; "
                                                        "retry later."),
    problems.INTERNAL.slug: (UnavailableError, "The service failed; retry later, and tell the "
                                               "operator if it persists."),
}


_KEPT_PROBLEM_MEMBERS = ("upload", "offset", "length", "expected-offset", "provided-offset")


def problem_advice(slug: str) -> tuple[type[ClientError], str] | None:
    """The client error class and advice for a problem type's slug (``None``: unknown)."""
    return _PROBLEMS.get(slug)


def error_from_response(response: httpx.Response, body: bytes | None = None) -> ClientError:
    """The client error for a non-success response (problem details when the service sent
    them, else the status)."""
    status = response.status_code
    raw = body if body is not None else response.content[:MAX_PROBLEM_BYTES]
    problem: dict[str, Any] = {}
    if response.headers.get("content-type", "").startswith((problems.PROBLEM_JSON,
                                                             "application/json")):
        try:
            parsed = json.loads(raw)
            if isinstance(parsed, dict):
                problem = parsed
        except ValueError:
            problem = {}
    slug = problems.slug_of(problem.get("type"))
    detail = str(problem.get("detail") or problem.get("title") or f"HTTP {status}")
    request_id = response.headers.get(fields.REQUEST_ID)
    details: dict[str, Any] = {"status": status}
    if request_id:
        details["request_id"] = request_id
    for member in _KEPT_PROBLEM_MEMBERS:  # what a client needs to continue (resumable uploads)
        if member in problem:
            details[member] = problem[member]
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
            advice = REFUSAL_ADVICE.get(reason)
            if advice is not None:
                hint = f"{advice} Set EVX_TOKEN (or --token) to a valid token."
            if reason == "expired":
                detail = "the token has expired"
    if request_id and (slug == "integrity-failure" or kind is UnavailableError):
        hint = f"{hint} (request id {request_id})"
    return kind(detail, hint=hint, slug=slug, details=details)


class Api:
    """A connection to one evidence-exchange server as one officer."""

    def __init__(self, url: str, token: str | Callable[[], str] | None) -> None:
        """``token``: a bearer token (EVX_TOKEN), a source of fresh ones (a signed-in session,
        :mod:`evx.client.sessions`), or None: then the session cached for this server by
        `evx login`, if any."""
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
                from evx.client.sessions import default_store, signed_in

                self._token = signed_in(default_store(), self.origin)
            if not self._token:
                raise AuthenticationError(
                    "no token", hint="Sign in with your authority: evx login --authority ID "
                                     "(scripts: set EVX_TOKEN to a token your authority "
                                     "issued).", slug="unauthenticated")
            token = self._token if isinstance(self._token, str) else self._token()
            headers["Authorization"] = f"Bearer {token}"
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
