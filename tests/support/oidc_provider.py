"""A real OpenID provider on loopback for the sign-in tests, built on Authlib's authorization
server (Flask integration): device authorization grant (RFC 8628), authorization code with PKCE
(RFC 7636) for a public client on a loopback redirect (RFC 8252), refresh tokens with rotation,
revocation (RFC 7009), RFC 9068 JWT access tokens signed by keys served as a JWK set, and an
OpenID Connect discovery document. Nothing returns fixed tokens: every token is minted by
Authlib's grants after a user approved, over HTTP, as a browser would.

The test plays the user: :meth:`OpenIDProvider.approve_device` posts the verification form,
:meth:`OpenIDProvider.sign_in_browser` follows the authorization URL, posts the login form and
follows the redirect to the client's loopback listener.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx
from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, TokenMixin, grants
from authlib.oauth2.rfc6749.errors import OAuth2Error
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc8628 import (
    DeviceAuthorizationEndpoint,
    DeviceCodeGrant,
    DeviceCredentialDict,
)
from authlib.oauth2.rfc9068 import JWTBearerTokenGenerator
from authlib.oidc.discovery import OpenIDProviderMetadata
from flask import Flask, jsonify, request
from joserfc.jwk import ECKey, KeySet, RSAKey
from werkzeug.serving import WSGIRequestHandler, make_server

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass
class User:
    username: str
    password: str
    role: str

    def get_user_id(self) -> str:
        return self.username


@dataclass
class Client(ClientMixin):  # type: ignore[misc]
    """A public client (no secret), redirecting to a loopback listener on any port."""

    client_id: str
    grant_types: tuple[str, ...] = ("authorization_code", DEVICE_GRANT, "refresh_token")

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> None:
        return None

    def get_allowed_scope(self, scope: str) -> str:
        allowed = {"openid", "offline_access", "evx"}
        return " ".join(s for s in (scope or "").split() if s in allowed)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        # RFC 8252 section 7.3: any port on the loopback IP literal, http only.
        parts = urlsplit(redirect_uri)
        return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1") and \
            parts.port is not None

    def check_client_secret(self, client_secret: str) -> bool:
        return False

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "none"

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


@dataclass
class RefreshToken(TokenMixin):  # type: ignore[misc]
    value: str
    client_id: str
    user: User
    scope: str
    issued_at: float
    lifetime: int
    revoked: bool = False

    def check_client(self, client: Client) -> bool:
        return client.get_client_id() == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return self.lifetime

    def is_expired(self) -> bool:
        return time.time() >= self.issued_at + self.lifetime

    def is_revoked(self) -> bool:
        return self.revoked

    def get_user(self) -> User:
        return self.user

    def get_client(self) -> Any:
        return None


@dataclass
class AuthorizationCode:
    code: str
    client_id: str
    redirect_uri: str
    scope: str
    user: User
    code_challenge: str | None
    code_challenge_method: str | None
    expires_at: float

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def is_expired(self) -> bool:
        return time.time() > self.expires_at


@dataclass
class ProviderState:
    clients: dict[str, Client] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    codes: dict[str, AuthorizationCode] = field(default_factory=dict)
    devices: dict[str, DeviceCredentialDict] = field(default_factory=dict)
    device_grants: dict[str, tuple[User, bool]] = field(default_factory=dict)
    refresh_tokens: dict[str, RefreshToken] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)


class OpenIDProvider:
    """Start with :meth:`start`; ``issuer`` is ``http://127.0.0.1:PORT``."""

    def __init__(self, *, audience: str, access_token_seconds: int = 300,
                 refresh_token_seconds: int = 36_000, algorithm: str = "RS256") -> None:
        self.audience = audience
        self.access_token_seconds = access_token_seconds
        self.refresh_token_seconds = refresh_token_seconds
        self.algorithm = algorithm
        self.state = ProviderState()
        self.signing_key = self._new_key()
        self.published: list[Any] = [self.signing_key]
        self.requests: list[str] = []  # paths served, for assertions on what the hub fetched
        self.refreshes = 0  # refresh grants honoured
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.issuer = ""

    # -- administration (what the provider's operators do) ---------------------------------

    def add_client(self, client_id: str) -> None:
        self.state.clients[client_id] = Client(client_id)

    def add_user(self, username: str, password: str, role: str) -> None:
        self.state.users[username] = User(username, password, role)

    def rotate_key(self, *, keep_previous: bool = True) -> str:
        """Sign with a new key from now on; publish it (and the previous one, if kept)."""
        self.signing_key = self._new_key()
        self.published = ([*self.published] if keep_previous else []) + [self.signing_key]
        return str(self.signing_key.kid)

    def withdraw(self, kid: str) -> None:
        self.published = [k for k in self.published if k.kid != kid]

    @property
    def kid(self) -> str:
        return str(self.signing_key.kid)

    def _new_key(self) -> Any:
        kid = f"idp-{secrets.token_hex(6)}"
        params = {"kid": kid, "use": "sig", "alg": self.algorithm}
        if self.algorithm.startswith("ES"):
            return ECKey.generate_key("P-256", parameters=params)
        return RSAKey.generate_key(2048, parameters=params)

    # -- the user's side, played by the test -------------------------------------------------

    def approve_device(self, user_code: str, username: str, password: str, *,
                       approve: bool = True) -> None:
        """The officer opens the verification URI, signs in and approves (or denies)."""
        with httpx.Client(base_url=self.issuer) as browser:
            page = browser.get("/device", params={"user_code": user_code})
            assert page.status_code == 200, page.text
            answer = browser.post("/device", data={
                "user_code": user_code, "username": username, "password": password,
                "decision": "approve" if approve else "deny"})
            assert answer.status_code == 200, answer.text

    def revoke(self, token: str, client_id: str) -> None:
        """RFC 7009 revocation, as the provider's admin console or `evx logout` does."""
        r = httpx.post(self.issuer + "/revoke", data={
            "token": token, "token_type_hint": "refresh_token", "client_id": client_id})
        assert r.status_code == 200, r.text

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> OpenIDProvider:
        app = Flask("evx-test-idp")
        self._server = make_server("127.0.0.1", 0, app, threaded=True,
                                   request_handler=_QuietHandler)
        self.issuer = f"http://127.0.0.1:{self._server.server_port}"
        self._wire(app)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True,
                                        name="oidc-provider")
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def metadata(self) -> dict[str, Any]:
        doc = OpenIDProviderMetadata({
            "issuer": self.issuer,
            "authorization_endpoint": self.issuer + "/authorize",
            "token_endpoint": self.issuer + "/token",
            "device_authorization_endpoint": self.issuer + "/device_authorization",
            "revocation_endpoint": self.issuer + "/revoke",
            "jwks_uri": self.issuer + "/jwks",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", DEVICE_GRANT, "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": sorted({"RS256", self.algorithm}),
            "scopes_supported": ["openid", "offline_access", "evx"],
        })
        doc.validate()
        return dict(doc)

    # The route table: one short closure per endpoint and per authlib grant hook (C901 counts
    # them all as branches of this one function).
    def _wire(self, app: Flask) -> None:  # noqa: C901
        provider, state = self, self.state

        class Tokens(JWTBearerTokenGenerator):  # type: ignore[misc]
            def get_jwks(self) -> KeySet:
                return KeySet([provider.signing_key])

            def get_audiences(self, client: Client, user: User, scope: str) -> str:
                return provider.audience

            def get_extra_claims(self, client: Client, grant_type: str, user: User,
                                 scope: str) -> dict[str, Any]:
                return {"role": user.role}

        def expires_in(client: Client, grant_type: str) -> int:
            return provider.access_token_seconds

        generator = Tokens(self.issuer, alg=self.algorithm,
                           refresh_token_generator=lambda *a, **k: secrets.token_urlsafe(32),
                           expires_generator=expires_in)

        def save_token(token: dict[str, Any], req: Any) -> None:
            refresh = token.get("refresh_token")
            if refresh:
                with state.lock:
                    state.refresh_tokens[refresh] = RefreshToken(
                        refresh, req.client.get_client_id(), req.user, token.get("scope", ""),
                        time.time(), provider.refresh_token_seconds)

        server = AuthorizationServer(app, query_client=state.clients.get, save_token=save_token)
        server.register_token_generator("default", generator)

        class CodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
            TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["none"]

            def save_authorization_code(self, code: str, req: Any) -> None:
                state.codes[code] = AuthorizationCode(
                    code, req.client.get_client_id(), req.payload.redirect_uri,
                    req.payload.scope, req.user, req.payload.data.get("code_challenge"),
                    req.payload.data.get("code_challenge_method"), time.time() + 60)

            def query_authorization_code(self, code: str, client: Client) -> Any:
                found = state.codes.get(code)
                if found and found.client_id == client.get_client_id() and \
                        not found.is_expired():
                    return found
                return None

            def delete_authorization_code(self, authorization_code: AuthorizationCode) -> None:
                state.codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code: AuthorizationCode) -> User:
                return authorization_code.user

        class Device(DeviceCodeGrant):  # type: ignore[misc]
            TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["none"]

            def query_device_credential(self, device_code: str) -> Any:
                return state.devices.get(device_code)

            def query_user_grant(self, user_code: str) -> tuple[User, bool] | None:
                return state.device_grants.get(user_code)

            def should_slow_down(self, credential: Any) -> bool:
                return False

        class Refresh(grants.RefreshTokenGrant):  # type: ignore[misc]
            TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = ["none"]
            INCLUDE_NEW_REFRESH_TOKEN = True  # rotation: each refresh token is used once

            def authenticate_refresh_token(self, refresh_token: str) -> Any:
                found = state.refresh_tokens.get(refresh_token)
                if found and not found.is_revoked() and not found.is_expired():
                    provider.refreshes += 1
                    return found
                return None

            def authenticate_user(self, refresh_token: RefreshToken) -> User:
                return refresh_token.user

            def revoke_old_credential(self, refresh_token: RefreshToken) -> None:
                refresh_token.revoked = True

        class DeviceAuthorization(DeviceAuthorizationEndpoint):  # type: ignore[misc]
            CLIENT_AUTH_METHODS: ClassVar[list[str]] = ["none"]
            INTERVAL = 1

            def get_verification_uri(self) -> str:
                return provider.issuer + "/device"

            def save_device_credential(self, client_id: str, scope: str,
                                       data: dict[str, Any]) -> None:
                state.devices[data["device_code"]] = DeviceCredentialDict(
                    client_id=client_id, scope=scope, expires_at=time.time() + data[
                        "expires_in"], **data)

        class Revocation(RevocationEndpoint):  # type: ignore[misc]
            CLIENT_AUTH_METHODS: ClassVar[list[str]] = ["none"]

            def query_token(self, token_string: str, token_type_hint: str | None) -> Any:
                return state.refresh_tokens.get(token_string)

            def revoke_token(self, token: RefreshToken, req: Any) -> None:
                token.revoked = True

        server.register_grant(CodeGrant, [CodeChallenge(required=True)])
        server.register_grant(Device)
        server.register_grant(Refresh)
        server.register_endpoint(DeviceAuthorization)
        server.register_endpoint(Revocation)

        @app.before_request
        def _count() -> None:
            provider.requests.append(request.path)

        @app.get("/.well-known/openid-configuration")
        def discovery() -> Any:
            return jsonify(provider.metadata())

        @app.get("/jwks")
        def jwks() -> Any:
            return jsonify(KeySet(list(provider.published)).as_dict(private=False))

        @app.post("/token")
        def token() -> Any:
            return server.create_token_response()

        @app.post("/device_authorization")
        def device_authorization() -> Any:
            return server.create_endpoint_response("device_authorization")

        @app.post("/revoke")
        def revoke() -> Any:
            return server.create_endpoint_response("revocation")

        @app.route("/device", methods=["GET", "POST"])
        def device() -> Any:
            if request.method == "GET":
                return f"<form method=post>code {request.args.get('user_code', '')}</form>"
            user = state.users.get(request.form["username"])
            if user is None or not secrets.compare_digest(user.password,
                                                          request.form["password"]):
                return "bad credentials", 401
            code = request.form["user_code"]
            if not any(d["user_code"] == code for d in state.devices.values()):
                return "unknown code", 400
            state.device_grants[code] = (user, request.form["decision"] == "approve")
            return "You may close this window."

        @app.route("/authorize", methods=["GET", "POST"])
        def authorize() -> Any:
            if request.method == "GET":
                try:
                    server.get_consent_grant(end_user=None)
                except OAuth2Error as exc:
                    return f"error: {exc.error}", 400
                # A sign-in page a real browser can use too (tests/web drive it with chromium).
                return ("<!doctype html><title>Sign in</title><form method=post>"
                        "<label>User <input name=username id=username></label>"
                        "<label>Password <input name=password id=password type=password>"
                        "</label><button type=submit id=login>Sign in</button></form>")
            user = state.users.get(request.form.get("username", ""))
            if user is None or not secrets.compare_digest(user.password,
                                                          request.form.get("password", "")):
                return "bad credentials", 401
            grant = server.get_consent_grant(end_user=user)
            return server.create_authorization_response(grant=grant, grant_user=user)


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args: Any, **kwargs: Any) -> None:
        return


def play_browser(authorize_url: str, username: str, password: str) -> httpx.Response:
    """The officer's browser: open the authorization URL, post the provider's login form,
    follow the redirect to the client's loopback listener; return the listener's page."""
    with httpx.Client(follow_redirects=False) as browser:
        page = browser.get(authorize_url)
        assert page.status_code == 200, page.text
        answer = browser.post(authorize_url, data={"username": username, "password": password})
        assert answer.status_code == 302, answer.text
        return browser.get(answer.headers["location"])


if __name__ == "__main__":  # as $BROWSER: python -m tests.support.oidc_provider URL
    import os
    import sys

    landing = play_browser(sys.argv[1], os.environ["IDP_TEST_USER"],
                           os.environ["IDP_TEST_PASSWORD"])
    sys.exit(0 if landing.status_code == 200 else 1)
