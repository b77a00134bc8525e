"""tests for service/identity/http.py: the Authorization header to a Principal."""

from __future__ import annotations

from datetime import timedelta

import pytest

from service.identity.errors import InvalidToken, MissingCredentials
from service.identity.http import MAX_AUTHORIZATION_CHARS, authenticate, bearer_token
from service.settings import Settings
from tests.identity.jws import claims, sign
from tests.identity.support import NOW, Partners


def _authenticate(partners: Partners, header: str | None, **settings: object):  # type: ignore[no-untyped-def]
    return authenticate(header, lookup_key=partners.registry.lookup_key,
                        settings=Settings(**settings), now=NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_bearer_token_authenticates(partners: Partners, scheme: str) -> None:
    principal = _authenticate(partners, f"{scheme} {sign(partners.bka, claims())}")
    assert (principal.authority, principal.subject) == ("DE-BKA", "officer-17")


@pytest.mark.parametrize("header", [None, "", "   "])
def test_missing_credentials(partners: Partners, header: str | None) -> None:
    with pytest.raises(MissingCredentials):
        _authenticate(partners, header)


@pytest.mark.parametrize("header", ["Basic dXNlcjpwdw==", "Bearer", "Bearer   ", "Token abc"])
def test_wrong_scheme_or_empty_token(partners: Partners, header: str) -> None:
    with pytest.raises(InvalidToken) as caught:
        _authenticate(partners, header)
    assert caught.value.reason == "malformed"


def test_oversized_header(partners: Partners) -> None:
    with pytest.raises(InvalidToken) as caught:
        bearer_token("Bearer " + "a" * MAX_AUTHORIZATION_CHARS)
    assert caught.value.reason == "oversized"


def test_settings_audience_is_enforced(partners: Partners) -> None:
    with pytest.raises(InvalidToken) as caught:
        _authenticate(partners, f"Bearer {sign(partners.bka, claims())}", audience="elsewhere")
    assert caught.value.reason == "bad_audience"


def test_settings_leeway_is_applied(partners: Partners) -> None:
    exp = int((NOW - timedelta(seconds=10)).timestamp())
    token = sign(partners.bka, claims(iat=exp - 60, nbf=exp - 60, exp=exp))
    assert _authenticate(partners, f"Bearer {token}", token_leeway_seconds=30)
    with pytest.raises(InvalidToken) as caught:
        _authenticate(partners, f"Bearer {token}", token_leeway_seconds=5)
    assert caught.value.reason == "expired"
