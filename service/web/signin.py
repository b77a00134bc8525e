"""Signing officers in to the web application: OpenID Connect authorization code with PKCE
(RFC 7636) against the issuer the trust registry records for the authority they pick.

The service is the OAuth client here (the authority's public client id, this service's
``/app/callback`` as redirect URI): it exchanges the code itself and verifies the access token
exactly as it verifies a bearer token on the API, so a web session is never more than what the
authority's provider vouched for.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Protocol
from urllib.parse import urlencode

import httpx
import structlog
from sqlalchemy.engine import Engine

from service.identity.errors import AuthenticationFailed, UnknownAuthority
from service.identity.http import authenticate
from service.identity.providers import (
    ProviderUnavailable,
    discovery_document,
    provider_http_client,
)
from service.identity.registry import TrustRegistry
from service.identity.tokens import Principal, TrustedKey
from service.settings import Settings
from service.web.sessions import PendingSignIn, WebSession, WebSessions

log = structlog.get_logger("evx.web")

#: ``openid`` for the provider, ``offline_access`` for a refresh token sign-out can revoke.
SCOPES = "openid offline_access"
MAX_TOKEN_RESPONSE_BYTES = 64 * 1024  # DoS bound on what a provider may make us parse


class SignInRuntime(Protocol):
    """What sign-in needs of the running service (``service.runtime.Runtime`` has it; that
    module sits above this one, so the type is spelled here)."""

    @property
    def engine(self) -> Engine: ...
    @property
    def settings(self) -> Settings: ...
    @property
    def web_sessions(self) -> WebSessions: ...
    def lookup_key(self, issuer: str, kid: str) -> TrustedKey: ...


class SignInRefused(Exception):
    """The sign-in cannot go on; the message is for the officer."""


@dataclass(frozen=True)
class Provider:
    """An authority's sign-in service: the endpoints of its discovery document this client uses."""

    authority: str
    issuer: str
    client_id: str
    authorization_endpoint: str
    token_endpoint: str
    revocation_endpoint: str | None = None
    end_session_endpoint: str | None = None


def provider_for(runtime: SignInRuntime, authority_id: str) -> Provider:
    """Where officers of ``authority_id`` sign in. Raises SignInRefused."""
    with runtime.engine.connect() as conn:
        try:
            authority = TrustRegistry(conn).get_authority(authority_id)
        except UnknownAuthority:
            raise SignInRefused(f"no authority {authority_id} is registered here") from None
    if authority.issuer is None or authority.client_id is None:
        raise SignInRefused(f"{authority_id} has no sign-in service registered here")
    try:
        with provider_http_client() as client:
            metadata = discovery_document(authority.issuer, client)
    except ProviderUnavailable as exc:
        raise SignInRefused(f"the sign-in service of {authority_id} cannot be reached "
                            f"({exc})") from None
    authorization, token = metadata.get("authorization_endpoint"), metadata.get("token_endpoint")
    if not isinstance(authorization, str) or not isinstance(token, str):
        raise SignInRefused(f"the sign-in service of {authority_id} has no authorization "
                            "code endpoints")
    revocation, end_session = (metadata.get(name) for name in ("revocation_endpoint",
                                                               "end_session_endpoint"))
    return Provider(authority.id, authority.issuer, authority.client_id, authorization, token,
                    revocation if isinstance(revocation, str) else None,
                    end_session if isinstance(end_session, str) else None)


def code_verifier() -> str:
    return secrets.token_urlsafe(48)  # 64 characters: RFC 7636 section 4.1 asks 43-128


def authorization_url(provider: Provider, *, state: str, verifier: str,
                      redirect_uri: str) -> str:
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest())
    query = urlencode({
        "response_type": "code", "client_id": provider.client_id, "redirect_uri": redirect_uri,
        "scope": SCOPES, "state": state, "code_challenge": challenge.rstrip(b"=").decode(),
        "code_challenge_method": "S256"})
    endpoint = provider.authorization_endpoint
    return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"


@dataclass(frozen=True)
class SignedIn:
    principal: Principal
    provider: Provider
    refresh_token: str | None


