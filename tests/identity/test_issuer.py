"""tests for service/identity/issuer.py: generated dev keys and minted tokens that verify."""

from __future__ import annotations

import json
import stat
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from service.identity.errors import AuthorityExists, InvalidToken, KeyRejected, NoSigningKey
from service.identity.issuer import (
    DEFAULT_TOKEN_TTL,
    create_authority,
    generate_key,
    mint_token,
    private_key_path,
)
from service.identity.registry import TrustRegistry
from service.identity.tokens import MAX_TOKEN_LIFETIME, Principal, verify_token
from tests.identity.jws import unb64
from tests.identity.support import AUDIENCE, NOW, ec_signer

LEEWAY = timedelta(seconds=30)


def _verify(db: sa.Connection, token: str, *, now=NOW) -> Principal:  # type: ignore[no-untyped-def]
    return verify_token(token, lookup_key=TrustRegistry(db).lookup_key, audience=AUDIENCE,
                        now=now, leeway=LEEWAY)


def test_generated_key_is_registered_and_private_half_kept_0600(
        db: sa.Connection, tmp_path: Path) -> None:
    authority = create_authority(db, "DE-BKA", name="BKA", country="DE",
                                 roles=["investigator", "auditor"], data_dir=tmp_path, now=NOW)
    [key] = authority.keys
    path = private_key_path(tmp_path, "DE-BKA", key.kid)
    assert path == tmp_path / "authorities" / "DE-BKA" / f"{key.kid}.pem"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert b"PRIVATE KEY" in path.read_bytes()
    assert (key.algorithm, key.status) == ("ES256", "active")
    assert set(json.loads(key.public_jwk)) == {"kty", "crv", "x", "y", "kid", "alg", "use"}


def test_minted_token_verifies(db: sa.Connection, tmp_path: Path) -> None:
    create_authority(db, "DE-BKA", name="BKA", country="DE", data_dir=tmp_path, now=NOW)
    token = mint_token(db, tmp_path, "DE-BKA", subject="officer-1", role="investigator",
                       audience=AUDIENCE, now=NOW, token_id="t-1")
    principal = _verify(db, token)
    assert principal == Principal(authority="DE-BKA", subject="officer-1", role="investigator",
                                  token_id="t-1", expires_at=NOW + DEFAULT_TOKEN_TTL,
                                  kid=principal.kid, key_thumbprint=principal.key_thumbprint)
    assert principal.kid and len(principal.key_thumbprint) == 43
    assert _verify(db, mint_token(db, tmp_path, "DE-BKA", subject="o", role="investigator",
                                  audience=AUDIENCE, now=NOW)).token_id != "t-1"


def test_minted_token_expires_after_its_ttl(db: sa.Connection, tmp_path: Path) -> None:
    create_authority(db, "DE-BKA", name="BKA", country="DE", data_dir=tmp_path, now=NOW)
    token = mint_token(db, tmp_path, "DE-BKA", subject="o", role="investigator",
                       audience=AUDIENCE, ttl=timedelta(seconds=60), now=NOW)
    with pytest.raises(InvalidToken) as caught:
        _verify(db, token, now=NOW + timedelta(seconds=60) + LEEWAY)
    assert caught.value.reason == "expired"


def test_mint_does_not_police_roles_verification_does(db: sa.Connection, tmp_path: Path) -> None:
    create_authority(db, "DE-BKA", name="BKA", country="DE", roles=["investigator"],
                     data_dir=tmp_path, now=NOW)
    token = mint_token(db, tmp_path, "DE-BKA", subject="o", role="auditor", audience=AUDIENCE,
                       now=NOW)
    with pytest.raises(InvalidToken) as caught:
        _verify(db, token)
    assert caught.value.reason == "role_not_allowed"


def test_mint_uses_the_newest_active_key_after_rotation(db: sa.Connection,
                                                        tmp_path: Path) -> None:
    old = create_authority(db, "DE-BKA", name="BKA", country="DE", data_dir=tmp_path,
                           now=NOW).keys[0]
    new = generate_key(db, tmp_path, "DE-BKA", now=NOW + timedelta(days=1))
    token = mint_token(db, tmp_path, "DE-BKA", subject="o", role="investigator",
                       audience=AUDIENCE, now=NOW)
    assert json.loads(unb64(token.split(".")[0]))["kid"] == new.kid
    TrustRegistry(db).retire_key("DE-BKA", old.kid, now=NOW)
    assert _verify(db, token).authority == "DE-BKA"
    with pytest.raises(NoSigningKey):  # a retired key signs nothing, even if its file remains
        mint_token(db, tmp_path, "DE-BKA", subject="o", role="investigator",
                   audience=AUDIENCE, now=NOW, kid=old.kid)


def test_no_private_key_for_a_public_only_authority(db: sa.Connection, tmp_path: Path) -> None:
    create_authority(db, "DE-BKA", name="BKA", country="DE", public_key=ec_signer().public,
                     now=NOW)
    with pytest.raises(NoSigningKey):
        mint_token(db, tmp_path, "DE-BKA", subject="o", role="investigator", audience=AUDIENCE)


@pytest.mark.parametrize("ttl", [timedelta(0), timedelta(seconds=-1),
                                 MAX_TOKEN_LIFETIME + timedelta(seconds=1)])
def test_ttl_bounds(db: sa.Connection, tmp_path: Path, ttl: timedelta) -> None:
    create_authority(db, "DE-BKA", name="BKA", country="DE", data_dir=tmp_path, now=NOW)
    with pytest.raises(ValueError, match="ttl"):
        mint_token(db, tmp_path, "DE-BKA", subject="o", role="investigator", audience=AUDIENCE,
                   ttl=ttl)


def test_public_key_and_generation_are_exclusive(db: sa.Connection, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="either"):
        create_authority(db, "DE-BKA", name="BKA", country="DE", public_key=ec_signer().public,
                         data_dir=tmp_path)
    assert TrustRegistry(db).list_authorities() == []


def test_failed_registration_leaves_no_private_key(db: sa.Connection, tmp_path: Path) -> None:
    create_authority(db, "DE-BKA", name="BKA", country="DE", data_dir=tmp_path, now=NOW)
    with pytest.raises(AuthorityExists):
        create_authority(db, "DE-BKA", name="BKA", country="DE", data_dir=tmp_path, now=NOW)
    assert len(list((tmp_path / "authorities" / "DE-BKA").iterdir())) == 1


def test_rejected_key_at_creation(db: sa.Connection) -> None:
    key = ec_signer().public
    create_authority(db, "DE-BKA", name="BKA", country="DE", public_key=key, now=NOW)
    with pytest.raises(KeyRejected):
        create_authority(db, "DE-LKA", name="LKA", country="DE", public_key=key, now=NOW)
