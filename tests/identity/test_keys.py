"""tests for service/identity/keys.py: only public asymmetric signing keys are registrable."""

from __future__ import annotations

import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from service.identity.errors import KeyRejected
from service.identity.keys import (
    jwk_thumbprint,
    public_key_from_jwk,
    public_key_from_key,
    public_key_from_pem,
)
from tests.identity.jws import b64, unb64
from tests.identity.support import Signer, ec_signer

#: RFC 7638 section 3.1: the example RSA key and its SHA-256 thumbprint.
RFC7638_JWK = {
    "kty": "RSA",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_B"
         "JECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_F"
         "DW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4"
         "vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}
RFC7638_THUMBPRINT = "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def _ec_jwk(signer: Signer) -> dict[str, Any]:
    return {k: v for k, v in signer.public.jwk.items() if k in ("kty", "crv", "x", "y")}


def test_rfc7638_thumbprint_known_answer() -> None:
    assert jwk_thumbprint(RFC7638_JWK) == RFC7638_THUMBPRINT
    key = public_key_from_jwk(RFC7638_JWK)
    assert (key.kid, key.algorithm, key.thumbprint) == ("2011-04-29", "RS256", RFC7638_THUMBPRINT)


def test_ec_jwk_without_kid_gets_its_thumbprint_and_only_public_members() -> None:
    signer = ec_signer()
    key = public_key_from_jwk({**_ec_jwk(signer), "x5u": "https://evil.example/"})
    assert key.kid == key.thumbprint == signer.public.thumbprint
    assert key.algorithm == "ES256"
    assert set(key.jwk) == {"kty", "crv", "x", "y", "kid", "alg", "use"}


def test_jwk_json_text_and_pem_give_the_same_key() -> None:
    signer = ec_signer(ec.SECP384R1())
    from_jwk = public_key_from_jwk(json.dumps(_ec_jwk(signer)))
    from_pem = public_key_from_pem(signer.public_pem)
    assert from_jwk == from_pem
    assert from_pem.algorithm == "ES384"


def test_rsa_pem_can_be_bound_to_rs512(rsa_keys: list[Signer]) -> None:
    key = public_key_from_pem(rsa_keys[0].public_pem, algorithm="RS512", kid="fr-2030")
    assert (key.kid, key.algorithm, key.jwk["alg"]) == ("fr-2030", "RS512", "RS512")


def test_pkcs1_rsa_public_pem_is_accepted(rsa_keys: list[Signer]) -> None:
    pem = rsa_keys[0].private.public_key().public_bytes(  # type: ignore[union-attr]
        serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    assert public_key_from_pem(pem).thumbprint == rsa_keys[0].public.thumbprint


@pytest.mark.parametrize("member", ["d", "p", "q", "dp", "dq", "qi"])
def test_private_rsa_jwk_members_are_refused(member: str) -> None:
    with pytest.raises(KeyRejected, match="private key material"):
        public_key_from_jwk({**RFC7638_JWK, member: "AQAB"})


def test_private_ec_jwk_is_refused() -> None:
    signer = ec_signer()
    d = signer.private.private_numbers().private_value  # type: ignore[union-attr]
    with pytest.raises(KeyRejected, match="private key material"):
        public_key_from_jwk({**_ec_jwk(signer), "d": b64(d.to_bytes(32, "big"))})


@pytest.mark.parametrize("jwk", [
    {"kty": "oct", "k": "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0"},
    {"kty": "oct", "k": "AAAA", "alg": "HS256"},
    {**RFC7638_JWK, "k": "AAAA"},
])
def test_symmetric_keys_are_refused(jwk: dict[str, Any]) -> None:
    with pytest.raises(KeyRejected, match="symmetric"):
        public_key_from_jwk(jwk)


@pytest.mark.parametrize("fmt", [serialization.PrivateFormat.PKCS8,
                                 serialization.PrivateFormat.TraditionalOpenSSL])
def test_private_pem_is_refused(fmt: serialization.PrivateFormat,
                                rsa_keys: list[Signer]) -> None:
    for private in (ec_signer().private, rsa_keys[0].private):
        pem = private.private_bytes(serialization.Encoding.PEM, fmt,  # type: ignore[union-attr]
                                    serialization.NoEncryption())
        with pytest.raises(KeyRejected, match="private key"):
            public_key_from_pem(pem)


def test_encrypted_private_pem_is_refused() -> None:
    pem = ec_signer().private.private_bytes(  # type: ignore[union-attr]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pw"))
    with pytest.raises(KeyRejected, match="private key"):
        public_key_from_pem(pem)


def test_weak_rsa_is_refused() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    with pytest.raises(KeyRejected, match="2048"):
        public_key_from_key(weak)
    numbers = weak.public_numbers()
    with pytest.raises(KeyRejected, match="2048"):
        public_key_from_jwk({"kty": "RSA", "n": b64(numbers.n.to_bytes(128, "big")),
                             "e": "AQAB"})


@pytest.mark.parametrize("curve", [ec.SECP521R1(), ec.SECP256K1()])
def test_other_curves_are_refused(curve: ec.EllipticCurve) -> None:
    with pytest.raises(KeyRejected, match="curve"):
        public_key_from_pem(ec_signer(curve).public_pem)


def test_p521_jwk_is_refused() -> None:
    with pytest.raises(KeyRejected, match="curve"):
        public_key_from_jwk({"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"})


def test_ed25519_is_refused_as_unsupported_by_the_token_library() -> None:
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    pem = public.public_bytes(serialization.Encoding.PEM,
                              serialization.PublicFormat.SubjectPublicKeyInfo)
    with pytest.raises(KeyRejected, match="EdDSA"):
        public_key_from_pem(pem)
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    with pytest.raises(KeyRejected, match="EdDSA"):
        public_key_from_jwk({"kty": "OKP", "crv": "Ed25519", "x": b64(raw)})


def test_point_not_on_the_curve_is_refused() -> None:
    # An invalid-curve point is how ECDH/ECDSA implementations get tricked; cryptography checks.
    jwk = _ec_jwk(ec_signer())
    y = int.from_bytes(unb64(jwk["y"]), "big")
    with pytest.raises(KeyRejected, match="invalid EC"):
        public_key_from_jwk({**jwk, "y": b64(((y + 1) % 2**256).to_bytes(32, "big"))})


def test_short_ec_coordinates_are_refused() -> None:
    jwk = _ec_jwk(ec_signer())
    with pytest.raises(KeyRejected, match="32 bytes"):
        public_key_from_jwk({**jwk, "x": b64(b"\x01" * 31)})


@pytest.mark.parametrize(("extra", "algorithm", "match"), [
    ({"use": "enc"}, None, "signature key"),
    ({"key_ops": ["sign", "verify"]}, None, "key_ops"),
    ({"alg": "ES384"}, None, "P-256 key can only be bound to ES256"),
    ({"alg": "HS256"}, None, "can only be bound"),
    ({"alg": "ES256"}, "ES384", "requested"),
    ({}, "RS256", "can only be bound"),
    ({"kid": "has space"}, None, "kid must match"),
    ({"kid": 5}, None, "kid must be a string"),
])
def test_conflicting_or_unsafe_metadata_is_refused(extra: dict[str, Any], algorithm: str | None,
                                                   match: str) -> None:
    with pytest.raises(KeyRejected, match=match):
        public_key_from_jwk({**_ec_jwk(ec_signer()), **extra}, algorithm=algorithm)


@pytest.mark.parametrize("data", [b"not json", b"[1]", json.dumps({"keys": []}).encode(),
                                  b"{" + b" " * 20000 + b"}", {"kty": "DSA"}])
def test_garbage_jwk_input(data: Any) -> None:
    with pytest.raises(KeyRejected):
        public_key_from_jwk(data)


def test_certificate_and_garbage_pem_are_refused() -> None:
    with pytest.raises(KeyRejected, match="certificates"):
        public_key_from_pem(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(KeyRejected, match="not a PEM public key"):
        public_key_from_pem(b"hello")
