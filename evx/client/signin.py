"""Signing in with the officer's own authority: OpenID Connect against the issuer the hub's trust
registry records for that authority, with Authlib's OAuth 2.0 client.

* Device authorization grant (RFC 8628) for terminals: the officer opens the verification URI
  anywhere (a phone will do) and types the code.
* Authorization code with PKCE (RFC 7636) and a loopback redirect (RFC 8252 section 7.3) where a
  browser is at hand: a one-shot listener on ``http://127.0.0.1:PORT/callback``.

The result is a :class:`Session` (access token, refresh token, endpoints) that
:mod:`evx.client.sessions` caches per server and refreshes before it expires. Library code:
nothing here prints; ``show`` and ``open_browser`` callbacks belong to the caller.
"""

from __future__ import annotations

import html
import secrets
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx

from evx.client.errors import AuthenticationError, UnavailableError, UsageError
from evx.client.http import Api

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
#: ``offline_access`` asks for a refresh token: a 10-hour download outlives any access token.
SCOPES = "openid offline_access"
TIMEOUT_S = 15.0
MAX_DOCUMENT_BYTES = 256 * 1024  # bound on what an identity provider may make us read
BROWSER_WAIT_S = 300.0  # how long the loopback listener waits for the browser to come back


@dataclass(frozen=True)
class SignInTarget:
    """Where officers of ``authority`` sign in, as the hub's trust registry records it."""

    authority: str
    issuer: str
    client_id: str
    audience: str


@dataclass(frozen=True)
class DeviceCode:
    """What the officer needs to approve a device sign-in (RFC 8628 section 3.2)."""

    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: int


@dataclass
class Session:
    """A signed-in officer's tokens for one server; what the session cache stores."""

    server: str
    authority: str
    issuer: str
    client_id: str
    token_endpoint: str
    revocation_endpoint: str | None
    access_token: str
    expires_at: float
    refresh_token: str | None
    obtained_at: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Session:
        try:
            return cls(**{name: data[name] for name in cls.__dataclass_fields__})
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a session: {exc}") from exc


def sign_in_target(api: Api, authority: str) -> SignInTarget:
    """Ask the hub where officers of ``authority`` sign in (no token needed)."""
    body = api.json("GET", f"/v1/authorities/{quote(authority, safe='')}/sign-in", auth=False)
    try:
        return SignInTarget(authority=str(body["authority"]), issuer=str(body["issuer"]),
                            client_id=str(body["client_id"]), audience=str(body["audience"]))
    except (KeyError, TypeError) as exc:
        raise UnavailableError("the server's sign-in answer is incomplete") from exc


