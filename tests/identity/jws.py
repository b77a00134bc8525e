"""Hand-made compact JWS for attack tests, built with ``cryptography`` and ``hmac`` directly --
independent of the JOSE library under test."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from tests.identity.support import AUDIENCE, NOW, Signer

_HASHES = {"256": hashes.SHA256, "384": hashes.SHA384, "512": hashes.SHA512}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def segment(value: Mapping[str, Any] | str) -> str:
    text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    return b64(text.encode("utf-8"))


def claims(**overrides: Any) -> dict[str, Any]:
    """Valid claims of a DE-BKA investigator at NOW; ``name=None`` removes a claim."""
    iat = int(NOW.timestamp())
    base: dict[str, Any] = {
        "iss": "DE-BKA", "sub": "officer-17", "aud": AUDIENCE, "role": "investigator",
        "iat": iat, "nbf": iat, "exp": iat + 600, "jti": "tok-1",
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(signer: Signer, payload: Mapping[str, Any] | str, *, alg: str | None = None,
         kid: str | None = None, header: Mapping[str, Any] | None = None) -> str:
    """A compact JWS signed by ``signer`` with the header it would normally send."""
    alg = alg or signer.public.algorithm
    head = {"alg": alg, "typ": "JWT", "kid": kid or signer.kid, **(header or {})}
    signing_input = f"{segment(head)}.{segment(payload)}"
    return f"{signing_input}.{b64(raw_signature(signer, alg, signing_input.encode()))}"


def raw_signature(signer: Signer, alg: str, data: bytes) -> bytes:
    digest = _HASHES[alg[2:]]()
    key = signer.private
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(data, ec.ECDSA(digest)))
        size = (key.curve.key_size + 7) // 8
        return r.to_bytes(size, "big") + s.to_bytes(size, "big")
    assert isinstance(key, rsa.RSAPrivateKey)
    return key.sign(data, padding.PKCS1v15(), digest)


def hmac_token(secret: bytes, payload: Mapping[str, Any], *, kid: str, alg: str = "HS256") -> str:
    """The key-confusion forgery: HMAC keyed with bytes an attacker can read (a public key)."""
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    signing_input = f"{segment({'alg': alg, 'typ': 'JWT', 'kid': kid})}.{segment(payload)}"
    mac = hmac.new(secret, signing_input.encode(), digest).digest()
    return f"{signing_input}.{b64(mac)}"


def unsigned_token(payload: Mapping[str, Any], *, kid: str, alg: str = "none") -> str:
    return f"{segment({'alg': alg, 'typ': 'JWT', 'kid': kid})}.{segment(payload)}."
