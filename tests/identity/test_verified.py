"""The verified-token cache (service/identity/verified.py): a verdict stands only while the token
is unexpired, the registry unchanged (generation) and the verdict younger than the bound."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.identity.tokens import Principal
from service.identity.verified import VerifiedTokens

NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
LEEWAY = timedelta(seconds=30)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def principal(expires_at: datetime = NOW + timedelta(minutes=10)) -> Principal:
    return Principal(authority="DE-BKA", subject="officer", role="investigator", token_id="t1",
                     expires_at=expires_at, kid="k1", key_thumbprint="th")


def test_a_verdict_is_served_while_it_stands() -> None:
    cache = VerifiedTokens(recheck_seconds=5, clock=Clock())
    cache.put("a.b.c", principal(), generation=3)
    assert cache.get("a.b.c", generation=3, now=NOW, leeway=LEEWAY) == principal()
    assert cache.get("a.b.d", generation=3, now=NOW, leeway=LEEWAY) is None  # another token


def test_a_registry_change_voids_every_verdict_at_once() -> None:
    cache = VerifiedTokens(recheck_seconds=5, clock=Clock())
    cache.put("a.b.c", principal(), generation=3)
    assert cache.get("a.b.c", generation=4, now=NOW, leeway=LEEWAY) is None
    assert cache.get("a.b.c", generation=3, now=NOW, leeway=LEEWAY) is None  # dropped for good


def test_a_verdict_older_than_the_bound_is_verified_again() -> None:
    clock = Clock()
    cache = VerifiedTokens(recheck_seconds=5, clock=clock)
    cache.put("a.b.c", principal(), generation=0)
    clock.t += 4.9
    assert cache.get("a.b.c", generation=0, now=NOW, leeway=LEEWAY) is not None
    clock.t += 0.1
    assert cache.get("a.b.c", generation=0, now=NOW, leeway=LEEWAY) is None


def test_an_expired_token_is_not_served_even_if_cached() -> None:
    cache = VerifiedTokens(recheck_seconds=3600, clock=Clock())
    expires = NOW + timedelta(seconds=10)
    cache.put("a.b.c", principal(expires), generation=0)
    at_edge = expires + LEEWAY - timedelta(microseconds=1)
    assert cache.get("a.b.c", generation=0, now=at_edge, leeway=LEEWAY) is not None
    # The same rule as verify_token: refused from exp + leeway on.
    assert cache.get("a.b.c", generation=0, now=expires + LEEWAY, leeway=LEEWAY) is None


def test_the_cache_is_bounded_oldest_first() -> None:
    cache = VerifiedTokens(recheck_seconds=5, max_entries=2, clock=Clock())
    for token in ("t.1.x", "t.2.x", "t.3.x"):
        cache.put(token, principal(), generation=0)
    assert cache.get("t.1.x", generation=0, now=NOW, leeway=LEEWAY) is None
    assert cache.get("t.3.x", generation=0, now=NOW, leeway=LEEWAY) is not None


def test_nonsense_bounds_are_refused() -> None:
    with pytest.raises(ValueError):
        VerifiedTokens(recheck_seconds=-1)
    with pytest.raises(ValueError):
        VerifiedTokens(recheck_seconds=5, max_entries=0)