def discover(issuer: str, http: httpx.Client) -> dict[str, Any]:
    """The issuer's OpenID Connect discovery document; its ``issuer`` must be ``issuer``."""
    url = issuer.rstrip("/") + "/.well-known/openid-configuration"
    try:
        response = http.get(url, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise UnavailableError(f"cannot reach your authority's sign-in service {issuer}: {exc}",
                               hint="Check your network; the hub's operator has the issuer "
                                    "URL on record.", slug="connection-failed") from exc
    if response.status_code != 200 or len(response.content) > MAX_DOCUMENT_BYTES:
        raise UnavailableError(f"{url}: HTTP {response.status_code}")
    try:
        document = response.json()
    except ValueError as exc:
        raise UnavailableError(f"{url}: not JSON") from exc
    if not isinstance(document, dict) or document.get("issuer") != issuer:
        # OpenID Connect Discovery 1.0 section 4.3: a mismatch means someone else answered.
        raise AuthenticationError(f"{url} names issuer {document.get('issuer')!r}, not "
                                  f"{issuer!r}", hint="Tell the hub's operator.")
    return document


def _oauth_client(target: SignInTarget, http_kwargs: dict[str, Any] | None = None,
                  **kwargs: Any) -> Any:
    # Authlib 1.6+ announces, on import, the move of its JOSE layer to joserfc -- a note for
    # developers, not officers -- and forces such warnings to "always" show: record them away.
    with warnings.catch_warnings(record=True):
        from authlib.integrations.httpx_client import OAuth2Client

    return OAuth2Client(client_id=target.client_id, token_endpoint_auth_method="none",
                        timeout=TIMEOUT_S, **(http_kwargs or {}), **kwargs)


def device_sign_in(server: str, target: SignInTarget, metadata: dict[str, Any], *,
                   show: Callable[[DeviceCode], None],
                   sleep: Callable[[float], None] = time.sleep) -> Session:
    """RFC 8628: get a user code, let ``show`` tell the officer, poll until approved.

    Raises AuthenticationError (denied, expired, refused), UnavailableError, UsageError (the
    provider offers no device flow).
    """
    endpoint = metadata.get("device_authorization_endpoint")
    if not isinstance(endpoint, str):
        raise UsageError(f"{target.issuer} offers no device sign-in",
                         hint="Use evx login --browser on a machine with a browser.")
    with _oauth_client(target) as client:
        try:
            answer = client.request("POST", endpoint, withhold_token=True, data={
                "client_id": target.client_id, "scope": SCOPES})
        except httpx.HTTPError as exc:
            raise UnavailableError(f"device sign-in at {endpoint} failed: {exc}") from exc
        if answer.status_code != 200:
            raise AuthenticationError(f"the sign-in service refused a device sign-in: "
                                      f"{_oauth_error(answer)}")
        grant = answer.json()
        code = DeviceCode(user_code=str(grant["user_code"]),
                          verification_uri=str(grant["verification_uri"]),
                          verification_uri_complete=grant.get("verification_uri_complete"),
                          expires_in=int(grant.get("expires_in", 600)))
        show(code)
        interval = max(1.0, float(grant.get("interval", 5)))
        deadline = time.monotonic() + code.expires_in
        while True:
            sleep(interval)
            if time.monotonic() > deadline:
                raise AuthenticationError("the sign-in code expired before it was approved",
                                          hint="Run evx login again.")
            token = _token_request(client, metadata["token_endpoint"], {
                "grant_type": DEVICE_GRANT, "device_code": grant["device_code"],
                "client_id": target.client_id})
            error = token.get("error")
            if error == "authorization_pending":
                continue
            if error == "slow_down":  # RFC 8628 section 3.5: add 5 seconds
                interval += 5
                continue
            if error == "access_denied":
                raise AuthenticationError("the sign-in was denied")
            if error == "expired_token":
                raise AuthenticationError("the sign-in code expired before it was approved",
                                          hint="Run evx login again.")
            if error:
                raise AuthenticationError(f"sign-in refused: {error}")
            return _session(server, target, metadata, token)


def browser_sign_in(server: str, target: SignInTarget, metadata: dict[str, Any], *,
                    open_browser: Callable[[str], object],
                    wait: float = BROWSER_WAIT_S) -> Session:
    """Authorization code + PKCE (S256) with a loopback redirect (RFC 8252).

    Raises AuthenticationError (denied, state mismatch, refused), UnavailableError.
    """
    with warnings.catch_warnings(record=True):  # as in _oauth_client
        from authlib.common.security import generate_token

    listener = _LoopbackListener()
    try:
        redirect_uri = f"http://127.0.0.1:{listener.port}/callback"
        verifier = generate_token(64)  # RFC 7636 section 4.1: 43-128 characters
        state = secrets.token_urlsafe(24)
        with _oauth_client(target, redirect_uri=redirect_uri, scope=SCOPES,
                           code_challenge_method="S256") as client:
            url, _ = client.create_authorization_url(metadata["authorization_endpoint"],
                                                     state=state, code_verifier=verifier)
            listener.start()
            open_browser(url)
            params = listener.wait(wait)
            if params is None:
                raise AuthenticationError("no answer from the browser in time",
                                          hint="Run evx login again, or evx login --device.")
            if not secrets.compare_digest(params.get("state", ""), state):
                raise AuthenticationError("the sign-in answer does not belong to this sign-in "
                                          "(state mismatch)")
            if "error" in params:
                raise AuthenticationError(f"sign-in refused: {params['error']}")
            token = _token_request(client, metadata["token_endpoint"], {
                "grant_type": "authorization_code", "code": params.get("code", ""),
                "redirect_uri": redirect_uri, "client_id": target.client_id,
                "code_verifier": verifier})
            if "error" in token:
                raise AuthenticationError(f"sign-in refused: {token['error']}")
            return _session(server, target, metadata, token)
    finally:
        listener.close()


def refresh(session: Session) -> Session:
    """A new access token from the refresh token (the provider may rotate the refresh token).

    Raises AuthenticationError (no refresh token, or refused: revoked, expired -- sign in
    again), UnavailableError (the provider cannot be reached).
    """
    if not session.refresh_token:
        raise AuthenticationError("your sign-in has expired",
                                  hint=f"Sign in again: evx login --authority "
                                       f"{session.authority}", slug="signed-out")
    target = SignInTarget(session.authority, session.issuer, session.client_id, "")
    with _oauth_client(target) as client:
        token = _token_request(client, session.token_endpoint, {
            "grant_type": "refresh_token", "refresh_token": session.refresh_token,
            "client_id": session.client_id})
    if "error" in token:
        raise AuthenticationError(
            f"your sign-in has ended: the sign-in service refused to renew it "
            f"({token['error']})", hint=f"Sign in again: evx login --authority "
                                         f"{session.authority}", slug="signed-out")
    renewed = _session(session.server, target, {
        "token_endpoint": session.token_endpoint,
        "revocation_endpoint": session.revocation_endpoint}, token)
    if renewed.refresh_token is None:  # the provider kept the refresh token as it was
        renewed.refresh_token = session.refresh_token
    return renewed


def revoke(session: Session) -> bool:
    """RFC 7009: ask the provider to revoke the refresh token. True if it said yes."""
    if not session.revocation_endpoint or not session.refresh_token:
        return False
    try:
        response = httpx.post(session.revocation_endpoint, timeout=TIMEOUT_S, data={
            "token": session.refresh_token, "token_type_hint": "refresh_token",
            "client_id": session.client_id})
    except httpx.HTTPError:
        return False
    return response.status_code == 200


def _token_request(client: Any, url: str, form: dict[str, str]) -> dict[str, Any]:
    """POST to the token endpoint; the JSON answer, errors included (``{"error": ...}``)."""
    try:
        response = client.request("POST", url, data=form, withhold_token=True,
                                  headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise UnavailableError(f"the sign-in service at {url} cannot be reached: {exc}",
                               slug="connection-failed") from exc
    try:
        body = response.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise UnavailableError(f"the sign-in service answered HTTP {response.status_code} "
                               "without a JSON body")
    if response.status_code != 200 and "error" not in body:
        body["error"] = f"HTTP {response.status_code}"
    return body


def _oauth_error(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error"))
    except (ValueError, AttributeError):
        return f"HTTP {response.status_code}"


def _session(server: str, target: SignInTarget, metadata: dict[str, Any],
             token: dict[str, Any]) -> Session:
    access = token.get("access_token")
    if not isinstance(access, str) or not access:
        raise AuthenticationError("the sign-in service sent no access token")
    now = time.time()
    expires_in = token.get("expires_in")
    lifetime = float(expires_in) if isinstance(expires_in, int | float) else 300.0
    refresh_token = token.get("refresh_token")
    return Session(server=server, authority=target.authority, issuer=target.issuer,
                   client_id=target.client_id, token_endpoint=metadata["token_endpoint"],
                   revocation_endpoint=metadata.get("revocation_endpoint"),
                   access_token=access, expires_at=now + lifetime,
                   refresh_token=refresh_token if isinstance(refresh_token, str) else None,
                   obtained_at=now)


class _LoopbackListener:
    """One redirect on 127.0.0.1 (RFC 8252 section 7.3: the loopback IP literal, any port)."""

    def __init__(self) -> None:
        self.params: dict[str, str] | None = None
        self._arrived = threading.Event()
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                if parts.path != "/callback" or listener._arrived.is_set():
                    self.send_error(404)
                    return
                listener.params = {k: v[0] for k, v in parse_qs(parts.query).items()}
                listener._arrived.set()
                text = ("Signed in: you may close this window and return to the terminal."
                        if "code" in listener.params else
                        f"Sign-in failed: {listener.params.get('error', 'no code')}")
                page = f"<!doctype html><title>evx</title><p>{html.escape(text)}</p>".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = int(self._server.server_address[1])
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="evx-login-listener")
        self._thread.start()

    def wait(self, timeout: float) -> dict[str, str] | None:
        return self.params if self._arrived.wait(timeout) else None

    def close(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
        self._server.server_close()
