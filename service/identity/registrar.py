"""Changes to whom the hub trusts, on the record.

The one code path that writes ``authority.added``, ``authority.key_added`` and
``authority.key_retired`` ledger entries, whatever the source of the change: an operator's
``evx authority`` command, a key generated for development, or the keys an authority's identity
provider publishes in its JWKS. The order is always the package gate's: take the registry lock,
check, record the entries, then write -- a key is never trusted before its entry is durable, and
if the ledger cannot be written nothing changes.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

import sqlalchemy as sa
import structlog
from sqlalchemy.engine import Connection, Engine

from custody.entry import Actor, Role
from service.identity.authorities import Authority, AuthorityKey, KeySource
from service.identity.errors import UnknownKey
from service.identity.keys import PublicKey
from service.identity.registry import TrustRegistry
from service.ledger.models import Event

log = structlog.get_logger("evx.identity")

#: PostgreSQL transaction-level advisory lock serializing trust-registry changes across
#: replicas and commands (two replicas seeing the same JWKS rotation record it once).
REGISTRY_LOCK_KEY = 0x65767874727573  # "evxtrus"

#: Subject of the entries the service writes by itself when it follows an identity provider.
PROVIDER_SYNC_SUBJECT = "identity-provider-sync"


@dataclass(frozen=True)
class KeyChanges:
    """What a JWKS sync did: keys now trusted, keys no longer trusted, keys it would not take."""

    added: tuple[AuthorityKey, ...] = ()
    retired: tuple[AuthorityKey, ...] = ()
    skipped: tuple[str, ...] = field(default=())


class EventLog(Protocol):
    """Where the registrar records: the service's :class:`~service.ledger.ledger.Ledger`."""

    def append_many(self, events: Sequence[Event]) -> Sequence[object]:
        """Record ``events`` durably, or raise (then nothing changes)."""
        ...


