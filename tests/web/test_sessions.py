"""The web session store's timeouts and one-shot sign-ins, on a real (SQLite) database with an
injected clock."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from service.db import make_engine, upgrade
from service.identity.tokens import Principal
from service.web.sessions import SIGN_IN_SECONDS, WebSessions, cookie_value

OFFICER = Principal(authority="DE-BKA", subject="anna.schmidt", role="investigator",
                    token_id="jti-1", expires_at=datetime(2030, 1, 1, tzinfo=UTC), kid="k1",
                    key_thumbprint="t" * 43)


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def _store(tmp_path: Path) -> tuple[WebSessions, Clock]:
    url = f"sqlite:///{tmp_path / 'evx.db'}"
    upgrade(url)
    clock = Clock()
    return WebSessions(make_engine(url), idle=timedelta(minutes=30), absolute=timedelta(hours=10),
                       clock=clock), clock


def _open(store: WebSessions) -> str:
    return store.open(OFFICER, client_id="evx-web", refresh_token=None,
                      revocation_endpoint=None, end_session_endpoint=None)


def test_idle_timeout_and_activity(tmp_path: Path) -> None:
    store, clock = _store(tmp_path)
    token = _open(store)
    found = store.find(token)
    assert found is not None
    assert (found.principal.authority, found.principal.subject, found.principal.role) == (
        OFFICER.authority, OFFICER.subject, OFFICER.role)
    for _ in range(5):  # used every 20 minutes: alive well past 30 minutes
        clock.now += timedelta(minutes=20)
        assert store.find(token) is not None
    clock.now += timedelta(minutes=30)
    assert store.find(token) is None
    assert store.find(token) is None  # gone for good


def test_absolute_timeout_however_busy(tmp_path: Path) -> None:
    store, clock = _store(tmp_path)
    token = _open(store)
    for _ in range(10 * 6 - 1):
        clock.now += timedelta(minutes=10)
        assert store.find(token) is not None
    clock.now += timedelta(minutes=10)
    assert store.find(token) is None  # ten hours after sign-in


def test_sign_out_and_one_shot_sign_ins(tmp_path: Path) -> None:
    store, clock = _store(tmp_path)
    token = _open(store)
    assert store.end(token) is not None
    assert store.find(token) is None
    state = store.begin_sign_in("DE-BKA", "v" * 64, "http://127.0.0.1/app/callback")
    taken = store.take_sign_in(state)
    assert taken is not None and taken.authority == "DE-BKA"
    assert store.take_sign_in(state) is None  # used once
    late = store.begin_sign_in("DE-BKA", "v" * 64, "http://127.0.0.1/app/callback")
    clock.now += timedelta(seconds=SIGN_IN_SECONDS + 1)
    assert store.take_sign_in(late) is None


def test_cookie_parsing_is_bounded_and_exact() -> None:
    assert cookie_value("a=1; __Host-evx-session=abc", "__Host-evx-session") == "abc"
    assert cookie_value("__Host-evx-session=" + "x" * 5000, "__Host-evx-session") is None
    assert cookie_value("evx-session=abc", "__Host-evx-session") is None
    assert cookie_value(None, "__Host-evx-session") is None
