"""Following partner authorities' identity providers: OpenID Connect discovery, their JWKS, and
key rotation -- bounded, so that neither a caller nor a provider can make us fetch without end.

A registered authority with an ``issuer`` has its signing keys fetched from the provider: the
discovery document (``{issuer}/.well-known/openid-configuration``, OpenID Connect Discovery 1.0
section 4) names the ``jwks_uri``; the JWK set's usable keys (asymmetric signature keys the
token module accepts) become the authority's ``jwks`` keys through the
:class:`~service.identity.registrar.TrustRegistrar`, each change a ledger entry. A token with a
``kid`` we do not know makes us fetch again -- at most once per ``min_interval`` per authority
-- and every fetch older than ``max_age`` is refreshed when the authority's next token arrives,
so a key the provider withdrew stops verifying within ``max_age``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

from service.identity.authorities import check_issuer
from service.identity.errors import AuthorityRejected, IdentityError, KeyRejected
from service.identity.keys import PublicKey, public_key_from_jwk
from service.identity.registrar import KeyChanges, TrustRegistrar

log = structlog.get_logger("evx.identity")

MAX_DOCUMENT_BYTES = 256 * 1024  # DoS bound on a discovery document or JWK set
MAX_JWKS_KEYS = 32  # DoS bound: providers publish a handful (current, next, previous)
FETCH_TIMEOUT_SECONDS = 5.0  # a token check waits at most about this long for a provider


class ProviderUnavailable(IdentityError):
    """The identity provider's discovery document or JWK set could not be fetched or is not
    acceptable; the keys trusted so far stay as they are."""


@dataclass(frozen=True)
class ProviderKeys:
    """What a provider publishes: its JWKS location and the keys we can use."""

    issuer: str
    jwks_uri: str
    keys: tuple[PublicKey, ...]
    ignored: tuple[str, ...]


def discover_keys(issuer: str, client: httpx.Client) -> ProviderKeys:
    """Fetch ``issuer``'s discovery document and JWK set. Raises ProviderUnavailable."""
    try:
        check_issuer(issuer)
    except AuthorityRejected as exc:
        raise ProviderUnavailable(str(exc)) from exc
    config = discovery_document(issuer, client)
    jwks_uri = config.get("jwks_uri")
    if not isinstance(jwks_uri, str):
        raise ProviderUnavailable("discovery document has no jwks_uri")
    try:
        check_issuer(jwks_uri.split("?", 1)[0])  # same transport rule as the issuer itself
    except AuthorityRejected as exc:
        raise ProviderUnavailable(f"jwks_uri {jwks_uri!r}: {exc}") from exc
    document = _get_json(client, jwks_uri)
    entries = document.get("keys")
    if not isinstance(entries, list):
        raise ProviderUnavailable("the JWK set has no 'keys' list")
    if len(entries) > MAX_JWKS_KEYS:
        raise ProviderUnavailable(f"the JWK set has more than {MAX_JWKS_KEYS} keys")
    keys: list[PublicKey] = []
    ignored: list[str] = []
    for entry in entries:
        kid = entry.get("kid") if isinstance(entry, dict) else None
        if not isinstance(entry, dict) or not isinstance(kid, str):
            ignored.append("a key without a kid (tokens could not name it)")
            continue
        try:
            keys.append(public_key_from_jwk(entry))
        except KeyRejected as exc:  # encryption keys, HMAC, EdDSA, weak RSA: not for us
            ignored.append(f"{kid}: {exc}")
    return ProviderKeys(issuer=issuer, jwks_uri=jwks_uri, keys=tuple(keys),
                        ignored=tuple(ignored))


def discovery_document(issuer: str, client: httpx.Client) -> dict[str, Any]:
    """``issuer``'s OpenID Connect discovery document. Raises ProviderUnavailable."""
    config = _get_json(client, issuer.rstrip("/") + "/.well-known/openid-configuration")
    if config.get("issuer") != issuer:
        # Discovery section 4.3: the issuer in the document MUST equal the one we asked.
        raise ProviderUnavailable(f"discovery document names issuer {config.get('issuer')!r}, "
                                  f"not {issuer!r}")
    return config


def _get_json(client: httpx.Client, url: str) -> dict[str, Any]:
    try:
        with client.stream("GET", url, headers={"Accept": "application/json"}) as response:
            if response.status_code != 200:
                raise ProviderUnavailable(f"GET {url}: HTTP {response.status_code}")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_DOCUMENT_BYTES:
                    raise ProviderUnavailable(f"GET {url}: larger than {MAX_DOCUMENT_BYTES} "
                                              "bytes")
    except httpx.HTTPError as exc:
        raise ProviderUnavailable(f"GET {url}: {type(exc).__name__}: {exc}") from exc
    try:
        value = json.loads(bytes(body).decode("utf-8"))
    except ValueError as exc:
        raise ProviderUnavailable(f"GET {url}: not JSON") from exc
    if not isinstance(value, dict):
        raise ProviderUnavailable(f"GET {url}: not a JSON object")
    return value


def provider_http_client() -> httpx.Client:
    """Outbound client for providers: bounded time, no redirects (a redirect is a different
    origin we did not register), the system's proxy and CA settings."""
    return httpx.Client(timeout=FETCH_TIMEOUT_SECONDS, follow_redirects=False)


class ProviderFollower:
    """Keeps each authority's provider keys current, within bounds. Thread-safe."""

    def __init__(self, registrar: TrustRegistrar, authority_for_issuer: Callable[[str], str], *,
                 min_interval: float, max_age: float,
                 client_factory: Callable[[], httpx.Client] = provider_http_client,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if min_interval <= 0 or max_age < min_interval:
            raise ValueError("need 0 < min_interval <= max_age")
        self._registrar = registrar
        self._authority_for_issuer = authority_for_issuer
        self._min_interval = min_interval
        self._max_age = max_age
        self._client_factory = client_factory
        self._clock = clock
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._fetched_at: dict[str, float] = {}
        self.fetches = 0

    def refresh(self, issuer: str, *, reason: str) -> KeyChanges | None:
        """Fetch and apply the keys of the provider ``issuer`` unless fetched less than
        ``min_interval`` ago (then ``None``). Raises UnknownAuthority (no authority has this
        issuer: nothing is fetched), ProviderUnavailable (keys unchanged), LedgerUnavailable."""
        authority_id = self._authority_for_issuer(issuer)
        lock = self._lock_for(issuer)
        with lock:  # one fetch per provider at a time; the others wait for its result
            last = self._fetched_at.get(issuer)
            if last is not None and self._clock() - last < self._min_interval:
                return None
            self._fetched_at[issuer] = self._clock()
            self.fetches += 1
            with self._client_factory() as client:
                published = discover_keys(issuer, client)
            changes = self._registrar.sync_provider_keys(
                authority_id, issuer, published.keys, jwks_uri=published.jwks_uri)
        for why in published.ignored:
            log.info("provider_key_ignored", authority=authority_id, why=why)
        if changes.added or changes.retired:
            log.info("provider_keys_changed", authority=authority_id, reason=reason,
                     added=[k.kid for k in changes.added],
                     retired=[k.kid for k in changes.retired])
        return changes

    def stale(self, issuer: str) -> bool:
        """True when ``issuer``'s keys were last fetched more than ``max_age`` ago (or never by
        this process)."""
        last = self._fetched_at.get(issuer)
        return last is None or self._clock() - last >= self._max_age

    def _lock_for(self, issuer: str) -> threading.Lock:
        with self._guard:
            lock = self._locks.get(issuer)
            if lock is None:
                lock = self._locks[issuer] = threading.Lock()
            return lock
