"""tests for service/identity/providers.py and registrar.py: following an identity provider's
keys (discovery, JWKS, rotation) within bounds, every change on the record. Against the real
OpenID provider of tests/support/oidc_provider.py and a real ledger on SQLite."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.db import make_engine, upgrade
from service.identity.errors import UnknownAuthority
from service.identity.keys import public_key_from_jwk
from service.identity.providers import ProviderFollower, ProviderUnavailable, discover_keys
from service.identity.registrar import TrustRegistrar
from service.identity.registry import TrustRegistry
from service.ledger.ledger import Ledger
from tests.support.oidc_provider import OpenIDProvider

AUTHORITY = "FR-OCRTEH"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def provider() -> Iterator[OpenIDProvider]:
    idp = OpenIDProvider(audience="evidence-exchange", algorithm="ES256").start()
    yield idp
    idp.stop()


@pytest.fixture
def hub(tmp_path: Path, provider: OpenIDProvider) -> Iterator[dict[str, Any]]:
    url = f"sqlite:///{tmp_path / 'evx.db'}"
    upgrade(url)
    engine = make_engine(url)
    ledger = Ledger(engine, _log_key(), origin="test/log")
    registrar = TrustRegistrar(engine, ledger, operator_authority="OPERATOR")
    registrar.add_authority(registrar.operator("admin@hub"), AUTHORITY, name="OCRTEH",
                            country="FR", roles=["investigator"], issuer=provider.issuer,
                            client_id="evx-cli")
    clock = Clock()

    def authority_for_issuer(issuer: str) -> str:
        with engine.connect() as conn:
            return TrustRegistry(conn).authority_for_issuer(issuer)

    follower = ProviderFollower(registrar, authority_for_issuer, min_interval=60, max_age=3600,
                                clock=clock)
    yield {"engine": engine, "ledger": ledger, "registrar": registrar, "follower": follower,
           "clock": clock}
    ledger.close()
    engine.dispose()


def _log_key() -> Any:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate()


def _entries(hub: dict[str, Any]) -> list[dict[str, Any]]:
    size = hub["ledger"].tree_size()
    return [e.entry.to_dict() for e in hub["ledger"].entries(0, size)]


def _keys(hub: dict[str, Any]) -> dict[str, str]:
    with hub["engine"].connect() as conn:
        return {k.kid: k.status for k in TrustRegistry(conn).get_authority(AUTHORITY).keys}


def test_first_fetch_trusts_the_published_keys_on_the_record(hub: dict[str, Any],
                                                             provider: OpenIDProvider) -> None:
    changes = hub["follower"].refresh(provider.issuer, reason="test")
    assert [k.kid for k in changes.added] == [provider.kid]
    assert _keys(hub) == {provider.kid: "active"}
    added = _entries(hub)[-1]
    assert added["action"] == "authority.key_added"
    expected = public_key_from_jwk(provider.signing_key.as_dict(private=False)).thumbprint
    assert added["details"]["thumbprint"] == expected == provider.signing_key.thumbprint()
    assert (added["actor"]["subject"], added["actor"]["role"]) == (
        "identity-provider-sync", "system")


def test_refetches_are_bounded(hub: dict[str, Any], provider: OpenIDProvider) -> None:
    follower: ProviderFollower = hub["follower"]
    follower.refresh(provider.issuer, reason="first")
    fetched = provider.requests.count("/jwks")
    # Tokens naming kids nobody published: at most one fetch per interval, whatever the count.
    for _ in range(20):
        assert follower.refresh(provider.issuer, reason="unknown kid") is None
    assert provider.requests.count("/jwks") == fetched
    hub["clock"].now += 61
    assert follower.refresh(provider.issuer, reason="unknown kid") is not None
    assert provider.requests.count("/jwks") == fetched + 1
    # An issuer no authority has is never fetched at all.
    with pytest.raises(UnknownAuthority):
        follower.refresh("https://attacker.example", reason="unknown issuer")


def test_rotation_adds_the_new_key_and_retires_the_withdrawn_one(
        hub: dict[str, Any], provider: OpenIDProvider) -> None:
    hub["follower"].refresh(provider.issuer, reason="first")
    old, old_key = provider.kid, provider.signing_key
    new = provider.rotate_key(keep_previous=True)
    hub["clock"].now += 61
    hub["follower"].refresh(provider.issuer, reason="unknown kid")
    assert _keys(hub) == {old: "active", new: "active"}
    provider.withdraw(old)
    hub["clock"].now += 61
    hub["follower"].refresh(provider.issuer, reason="age")
    assert _keys(hub) == {old: "retired", new: "active"}
    actions = [(e["action"], e["details"].get("kid")) for e in _entries(hub)]
    assert actions[-2:] == [("authority.key_added", new), ("authority.key_retired", old)]
    # Published again later, a retired key is not trusted again (and says why).
    provider.published.append(old_key)
    hub["clock"].now += 61
    changes = hub["follower"].refresh(provider.issuer, reason="age")
    assert changes.added == () and any("retired here before" in s for s in changes.skipped)
    assert _keys(hub)[old] == "retired"


def test_a_provider_that_misbehaves_changes_nothing(hub: dict[str, Any],
                                                    provider: OpenIDProvider) -> None:
    hub["follower"].refresh(provider.issuer, reason="first")
    before = _keys(hub)
    size = hub["ledger"].tree_size()
    with httpx.Client() as client:
        with pytest.raises(ProviderUnavailable, match="names issuer"):
            discover_keys(provider.issuer + "/", client)  # not the registered issuer string
        with pytest.raises(ProviderUnavailable):
            discover_keys("http://127.0.0.1:9/", client)  # nobody listens
        with pytest.raises(ProviderUnavailable, match="https"):
            discover_keys("http://idp.example", client)  # plain HTTP off loopback
    assert _keys(hub) == before and hub["ledger"].tree_size() == size
