"""tests for service/identity/registry.py on a real SQLite file and real PostgreSQL."""

from __future__ import annotations

from datetime import timedelta, timezone

import pytest
import sqlalchemy as sa

from service.db import downgrade, make_engine
from service.identity.errors import (
    AuthorityExists,
    AuthorityRejected,
    InvalidToken,
    KeyRejected,
    UnknownAuthority,
    UnknownKey,
)
from service.identity.keys import public_key_from_key
from service.identity.registry import TrustRegistry
from service.identity.tables import authority_keys
from service.identity.tokens import TrustedKey, verify_token
from tests.identity.jws import claims, sign
from tests.identity.support import AUDIENCE, NOW, Signer, ec_signer, register_partners

LATER = NOW + timedelta(days=30)


def _verify(registry: TrustRegistry, token: str) -> str:
    principal = verify_token(token, lookup_key=registry.lookup_key, audience=AUDIENCE, now=NOW,
                             leeway=timedelta(seconds=30))
    return principal.authority


def _refusal(registry: TrustRegistry, token: str) -> str:
    with pytest.raises(InvalidToken) as caught:
        _verify(registry, token)
    return caught.value.reason


def test_add_and_read_authorities(db: sa.Connection, rsa_keys: list[Signer]) -> None:
    partners = register_partners(db, rsa_keys[0])
    registry = partners.registry
    bka = registry.get_authority("DE-BKA")
    assert (bka.id, bka.name, bka.country, bka.roles) == (
        "DE-BKA", "Bundeskriminalamt", "DE", frozenset({"investigator"}))
    assert bka.created_at == NOW and bka.created_at.tzinfo is not None
    assert [(k.kid, k.algorithm, k.status, k.added_at, k.retired_at) for k in bka.keys] == [
        (partners.bka.kid, "ES256", "active", NOW, None)]
    assert [a.id for a in registry.list_authorities()] == ["DE-BKA", "FR-OCRTEH"]
    assert registry.list_authorities()[1].roles == frozenset({"investigator", "auditor"})


def test_operator_authority_id_is_accepted(db: sa.Connection) -> None:
    authority = TrustRegistry(db).add_authority("OPERATOR", name="Operator", country="EU",
                                                roles=["auditor"], now=NOW)
    assert authority.id == "OPERATOR"


def test_duplicate_authority(db: sa.Connection) -> None:
    registry = TrustRegistry(db)
    registry.add_authority("DE-BKA", name="BKA", country="DE", roles=["investigator"])
    with pytest.raises(AuthorityExists):
        registry.add_authority("DE-BKA", name="Other", country="DE", roles=["auditor"])
    assert registry.get_authority("DE-BKA").name == "BKA"


@pytest.mark.parametrize(("authority_id", "country", "roles", "name"), [
    ("de-bka", "DE", ["investigator"], "x"),
    ("DE_BKA", "DE", ["investigator"], "x"),
    ("DE-BKA-X", "DE", ["investigator"], "x"),
    ("D", "DE", ["investigator"], "x"),
    ("DE-" + "A" * 33, "DE", ["investigator"], "x"),
    ("../DE", "DE", ["investigator"], "x"),
    ("DE-BKA", "XX", ["investigator"], "x"),
    ("DE-BKA", "de", ["investigator"], "x"),
    ("DE-BKA", "FR", ["investigator"], "x"),
    ("DE-BKA", "DE", [], "x"),
    ("DE-BKA", "DE", ["admin"], "x"),
    ("DE-BKA", "DE", ["investigator"], "  "),
    ("DE-BKA", "DE", ["investigator"], "BKA\x1b[31m"),
    ("DE-BKA", "DE", ["investigator"], "x" * 201),
])
def test_rejected_authorities(db: sa.Connection, authority_id: str, country: str,
                              roles: list[str], name: str) -> None:
    with pytest.raises(AuthorityRejected):
        TrustRegistry(db).add_authority(authority_id, name=name, country=country, roles=roles)
    assert TrustRegistry(db).list_authorities() == []


def test_unknown_authority(db: sa.Connection) -> None:
    registry = TrustRegistry(db)
    with pytest.raises(UnknownAuthority):
        registry.get_authority("DE-BKA")
    with pytest.raises(UnknownAuthority):
        registry.add_key("DE-BKA", ec_signer().public)
    with pytest.raises(UnknownAuthority):
        registry.retire_key("DE-BKA", "k")
    with pytest.raises(UnknownAuthority):
        registry.lookup_key("DE-BKA", "k")


def test_lookup_returns_the_active_key_with_the_authoritys_roles(
        db: sa.Connection, rsa_keys: list[Signer]) -> None:
    partners = register_partners(db, rsa_keys[0])
    found = partners.registry.lookup_key("FR-OCRTEH", partners.ocrteh.kid)
    assert found == TrustedKey(authority="FR-OCRTEH", kid=partners.ocrteh.kid,
                               algorithm="RS256", jwk=dict(partners.ocrteh.public.jwk),
                               allowed_roles=frozenset({"investigator", "auditor"}))
    with pytest.raises(UnknownKey):
        partners.registry.lookup_key("FR-OCRTEH", partners.bka.kid)


