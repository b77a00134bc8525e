"""JWT attacks against the running API: each refused with 401, counted, and never recorded in
the ledger (unauthenticated garbage must not be able to flood it)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from service.identity.registry import TrustRegistry
from tests.api.conftest import OWNER, RECIPIENT, World
from tests.identity.jws import b64, hmac_token, segment, unsigned_token


def _key(w: World, authority: str) -> tuple[str, ec.EllipticCurvePrivateKey, dict]:
    with w.runtime.engine.connect() as conn:
        key = TrustRegistry(conn).get_authority(authority).active_keys[-1]
    pem = (Path(w.settings.data_dir) / "authorities" / authority / f"{key.kid}.pem").read_bytes()
    private = serialization.load_pem_private_key(pem, None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    return key.kid, private, json.loads(key.public_jwk)


def _sign(private: ec.EllipticCurvePrivateKey, kid: str, payload: dict,
          header: dict | None = None) -> str:
    head = {"alg": "ES256", "typ": "JWT", "kid": kid, **(header or {})}
    signing_input = f"{segment(head)}.{segment(payload)}"
    r, s = decode_dss_signature(private.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def _claims(w: World, **overrides: object) -> dict:
    now = int(time.time())
    base = {"iss": OWNER, "sub": "officer-17", "aud": w.settings.audience, "role": "investigator",
            "iat": now, "nbf": now, "exp": now + 600, "jti": "t-1"}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def _attacks(w: World) -> dict[str, Callable[[], str]]:
    kid, private, jwk = _key(w, OWNER)
    other_kid, other_private, _ = _key(w, RECIPIENT)
    now = int(time.time())
    public_pem = serialization.load_pem_private_key(
        (Path(w.settings.data_dir) / "authorities" / OWNER / f"{kid}.pem").read_bytes(), None
    ).public_key().public_bytes(serialization.Encoding.PEM,
                                serialization.PublicFormat.SubjectPublicKeyInfo)

    attacker = ec.generate_private_key(ec.SECP256R1())
    numbers = attacker.public_key().public_numbers()
    attacker_jwk = {"kty": "EC", "crv": "P-256", "x": b64(numbers.x.to_bytes(32, "big")),
                    "y": b64(numbers.y.to_bytes(32, "big"))}

    def altered() -> str:
        token = _sign(private, kid, _claims(w))
        head, _, sig = token.split(".")
        return f"{head}.{segment(_claims(w, role='auditor', sub='someone-else'))}.{sig}"

    return {
        "alg_none": lambda: unsigned_token(_claims(w), kid=kid),
        "alg_none_capitalized": lambda: unsigned_token(_claims(w), kid=kid, alg="None"),
        "hs256_with_public_key_pem": lambda: hmac_token(public_pem, _claims(w), kid=kid),
        "hs256_with_public_jwk": lambda: hmac_token(json.dumps(jwk).encode(), _claims(w),
                                                    kid=kid),
        "unknown_kid": lambda: _sign(private, "no-such-kid", _claims(w)),
        "other_authority_key_own_kid": lambda: _sign(other_private, kid, _claims(w)),
        "other_authority_key_and_kid": lambda: _sign(other_private, other_kid, _claims(w)),
        "expired": lambda: _sign(private, kid, _claims(w, iat=now - 7200, nbf=now - 7200,
                                                         exp=now - 3600)),
        "not_yet_valid": lambda: _sign(private, kid, _claims(w, iat=now + 3600, nbf=now + 3600,
                                                               exp=now + 7200)),
        "wrong_aud": lambda: _sign(private, kid, _claims(w, aud="another-service")),
        "missing_aud": lambda: _sign(private, kid, _claims(w, aud=None)),
        "wrong_iss": lambda: _sign(private, kid, _claims(w, iss=RECIPIENT)),
        "unknown_iss": lambda: _sign(private, kid, _claims(w, iss="XX-NOBODY")),
        "altered_payload": altered,
        "oversized": lambda: _sign(private, kid, _claims(w, pad="x" * 9000)),
        "truncated_signature": lambda: _sign(private, kid, _claims(w))[:-10],
        "garbage": lambda: "not-a-jwt",
        "role_not_allowed": lambda: _sign(private, kid, _claims(w, role="operator")),
        # An attacker's own key, offered inline (RFC 7515 "jwk"), with the real kid.
        "jwk_in_header": lambda: _sign(attacker, kid, _claims(w), {"jwk": attacker_jwk}),
    }


ATTACKS = ["alg_none", "alg_none_capitalized", "hs256_with_public_key_pem",
           "hs256_with_public_jwk", "unknown_kid", "other_authority_key_own_kid",
           "other_authority_key_and_kid", "expired", "not_yet_valid", "wrong_aud", "missing_aud",
           "wrong_iss", "unknown_iss", "altered_payload", "oversized", "truncated_signature",
           "garbage", "role_not_allowed", "jwk_in_header"]


@pytest.mark.parametrize("attack", ATTACKS)
def test_attack_refused_401(world: World, attack: str) -> None:
    package_id = world.sealed_shared_package({"a.txt": b"secret evidence"})
    token = _attacks(world)[attack]()
    size = world.ledger_size()
    for method, url in [("GET", f"/v1/packages/{package_id}"),
                        ("GET", f"/v1/packages/{package_id}/items/a.txt/content"),
                        ("POST", "/v1/packages"), ("GET", "/v1/ledger/checkpoint")]:
        r = world.client.request(method, url, headers={"Authorization": f"Bearer {token}"},
                                 json={"case_reference": "c", "title": "t"}
                                 if method == "POST" else None)
        assert r.status_code == 401, (attack, url, r.text)
        assert r.headers["content-type"] == "application/problem+json"
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert b"secret evidence" not in r.content
    assert world.ledger_size() == size, "unauthenticated attempts must not be recorded"
    assert sum(s.value for m in world.runtime.metrics.unauthenticated.collect()
               for s in m.samples if s.name.endswith("_total")) >= 4


def test_valid_token_accepted_as_control(world: World) -> None:
    kid, private, _ = _key(world, OWNER)
    r = world.client.get("/v1/packages",
                         headers={"Authorization": f"Bearer {_sign(private, kid, _claims(world))}"})
    assert r.status_code == 200


def test_a_retired_key_is_refused_at_once_though_its_token_was_cached(world: World) -> None:
    """Verified tokens are cached (service/identity/verified.py); retiring the key that
    verified one through the registrar voids the cached verdict before the next request."""
    w = world
    kid, private, _ = _key(w, OWNER)
    token = _sign(private, kid, _claims(w))
    headers = {"Authorization": f"Bearer {token}"}
    assert w.client.get("/v1/packages", headers=headers).status_code == 200
    assert w.client.get("/v1/packages", headers=headers).status_code == 200  # from the cache
    registrar = w.runtime.registrar
    registrar.retire_key(registrar.operator("test"), OWNER, kid, why="compromised")
    size = w.ledger_size()
    r = w.client.get("/v1/packages", headers=headers)
    assert r.status_code == 401
    assert r.json()["reason"] == "unknown_key"
    assert w.ledger_size() == size  # refused before anything is recorded

