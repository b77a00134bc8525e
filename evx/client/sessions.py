"""Signed-in sessions cached per server, renewed before they expire.

One file per server origin under ``<state dir>/sessions/``, written 0600 (on Windows the file
inherits the user profile's ACL, which only that user and administrators can read), replaced
atomically, and renewed under a cross-platform file lock (``filelock``) so that several `evx`
processes of one officer share one refresh-token chain: providers rotate refresh tokens, and
two processes renewing with the same one would sign each other out.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from pathlib import Path

from evx import durable
from evx.client.errors import AuthenticationError
from evx.client.signin import Session, refresh

SESSION_MODE = 0o600
#: Renew when less than this share of the token's lifetime is left (at most RENEW_MAX_S): a
#: request started just before expiry must still be accepted when it arrives.
RENEW_FRACTION = 0.25
RENEW_MAX_S = 120.0
LOCK_TIMEOUT_S = 60.0


def _file_name(origin: str) -> str:
    return re.sub(r"[^A-Za-z0-9.\-]+", "_", origin.replace("://", "_")).strip("_") + ".json"


class SessionStore:
    """The cached sessions of this user, in ``directory`` (normally ``<state dir>/sessions``)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def path(self, origin: str) -> Path:
        return self.directory / _file_name(origin)

    def load(self, origin: str) -> Session | None:
        """The session for ``origin``, or None (no file, or a file that is not a session)."""
        try:
            data = json.loads(self.path(origin).read_text(encoding="utf-8"))
            return Session.from_json(data)
        except (OSError, ValueError):
            return None

    def save(self, session: Session) -> Path:
        """Write ``session`` (0600, atomically). Returns the file's path."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.path(session.server)
        durable.replace_file(path, json.dumps(session.to_json(), indent=1).encode("utf-8"),
                             SESSION_MODE)
        return path

    def remove(self, origin: str) -> Session | None:
        session = self.load(origin)
        self.path(origin).unlink(missing_ok=True)
        return session

    def lock(self, origin: str):  # type: ignore[no-untyped-def]
        from filelock import FileLock

        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        return FileLock(str(self.path(origin)) + ".lock", timeout=LOCK_TIMEOUT_S)


class SignedIn:
    """A bearer token source for :class:`~evx.client.http.Api`: the cached session's access
    token, renewed with its refresh token when little of its lifetime is left. Raises
    :class:`AuthenticationError` when the sign-in has ended (exit 3)."""

    def __init__(self, store: SessionStore, session: Session,
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._session = session
        self._clock = clock
        self.renewals = 0

    @property
    def session(self) -> Session:
        return self._session

    def __call__(self) -> str:
        if self._fresh(self._session):
            return self._session.access_token
        with self._store.lock(self._session.server):
            # Another evx process may have renewed meanwhile: its tokens are the live ones.
            stored = self._store.load(self._session.server)
            if stored is not None and stored.issuer == self._session.issuer and \
                    self._fresh(stored):
                self._session = stored
                return stored.access_token
            current = stored if stored is not None and \
                stored.issuer == self._session.issuer else self._session
            try:
                renewed = refresh(current)
            except AuthenticationError:
                # The sign-in is over: forget it, so the next command says "evx login" at once.
                self._store.remove(self._session.server)
                raise
            self._store.save(renewed)
            self._session = renewed
            self.renewals += 1
            return renewed.access_token

    def _fresh(self, session: Session) -> bool:
        lifetime = max(1.0, session.expires_at - session.obtained_at)
        margin = min(RENEW_MAX_S, lifetime * RENEW_FRACTION)
        return session.expires_at - self._clock() > margin


def signed_in(store: SessionStore, origin: str) -> SignedIn | None:
    """The token source of the session cached for ``origin``, if there is one."""
    session = store.load(origin)
    return SignedIn(store, session) if session is not None else None


def default_store() -> SessionStore:
    """Sessions under the client's state directory."""
    from evx.client.state import default_state_dir

    return SessionStore(default_state_dir() / "sessions")


def require_signed_in(store: SessionStore, origin: str) -> SignedIn:
    found = signed_in(store, origin)
    if found is None:
        raise AuthenticationError(
            "not signed in to this server",
            hint="Sign in with your authority: evx login --authority ID (scripts: set "
                 "EVX_TOKEN to a token your authority issued).", slug="unauthenticated")
    return found