def test_kid_and_key_are_registered_once(db: sa.Connection, rsa_keys: list[Signer]) -> None:
    partners = register_partners(db, rsa_keys[0])
    registry = partners.registry
    with pytest.raises(KeyRejected, match="already has a key with kid"):
        registry.add_key("DE-BKA", public_key_from_key(ec_signer().private.public_key(),
                                                       kid=partners.bka.kid))
    # The same public key under another authority would let either speak for the other.
    with pytest.raises(KeyRejected, match="already registered as DE-BKA"):
        registry.add_key("FR-OCRTEH", partners.bka.public)
    assert len(registry.get_authority("FR-OCRTEH").keys) == 1


def test_rotation_add_new_key_then_retire_old(db: sa.Connection,
                                              rsa_keys: list[Signer]) -> None:
    partners = register_partners(db, rsa_keys[0])
    registry = partners.registry
    old, new = partners.bka, ec_signer()
    old_token, new_token = sign(old, claims()), sign(new, claims())
    assert _verify(registry, old_token) == "DE-BKA"
    assert _refusal(registry, new_token) == "unknown_key"

    registry.add_key("DE-BKA", new.public, now=LATER)
    assert _verify(registry, old_token) == _verify(registry, new_token) == "DE-BKA"

    retired = registry.retire_key("DE-BKA", old.kid, now=LATER)
    assert (retired.status, retired.retired_at) == ("retired", LATER)
    assert _refusal(registry, old_token) == "unknown_key"
    assert _verify(registry, new_token) == "DE-BKA"
    with pytest.raises(UnknownKey):
        registry.lookup_key("DE-BKA", old.kid)

    keys = {k.kid: k for k in registry.get_authority("DE-BKA").keys}
    assert (keys[old.kid].status, keys[new.kid].status) == ("retired", "active")
    assert keys[new.kid].added_at == LATER


def test_retiring_twice_keeps_the_first_time(db: sa.Connection, rsa_keys: list[Signer]) -> None:
    partners = register_partners(db, rsa_keys[0])
    partners.registry.retire_key("DE-BKA", partners.bka.kid, now=LATER)
    again = partners.registry.retire_key("DE-BKA", partners.bka.kid,
                                         now=LATER + timedelta(days=1))
    assert again.retired_at == LATER


def test_a_retired_key_cannot_be_registered_again(db: sa.Connection,
                                                  rsa_keys: list[Signer]) -> None:
    partners = register_partners(db, rsa_keys[0])
    partners.registry.retire_key("DE-BKA", partners.bka.kid, now=LATER)
    with pytest.raises(KeyRejected):
        partners.registry.add_key("DE-BKA", partners.bka.public)
    assert _refusal(partners.registry, sign(partners.bka, claims())) == "unknown_key"


def test_retire_unknown_kid(db: sa.Connection, rsa_keys: list[Signer]) -> None:
    partners = register_partners(db, rsa_keys[0])
    with pytest.raises(UnknownKey):
        partners.registry.retire_key("DE-BKA", "nope")


def test_naive_timestamps_are_refused(db: sa.Connection) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        TrustRegistry(db).add_authority("DE-BKA", name="BKA", country="DE",
                                        roles=["investigator"], now=NOW.replace(tzinfo=None))


def test_timestamps_round_trip_in_utc(db: sa.Connection) -> None:
    registry = TrustRegistry(db)
    registry.add_authority("DE-BKA", name="BKA", country="DE", roles=["investigator"],
                           now=NOW.astimezone(timezone(timedelta(hours=2))))
    created_at = registry.get_authority("DE-BKA").created_at
    assert created_at == NOW and created_at.utcoffset() == timedelta(0)


def test_database_refuses_inconsistent_key_status(db: sa.Connection,
                                                  rsa_keys: list[Signer]) -> None:
    partners = register_partners(db, rsa_keys[0])
    for values in ({"status": "revoked", "retired_at": NOW}, {"status": "retired"},
                   {"status": "active", "retired_at": NOW}):
        savepoint = db.begin_nested()
        with pytest.raises(sa.exc.IntegrityError):
            db.execute(authority_keys.update()
                       .where(authority_keys.c.kid == partners.bka.kid).values(**values))
        savepoint.rollback()
    assert partners.registry.get_authority("DE-BKA").keys[0].status == "active"


def test_database_refuses_keys_of_unregistered_authorities(db: sa.Connection) -> None:
    key = ec_signer().public
    savepoint = db.begin_nested()
    with pytest.raises(sa.exc.IntegrityError):
        db.execute(authority_keys.insert().values(
            authority_id="XX-GHOST", kid=key.kid, thumbprint=key.thumbprint, algorithm="ES256",
            public_jwk=key.to_json(), status="active", added_at=NOW))
    savepoint.rollback()
    assert db.execute(sa.select(sa.func.count()).select_from(authority_keys)).scalar() == 0


def test_migration_downgrades_cleanly(database_url: str) -> None:
    downgrade(database_url, "0001_ledger")
    engine = make_engine(database_url)
    try:
        tables = set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()
    assert not {"authorities", "authority_keys"} & tables
    assert "ledger_entries" in tables