class TrustRegistrar:
    """Registry changes with their ledger entries, written to ``ledger`` (an :class:`EventLog`
    that raises when the entries are not durable)."""

    def __init__(self, engine: Engine, ledger: EventLog, *, operator_authority: str) -> None:
        self._engine = engine
        self._ledger = ledger
        self._operator = operator_authority
        # SQLite has one writer and no advisory locks: this process's changes take this lock.
        self._lock = threading.Lock()
        #: Bumped after every change this registrar makes (committed or not): caches of the
        #: registry (keys, verified tokens) compare it with the one they were filled under.
        self.generation = 0

    @property
    def engine(self) -> Engine:
        return self._engine

    def operator(self, subject: str) -> Actor:
        """The actor of an operator's change (``subject`` names the operator or the command)."""
        return Actor(self._operator, subject, Role.OPERATOR)

    # -- operator changes ---------------------------------------------------------------------

    def add_authority(
        self, actor: Actor, authority_id: str, *, name: str, country: str,
        roles: Iterable[str], issuer: str | None = None, client_id: str | None = None,
        keys: Sequence[tuple[PublicKey, KeySource]] = (), now: datetime | None = None,
    ) -> Authority:
        """Register an authority and its first keys: ``authority.added`` then one
        ``authority.key_added`` per key. Raises AuthorityRejected, AuthorityExists, KeyRejected,
        LedgerUnavailable."""
        with self._changing() as (conn, registry):
            # Check everything first, inside a savepoint rolled back: the registry's own rules.
            with conn.begin_nested() as probe:
                added = registry.add_authority(authority_id, name=name, country=country,
                                               roles=roles, issuer=issuer, client_id=client_id,
                                               now=now)
                for key, source in keys:
                    registry.add_key(authority_id, key, source=source, now=now)
                probe.rollback()
            self._record(conn, [_authority_added(actor, added)] +
                         [_key_added(actor, authority_id, key, source, added.issuer)
                          for key, source in keys])
            registry.add_authority(authority_id, name=name, country=country, roles=roles,
                                   issuer=issuer, client_id=client_id, now=now)
            for key, source in keys:
                registry.add_key(authority_id, key, source=source, now=now)
            return registry.get_authority(authority_id)

    def add_key(self, actor: Actor, authority_id: str, key: PublicKey, *,
                source: KeySource = "manual", now: datetime | None = None) -> AuthorityKey:
        """Start trusting ``key`` for ``authority_id``. Raises UnknownAuthority, KeyRejected,
        LedgerUnavailable."""
        with self._changing() as (conn, registry):
            with conn.begin_nested() as probe:
                registry.add_key(authority_id, key, source=source, now=now)
                probe.rollback()
            issuer = registry.get_authority(authority_id).issuer
            self._record(conn, [_key_added(actor, authority_id, key, source, issuer)])
            return registry.add_key(authority_id, key, source=source, now=now)

    def retire_key(self, actor: Actor, authority_id: str, kid: str, *, why: str,
                   now: datetime | None = None) -> AuthorityKey:
        """Stop trusting a key. Retiring a retired key changes nothing and records nothing.
        Raises UnknownAuthority, UnknownKey, LedgerUnavailable."""
        with self._changing() as (conn, registry):
            key = _key_of(registry.get_authority(authority_id), kid)
            if key.status != "active":
                return key
            self._record(conn, [_key_retired(actor, key, why)])
            return registry.retire_key(authority_id, kid, now=now)

    def set_identity_provider(self, actor: Actor, authority_id: str, *, issuer: str | None,
                              client_id: str | None,
                              now: datetime | None = None) -> Authority:
        """Point an authority at another issuer (or none). Keys fetched from the previous
        issuer stop being trusted at once (``authority.key_retired``); the new issuer's keys are
        fetched by the caller. Raises UnknownAuthority, AuthorityRejected, LedgerUnavailable."""
        with self._changing() as (conn, registry):
            current = registry.get_authority(authority_id)
            with conn.begin_nested() as probe:
                changed = registry.set_identity_provider(authority_id, issuer=issuer,
                                                         client_id=client_id)
                probe.rollback()
            stale = [k for k in current.active_keys
                     if k.source == "jwks" and changed.issuer != current.issuer]
            events = [_provider_changed(actor, changed)] + [
                _key_retired(actor, k, f"issuer changed from {current.issuer}") for k in stale]
            self._record(conn, events)
            registry.set_identity_provider(authority_id, issuer=issuer, client_id=client_id)
            for key in stale:
                registry.retire_key(authority_id, key.kid, now=now)
            return registry.get_authority(authority_id)

    # -- following an identity provider ---------------------------------------------------------

    def sync_provider_keys(self, authority_id: str, issuer: str, published: Sequence[PublicKey],
                           *, jwks_uri: str, now: datetime | None = None) -> KeyChanges:
        """Make the authority's JWKS-sourced keys exactly the usable keys its provider publishes:
        new ones are added, vanished ones retired, each with its entry. Keys it cannot take
        (a kid reused for another key, a key registered elsewhere or retired before) are left
        out and named in ``skipped``. Raises UnknownAuthority, LedgerUnavailable."""
        actor = Actor(self._operator, PROVIDER_SYNC_SUBJECT, Role.SYSTEM)
        with self._changing() as (conn, registry):
            authority = registry.get_authority(authority_id)
            if authority.issuer != issuer:
                return KeyChanges(skipped=(f"issuer is now {authority.issuer}",))
            owners = registry.key_owners([k.thumbprint for k in published])
            mine = {k.kid: k for k in authority.keys}
            adds: list[PublicKey] = []
            skipped: list[str] = []
            for key in published:
                known = mine.get(key.kid)
                owner = owners.get(key.thumbprint)
                if known is not None and known.thumbprint == key.thumbprint:
                    if known.status != "active":
                        skipped.append(f"{key.kid}: retired here before, never trusted again")
                    continue
                if known is not None:
                    skipped.append(f"{key.kid}: kid already names another key of {authority_id}")
                elif owner is not None:
                    skipped.append(f"{key.kid}: key already registered for {owner}")
                else:
                    adds.append(key)
            published_prints = {k.thumbprint for k in published}
            retires = [k for k in authority.active_keys
                       if k.source == "jwks" and k.thumbprint not in published_prints]
            if not adds and not retires:
                return KeyChanges(skipped=tuple(skipped))
            self._record(conn,
                [_key_added(actor, authority_id, k, "jwks", issuer, jwks_uri) for k in adds] +
                [_key_retired(actor, k, f"no longer published at {jwks_uri}") for k in retires])
            added = tuple(registry.add_key(authority_id, k, source="jwks", now=now)
                          for k in adds)
            retired = tuple(registry.retire_key(authority_id, k.kid, now=now) for k in retires)
        for reason in skipped:
            log.warning("provider_key_skipped", authority=authority_id, reason=reason)
        return KeyChanges(added=added, retired=retired, skipped=tuple(skipped))

    # -- the order of a change ------------------------------------------------------------------

    @contextmanager
    def _changing(self) -> Iterator[tuple[Connection, TrustRegistry]]:
        with self._lock:
            try:
                with self._engine.connect() as conn:
                    conn.begin()
                    if conn.dialect.name == "postgresql":
                        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"),
                                     {"key": REGISTRY_LOCK_KEY})
                    try:
                        yield conn, TrustRegistry(conn)
                    except BaseException:
                        conn.rollback()
                        raise
                    conn.commit()
            finally:
                # After the commit: whatever was cached from the registry before it is stale.
                self.generation += 1

    def _record(self, conn: Connection, events: list[Event]) -> None:
        if conn.dialect.name == "sqlite":
            # SQLite has one writer: the ledger's append (its own connection) must not wait for
            # a lock this transaction holds, and WAL cannot upgrade a read snapshot older than
            # the ledger's commit. End it; this process's lock keeps the checks true meanwhile.
            conn.commit()
        self._ledger.append_many(events)


