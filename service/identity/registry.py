"""The trust registry: which authorities we trust and with which public keys. Queries live here.

The registry works inside the caller's transaction (a ``Connection`` or ORM ``Session``) and never
commits: the request, or the CLI command, owns the transaction.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from service.identity.authorities import (
    AUTHORITY_ID_PATTERN,
    Authority,
    AuthorityKey,
    KeySource,
    check_authority,
    check_client_id,
    check_issuer,
)
from service.identity.errors import (
    AuthorityExists,
    AuthorityRejected,
    KeyRejected,
    UnknownAuthority,
    UnknownKey,
)
from service.identity.keys import PublicKey
from service.identity.tables import authorities, authority_keys
from service.identity.tokens import TrustedKey

Database = Connection | Session


class TrustRegistry:
    """Authorities and their keys, read and written through one database handle."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def add_authority(
        self, authority_id: str, *, name: str, country: str, roles: Iterable[str],
        issuer: str | None = None, client_id: str | None = None, now: datetime | None = None,
    ) -> Authority:
        """Register a new authority (without keys), optionally with its OpenID Connect issuer
        and the public client id officers sign in with there.

        Raises AuthorityRejected (also for an issuer another authority has), AuthorityExists.
        """
        authority_id, name, country, role_set = check_authority(
            authority_id, name=name, country=country, roles=roles)
        issuer, client_id = self._check_provider(authority_id, issuer, client_id)
        if self._authority_row(authority_id) is not None:
            raise AuthorityExists(authority_id)
        created_at = _utc(now)
        self._db.execute(authorities.insert().values(
            id=authority_id, name=name, country=country, roles=",".join(sorted(role_set)),
            created_at=created_at, issuer=issuer, client_id=client_id))
        return Authority(id=authority_id, name=name, country=country, roles=role_set,
                         created_at=created_at, issuer=issuer, client_id=client_id)

    def set_identity_provider(
        self, authority_id: str, *, issuer: str | None, client_id: str | None
    ) -> Authority:
        """Set (or clear, with ``None``) an authority's issuer and client id. Keys fetched from
        the previous issuer are the caller's to retire. Raises UnknownAuthority,
        AuthorityRejected."""
        if self._authority_row(authority_id) is None:
            raise UnknownAuthority(authority_id)
        issuer, client_id = self._check_provider(authority_id, issuer, client_id)
        self._db.execute(authorities.update().where(authorities.c.id == authority_id)
                         .values(issuer=issuer, client_id=client_id))
        return self.get_authority(authority_id)

    def authority_for_issuer(self, issuer: str) -> str:
        """The id of the authority whose tokens carry ``iss`` = ``issuer``: the id itself for
        tokens minted with registered keys, or the authority whose OpenID Connect issuer it is.

        Raises UnknownAuthority.
        """
        if AUTHORITY_ID_PATTERN.fullmatch(issuer):
            if self._authority_row(issuer) is None:
                raise UnknownAuthority(issuer)
            return issuer
        found = self._db.execute(
            sa.select(authorities.c.id).where(authorities.c.issuer == issuer)).scalar()
        if found is None:
            raise UnknownAuthority(issuer)
        return str(found)

    def get_authority(self, authority_id: str) -> Authority:
        """The authority with all its keys (active and retired). Raises UnknownAuthority."""
        row = self._authority_row(authority_id)
        if row is None:
            raise UnknownAuthority(authority_id)
        return _authority(row, self._keys([authority_id]).get(authority_id, ()))

    def list_authorities(self) -> list[Authority]:
        """Every authority, ordered by id, with its keys."""
        rows = self._db.execute(authorities.select().order_by(authorities.c.id)).all()
        keys = self._keys([r.id for r in rows])
        return [_authority(r, keys.get(r.id, ())) for r in rows]

    def add_key(
        self, authority_id: str, key: PublicKey, *, source: KeySource = "manual",
        now: datetime | None = None,
    ) -> AuthorityKey:
        """Register an active public key. Raises UnknownAuthority, KeyRejected (kid or key
        reused)."""
        if self._authority_row(authority_id) is None:
            raise UnknownAuthority(authority_id)
        if self._key_row(authority_id, key.kid) is not None:
            raise KeyRejected(f"{authority_id} already has a key with kid {key.kid!r}")
        owner = self._db.execute(
            sa.select(authority_keys.c.authority_id, authority_keys.c.kid)
            .where(authority_keys.c.thumbprint == key.thumbprint)).first()
        if owner is not None:
            raise KeyRejected(f"this public key is already registered as {owner.authority_id} "
                              f"{owner.kid!r}; a key is registered once (rotate to a new key)")
        added_at = _utc(now)
        self._db.execute(authority_keys.insert().values(
            authority_id=authority_id, kid=key.kid, thumbprint=key.thumbprint,
            algorithm=key.algorithm, public_jwk=key.to_json(), status="active",
            added_at=added_at, retired_at=None, source=source))
        return AuthorityKey(authority_id=authority_id, kid=key.kid, algorithm=key.algorithm,
                            public_jwk=key.to_json(), thumbprint=key.thumbprint, status="active",
                            added_at=added_at, retired_at=None, source=source)

    def retire_key(
        self, authority_id: str, kid: str, *, now: datetime | None = None
    ) -> AuthorityKey:
        """Retire a key: its tokens stop verifying at once. Retiring twice keeps the first time.

        Raises UnknownAuthority, UnknownKey.
        """
        if self._authority_row(authority_id) is None:
            raise UnknownAuthority(authority_id)
        row = self._key_row(authority_id, kid)
        if row is None:
            raise UnknownKey(authority_id, kid)
        if row.status == "active":
            self._db.execute(
                authority_keys.update()
                .where(authority_keys.c.authority_id == authority_id,
                       authority_keys.c.kid == kid, authority_keys.c.status == "active")
                .values(status="retired", retired_at=_utc(now)))
            row = self._key_row(authority_id, kid)
        return _key(row)

    def lookup_key(self, issuer: str, kid: str) -> TrustedKey:
        """The issuer's ACTIVE key ``kid`` for token verification (a :data:`KeyLookup`).

        ``issuer`` is the token's ``iss``: an authority id, or an authority's OpenID Connect
        issuer URL. Raises UnknownAuthority, UnknownKey (also for retired keys).
        """
        if AUTHORITY_ID_PATTERN.fullmatch(issuer):
            which = authorities.c.id == issuer
        else:
            which = authorities.c.issuer == issuer
        row = self._db.execute(
            sa.select(authorities.c.id, authorities.c.roles, authority_keys.c.algorithm,
                      authority_keys.c.public_jwk)
            .select_from(authorities.outerjoin(authority_keys, sa.and_(
                authority_keys.c.authority_id == authorities.c.id,
                authority_keys.c.kid == kid,
                authority_keys.c.status == "active")))
            .where(which)).first()
        if row is None:
            raise UnknownAuthority(issuer)
        if row.public_jwk is None:
            raise UnknownKey(row.id, kid)
        return TrustedKey(authority=row.id, kid=kid, algorithm=row.algorithm,
                          jwk=json.loads(row.public_jwk), allowed_roles=_roles(row.roles))

    def _check_provider(self, authority_id: str, issuer: str | None,
                        client_id: str | None) -> tuple[str | None, str | None]:
        if issuer is None:
            if client_id is not None:
                raise AuthorityRejected("a client id needs an issuer")
            return None, None
        issuer = check_issuer(issuer)
        client_id = check_client_id(client_id) if client_id is not None else None
        owner = self._db.execute(sa.select(authorities.c.id).where(
            authorities.c.issuer == issuer, authorities.c.id != authority_id)).scalar()
        if owner is not None:
            # One issuer, one authority: else either could speak for the other's officers.
            raise AuthorityRejected(f"issuer {issuer} is already {owner}'s")
        return issuer, client_id

    def key_owners(self, thumbprints: Iterable[str]) -> dict[str, str]:
        """Which authority each of these RFC 7638 thumbprints is registered for (if any)."""
        wanted = sorted(set(thumbprints))
        if not wanted:
            return {}
        rows = self._db.execute(
            sa.select(authority_keys.c.thumbprint, authority_keys.c.authority_id)
            .where(authority_keys.c.thumbprint.in_(wanted))).all()
        return {r.thumbprint: r.authority_id for r in rows}

    def _authority_row(self, authority_id: str) -> Any:
        return self._db.execute(
            authorities.select().where(authorities.c.id == authority_id)).first()

    def _key_row(self, authority_id: str, kid: str) -> Any:
        return self._db.execute(authority_keys.select().where(
            authority_keys.c.authority_id == authority_id, authority_keys.c.kid == kid)).first()

    def _keys(self, authority_ids: list[str]) -> dict[str, tuple[AuthorityKey, ...]]:
        if not authority_ids:
            return {}
        rows = self._db.execute(
            authority_keys.select()
            .where(authority_keys.c.authority_id.in_(authority_ids))
            .order_by(authority_keys.c.authority_id, authority_keys.c.added_at,
                      authority_keys.c.kid)).all()
        grouped: dict[str, list[AuthorityKey]] = {}
        for row in rows:
            grouped.setdefault(row.authority_id, []).append(_key(row))
        return {k: tuple(v) for k, v in grouped.items()}


def _authority(row: Any, keys: tuple[AuthorityKey, ...]) -> Authority:
    return Authority(id=row.id, name=row.name, country=row.country, roles=_roles(row.roles),
                     created_at=_aware(row.created_at), keys=keys, issuer=row.issuer,
                     client_id=row.client_id)


def _key(row: Any) -> AuthorityKey:
    return AuthorityKey(authority_id=row.authority_id, kid=row.kid, algorithm=row.algorithm,
                        public_jwk=row.public_jwk, thumbprint=row.thumbprint, status=row.status,
                        added_at=_aware(row.added_at),
                        retired_at=_aware(row.retired_at) if row.retired_at else None,
                        source=row.source)


def _roles(text: str) -> frozenset[str]:
    return frozenset(text.split(","))


def _utc(now: datetime | None) -> datetime:
    if now is None:
        return datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("timestamps must be timezone-aware")
    return now.astimezone(UTC)


def _aware(value: datetime) -> datetime:
    # SQLite keeps no zone; everything this registry writes is UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
