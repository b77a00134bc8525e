"""The HTTP side: one httpx client per command, RFC 9457 problems turned into client errors."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpx
from tenacity import RetryCallState, Retrying, retry_if_exception

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

DEFAULT_RETRIES = 5  # retries after the first attempt: about a minute of a restarting service
BACKOFF_BASE_S = 0.5  # the first wait is up to this long (full jitter), then doubles
BACKOFF_CAP_S = 30.0
MAX_RETRY_AFTER_S = 120.0  # a server asking for longer is not waited for
RETRY_STATUSES = frozenset({429, 502, 503, 504})
TOO_MANY_REQUESTS = 429
# A 429 is the server pacing a client (a folder of 100,000 files meets the per-officer rate), and
# it refuses before doing anything, so any method may be sent again. Waits it asks for do not use
# up the retries of failures; the client keeps pace for up to this long in all.
THROTTLE_PATIENCE_S = 900.0
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """The wait a ``Retry-After`` field asks for (RFC 9110 10.2.3: seconds or an HTTP date),
    bounded by :data:`MAX_RETRY_AFTER_S`; ``None`` when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER_S)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_S)


def backoff_seconds(attempt: int, *, base: float = BACKOFF_BASE_S, cap: float = BACKOFF_CAP_S,
                    rng: Callable[[float, float], float] = random.uniform) -> float:
    """Exponential backoff with full jitter before retry number ``attempt`` (1, 2, ...)."""
    return rng(0.0, min(cap, base * 2 ** (attempt - 1)))


@dataclass(frozen=True)
class Retry:
    """What the client does when a step fails in a way that may pass: ``retries`` more tries
    after the first, waiting ``Retry-After`` when the server says, else backing off."""

    retries: int = DEFAULT_RETRIES
    base: float = BACKOFF_BASE_S
    on_retry: Callable[[str], None] | None = None  # told before each wait (the CLI shows it)

    def wait(self, attempt: int, retry_after: float | None = None) -> float:
        return retry_after if retry_after is not None else backoff_seconds(attempt,
                                                                           base=self.base)


class _RetryableStatus(Exception):
    def __init__(self, response: httpx.Response, body: bytes | None = None) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response
        self.body = body
        self.retry_after = retry_after_seconds(response.headers.get(fields.RETRY_AFTER))


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, _RetryableStatus | httpx.TransportError) and \
        not isinstance(exc, httpx.LocalProtocolError | httpx.UnsupportedProtocol)


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

    def __init__(self, url: str, token: str | Callable[[], str] | None,
                 retry: Retry | None = None) -> None:
        """``token``: a bearer token (EVX_TOKEN), a source of fresh ones (a signed-in session,
        :mod:`evx.client.sessions`), or None: then the session cached for this server by
        `evx login`, if any."""
        self.origin = server_origin(url)
        self.url = url.rstrip("/")
        self._token = token
        self.retry = retry or Retry()
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

    def _retrying(self, method: str, path: str, idempotent: bool | None,
                  replayable: bool = True) -> Retrying:
        """Tries of one step: transport errors and 429/502/503/504 of an idempotent request
        are tried again, waiting ``Retry-After`` or backing off with jitter."""
        allowed = method.upper() in IDEMPOTENT_METHODS if idempotent is None else idempotent
        retry = self.retry
        paced: set[int] = set()  # the tries the server paced (429), by attempt number

        def throttled(state: RetryCallState) -> bool:
            # A streamed body cannot be sent twice: its caller resumes it (uploads.py).
            exc = state.outcome.exception() if state.outcome else None
            if replayable and isinstance(exc, _RetryableStatus) and \
                    exc.response.status_code == TOO_MANY_REQUESTS:
                paced.add(state.attempt_number)
                return True
            return False

        def failures(state: RetryCallState) -> int:  # tries that failed other than by pacing
            return state.attempt_number - len(paced)

        def stop(state: RetryCallState) -> bool:
            if throttled(state):
                return state.idle_for >= THROTTLE_PATIENCE_S
            return failures(state) > (retry.retries if allowed else 0)

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            after = exc.retry_after if isinstance(exc, _RetryableStatus) else None
            if throttled(state):
                seconds = after if after is not None else backoff_seconds(
                    min(len(paced), 6), base=retry.base)
                if retry.on_retry is not None:
                    retry.on_retry(f"{method} {path}: the server asks to slow down (HTTP 429); "
                                   f"retrying in {seconds:.1f} s")
                return seconds
            seconds = retry.wait(failures(state), after)
            if retry.on_retry is not None:
                what = f"HTTP {exc.response.status_code}" if isinstance(exc, _RetryableStatus) \
                    else f"{type(exc).__name__}: {exc}"
                retry.on_retry(f"{method} {path}: {what}; retrying in {seconds:.1f} s "
                               f"({failures(state)} of {retry.retries} retries)")
            return seconds

        return Retrying(stop=stop, wait=wait, retry=retry_if_exception(_retryable),
                        reraise=True)

    def request(self, method: str, path: str, *, auth: bool = True,
                headers: dict[str, str] | None = None, idempotent: bool | None = None,
                **kwargs: Any) -> httpx.Response:
        """Send a request (tried again as :meth:`_retrying` says); a non-2xx answer raises the
        matching :class:`ClientError`."""
        content = kwargs.get("content")
        replayable = content is None or isinstance(content, bytes | str)
        try:
            for attempt in self._retrying(method, path, idempotent, replayable):
                with attempt:  # headers per try: a signed-in session may renew its token
                    response = self._client.request(method, path,
                                                    headers=self._headers(headers, auth),
                                                    **kwargs)
                    if response.status_code in RETRY_STATUSES:
                        raise _RetryableStatus(response)
        except _RetryableStatus as exc:
            raise error_from_response(exc.response) from None
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
               headers: dict[str, str] | None = None, idempotent: bool | None = None,
               **kwargs: Any) -> Iterator[httpx.Response]:
        """A streaming response; a non-2xx answer raises before the body is read. Opening it
        is tried again like :meth:`request`; a body that breaks off is the caller's to resume."""
        try:
            for attempt in self._retrying(method, path, idempotent):
                with attempt:
                    response = self._client.send(
                        self._client.build_request(method, path,
                                                   headers=self._headers(headers, auth),
                                                   **kwargs), stream=True)
                    if response.status_code >= 400:
                        body = self._bounded_body(response)
                        if response.status_code in RETRY_STATUSES:
                            raise _RetryableStatus(response, body)
                        raise error_from_response(response, body)
        except _RetryableStatus as exc:
            raise error_from_response(exc.response, exc.body) from None
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        try:
            yield response
        except httpx.TransportError as exc:
            raise self._transport_error(exc) from exc
        finally:
            response.close()

    @staticmethod
    def _bounded_body(response: httpx.Response) -> bytes:
        body = b""
        try:
            for piece in response.iter_bytes():
                body += piece
                if len(body) >= MAX_PROBLEM_BYTES:
                    break
        finally:
            response.close()
        return body[:MAX_PROBLEM_BYTES]

    def _transport_error(self, exc: httpx.TransportError) -> ClientError:
        tried = f" (tried {1 + self.retry.retries} times)" if self.retry.retries else ""
        if isinstance(exc, httpx.ConnectError):
            return UnavailableError(f"cannot connect to {self.url}{tried}: {exc}",
                                    hint="Is the server running? Check --url / EVX_URL.",
                                    slug="connection-failed")
        return UnavailableError(f"the connection to {self.url} failed{tried}: "
                                f"{type(exc).__name__}: {exc}",
                                hint="Run the same command again; downloads resume where they "
                                     "stopped.", slug="connection-failed")