def finish(runtime: SignInRuntime, pending: PendingSignIn, code: str) -> SignedIn:
    """Exchange ``code`` (with the PKCE verifier) and verify the access token as the API does.
    Raises SignInRefused."""
    provider = provider_for(runtime, pending.authority)
    try:
        with provider_http_client() as client:
            response = client.post(provider.token_endpoint, data={
                "grant_type": "authorization_code", "code": code,
                "redirect_uri": pending.redirect_uri, "client_id": provider.client_id,
                "code_verifier": pending.code_verifier}, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise SignInRefused(f"the sign-in service cannot be reached ({type(exc).__name__})") \
            from None
    if len(response.content) > MAX_TOKEN_RESPONSE_BYTES:
        raise SignInRefused("the sign-in service's answer is too large")
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200 or not isinstance(body, dict):
        error = body.get("error") if isinstance(body, dict) else None
        raise SignInRefused("the sign-in service refused the code "
                            f"({error or response.status_code})")
    access = body.get("access_token")
    if not isinstance(access, str):
        raise SignInRefused("the sign-in service sent no access token")
    try:
        principal = authenticate(f"Bearer {access}", lookup_key=runtime.lookup_key,
                                 settings=runtime.settings)
    except AuthenticationFailed as exc:
        raise SignInRefused(f"the access token was refused ({exc})") from None
    if principal.authority != pending.authority:
        # A provider vouching for another authority's officer: never a session for it.
        raise SignInRefused(f"the token names {principal.authority}, not {pending.authority}")
    refresh = body.get("refresh_token")
    return SignedIn(principal, provider, refresh if isinstance(refresh, str) else None)


def revoke_at_provider(session: WebSession) -> None:
    """Sign-out: revoke the refresh token at the provider (RFC 7009), best effort."""
    if not session.revocation_endpoint or not session.refresh_token:
        return
    try:
        with provider_http_client() as client:
            client.post(session.revocation_endpoint, data={
                "token": session.refresh_token, "token_type_hint": "refresh_token",
                "client_id": session.client_id})
    except httpx.HTTPError:
        pass  # the session here has ended either way; the provider's token expires by itself


class ProviderUnreachable(Exception):
    """The provider could not be asked; the session is confirmed at a later request."""


def live_session(runtime: SignInRuntime, token: str | None) -> WebSession | None:
    """The session of ``token`` if it is live -- and, every ``web_provider_check_seconds``,
    still vouched for by the officer's provider (refresh token grant): an account the provider
    disabled, or a refresh token it revoked, ends the session here at the next request."""
    sessions = runtime.web_sessions
    session = sessions.find(token) if token else None
    if session is None or not sessions.check_due(
            session, timedelta(seconds=runtime.settings.web_provider_check_seconds)):
        return session
    try:
        renewed = _renew(runtime, session)
    except ProviderUnreachable as exc:
        log.warning("web_session_check_postponed", authority=session.principal.authority,
                    reason=str(exc))
        return session
    if renewed is None:
        log.info("web_session_ended_by_provider", authority=session.principal.authority,
                 subject=session.principal.subject)
        sessions.drop(session)
        return None
    sessions.confirmed(session, renewed)
    return session


def _renew(runtime: SignInRuntime, session: WebSession) -> str | None:
    """A refresh token grant for ``session``: its new refresh token (or the old one if the
    provider keeps it), or None if the provider refused -- or vouches for someone else now."""
    officer = session.principal
    try:
        provider = provider_for(runtime, officer.authority)
    except SignInRefused as exc:
        raise ProviderUnreachable(str(exc)) from None
    try:
        with provider_http_client() as client:
            response = client.post(provider.token_endpoint, data={
                "grant_type": "refresh_token", "refresh_token": session.refresh_token or "",
                "client_id": session.client_id}, headers={"Accept": "application/json"})
    except httpx.HTTPError as exc:
        raise ProviderUnreachable(type(exc).__name__) from None
    if response.status_code >= 500 or len(response.content) > MAX_TOKEN_RESPONSE_BYTES:
        raise ProviderUnreachable(f"HTTP {response.status_code}")
    try:
        body = response.json()
    except ValueError:
        raise ProviderUnreachable("not JSON") from None
    if response.status_code != 200 or not isinstance(body, dict) or \
            not isinstance(body.get("access_token"), str):
        return None  # invalid_grant and friends: the provider no longer vouches for it
    try:
        renewed = authenticate(f"Bearer {body['access_token']}", lookup_key=runtime.lookup_key,
                               settings=runtime.settings)
    except AuthenticationFailed:
        return None
    if (renewed.authority, renewed.subject, renewed.role) != (
            officer.authority, officer.subject, officer.role):
        return None
    refresh = body.get("refresh_token")
    return refresh if isinstance(refresh, str) else session.refresh_token