def _key_of(authority: Authority, kid: str) -> AuthorityKey:
    for key in authority.keys:
        if key.kid == kid:
            return key
    raise UnknownKey(authority.id, kid)


def _authority_added(actor: Actor, authority: Authority) -> Event:
    return Event(actor=actor, action="authority.added", outcome="allowed", details={
        "authority": authority.id, "name": authority.name, "country": authority.country,
        "roles": ",".join(sorted(authority.roles)), "issuer": authority.issuer,
        "client_id": authority.client_id})


def _provider_changed(actor: Actor, authority: Authority) -> Event:
    # The contract has no "authority.changed": the directory entry is stated again, in full.
    return Event(actor=actor, action="authority.added", outcome="allowed", details={
        "authority": authority.id, "name": authority.name, "country": authority.country,
        "roles": ",".join(sorted(authority.roles)), "issuer": authority.issuer,
        "client_id": authority.client_id, "change": "identity_provider"})


def _key_added(actor: Actor, authority_id: str, key: PublicKey, source: KeySource,
               issuer: str | None, jwks_uri: str | None = None) -> Event:
    return Event(actor=actor, action="authority.key_added", outcome="allowed", details={
        "authority": authority_id, "kid": key.kid, "thumbprint": key.thumbprint,
        "algorithm": key.algorithm, "source": source, "issuer": issuer, "jwks_uri": jwks_uri})


def _key_retired(actor: Actor, key: AuthorityKey, why: str) -> Event:
    return Event(actor=actor, action="authority.key_retired", outcome="allowed", reason=None,
                 details={"authority": key.authority_id, "kid": key.kid,
                          "thumbprint": key.thumbprint, "algorithm": key.algorithm,
                          "source": key.source, "why": why})

