"""tests for evx/client/sessions.py and signin.py: the cached session, its renewal, and several
`evx` processes of one officer sharing one rotating refresh-token chain -- against the real
OpenID provider of tests/support/oidc_provider.py (no hub needed: these are the client's rules).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from evx.client.errors import AuthenticationError
from evx.client.sessions import SessionStore, SignedIn
from evx.client.signin import DeviceCode, Session, SignInTarget, device_sign_in, discover
from tests.support.oidc_provider import OpenIDProvider

pytestmark = pytest.mark.slow  # real `evx serve` processes and `evx` client processes

SERVER = "https://evx.hub.example:443"


@pytest.fixture(scope="module")
def provider() -> Iterator[OpenIDProvider]:
    idp = OpenIDProvider(audience="evidence-exchange", access_token_seconds=600).start()
    idp.add_client("evx-cli")
    idp.add_user("luc.martin", "pw", "investigator")
    yield idp
    idp.stop()


def _sign_in(provider: OpenIDProvider) -> Session:
    target = SignInTarget("FR-OCRTEH", provider.issuer, "evx-cli", "evidence-exchange")
    with httpx.Client() as http:
        metadata = discover(provider.issuer, http)

    def approve(code: DeviceCode) -> None:  # the officer, on their phone
        provider.approve_device(code.user_code, "luc.martin", "pw")

    return device_sign_in(SERVER, target, metadata, show=approve, sleep=lambda _: None)


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_saved_owner_only_and_fresh_tokens_are_not_renewed(provider: OpenIDProvider,
                                                           tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "sessions")
    session = _sign_in(provider)
    path = store.save(session)
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert store.load(SERVER) == session
    before = provider.refreshes
    source = SignedIn(store, session, clock=Clock(session.obtained_at + 60))
    assert source() == session.access_token
    assert provider.refreshes == before


def test_two_processes_share_one_refresh_chain(provider: OpenIDProvider, tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "sessions")
    session = _sign_in(provider)
    # Nine and a half minutes later: inside the renewal margin of the 10-minute token.
    session.obtained_at -= 590
    session.expires_at -= 590
    store.save(session)
    first, second = SignedIn(store, session), SignedIn(store, session)
    before = provider.refreshes
    renewed = first()
    assert renewed != session.access_token and provider.refreshes == before + 1
    # The second process still holds the rotated-away refresh token in memory: it must take
    # the renewed session from the file, not spend the old token (which would be refused).
    assert second() == renewed and provider.refreshes == before + 1
    assert store.load(SERVER).refresh_token not in (None, session.refresh_token)


def test_revoked_refresh_token_ends_the_session(provider: OpenIDProvider,
                                                tmp_path: Path) -> None:
    store = SessionStore(tmp_path / "sessions")
    session = _sign_in(provider)
    store.save(session)
    provider.revoke(session.refresh_token or "", "evx-cli")
    source = SignedIn(store, session, clock=Clock(session.expires_at + 1))
    with pytest.raises(AuthenticationError) as caught:
        source()
    assert caught.value.slug == "signed-out" and "evx login" in (caught.value.hint or "")
    assert store.load(SERVER) is None  # forgotten: the next command says "evx login" at once


def test_a_denied_device_sign_in(provider: OpenIDProvider) -> None:
    target = SignInTarget("FR-OCRTEH", provider.issuer, "evx-cli", "evidence-exchange")
    with httpx.Client() as http:
        metadata = discover(provider.issuer, http)

    def deny(code: DeviceCode) -> None:
        provider.approve_device(code.user_code, "luc.martin", "pw", approve=False)

    with pytest.raises(AuthenticationError, match="denied"):
        device_sign_in(SERVER, target, metadata, show=deny, sleep=lambda _: None)


def test_discovery_must_name_the_registered_issuer(provider: OpenIDProvider) -> None:
    with httpx.Client() as http, pytest.raises(AuthenticationError, match="names issuer"):
        discover(provider.issuer + "/", http)
