"""Partner signing keys: only asymmetric *public* keys, normalized to a minimal public JWK.

Registration is where key misuse is stopped: private material is never stored (an operator who
pastes a private JWK has leaked it, and we say so rather than silently stripping it), symmetric
``oct`` keys are refused (a shared secret would let us, or anyone who reads our database, forge
a partner's tokens), and every key is bound to exactly one signature algorithm.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from service.identity.errors import KeyRejected

MIN_RSA_BITS = 2048  # below this RSA is factorable by well-funded adversaries (NIST SP 800-131A)
MAX_RSA_BITS = 8192  # DoS bound: verification cost grows with the modulus
MAX_KEY_INPUT_BYTES = 16 * 1024  # DoS bound on a pasted JWK/PEM; an 8192-bit JWK is ~1.5 KiB

RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512"})
#: One algorithm per curve: ES256 with a P-384 key is a hash/curve mismatch RFC 7518 forbids.
EC_ALGORITHM_BY_CURVE = {"P-256": "ES256", "P-384": "ES384"}
_CURVE_BY_NAME: dict[str, tuple[str, type[ec.EllipticCurve], int]] = {
    "secp256r1": ("P-256", ec.SECP256R1, 32),
    "secp384r1": ("P-384", ec.SECP384R1, 48),
}
#: Every algorithm a registered key may be bound to (python-jose 3.5 has no PS* and no EdDSA).
KEY_ALGORITHMS = RSA_ALGORITHMS | frozenset(EC_ALGORITHM_BY_CURVE.values())

#: JWK members that only private (or symmetric) keys have (RFC 7518 section 6).
PRIVATE_JWK_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})

#: Key ids appear in token headers and file names: keep them to a boring, path-safe alphabet.
KID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,128}$")
_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class PublicKey:
    """A validated public signing key bound to one algorithm; ``jwk`` holds public members only."""

    kid: str
    algorithm: str
    jwk: Mapping[str, str]
    thumbprint: str

    def to_json(self) -> str:
        return json.dumps(dict(self.jwk), sort_keys=True, separators=(",", ":"))


def b64url_decode(text: str) -> bytes:
    """Strict unpadded base64url (RFC 7515 section 2): no padding, no whitespace, no other
    alphabet."""
    if not _B64URL.fullmatch(text) or len(text) % 4 == 1:
        raise ValueError("not unpadded base64url")
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise ValueError("not unpadded base64url") from exc


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _uint(value: int, length: int | None = None) -> str:
    size = length if length is not None else max(1, (value.bit_length() + 7) // 8)
    return b64url_encode(value.to_bytes(size, "big"))


def public_key_from_jwk(
    data: Mapping[str, Any] | str | bytes, *, algorithm: str | None = None
) -> PublicKey:
    """Validate a public JWK (object or JSON text) and normalize it.

    The key id is the JWK's ``kid`` if it has one, else its RFC 7638 thumbprint.
    Raises :class:`KeyRejected` for private or symmetric keys, unsupported types or curves,
    weak RSA moduli, points not on the curve, or a conflicting ``alg``/``use``/``key_ops``.
    """
    jwk = _jwk_object(data)
    kty = jwk.get("kty")
    declared, kid = _checked_jwk_members(jwk, algorithm)
    return public_key_from_key(_jwk_public_key(jwk, kty), kid=kid,
                               algorithm=algorithm or declared)


def _checked_jwk_members(jwk: dict[str, Any], algorithm: str | None) -> tuple[Any, str | None]:
    """Refuse secret material and a use other than verifying signatures; the JWK's ``alg``
    and ``kid``."""
    kty = jwk.get("kty")
    if kty == "oct" or "k" in jwk:
        raise KeyRejected("symmetric (oct) keys are refused: only a partner's public key may "
                          "verify its tokens")
    private = sorted(PRIVATE_JWK_MEMBERS & jwk.keys())
    if private:
        raise KeyRejected(f"the JWK contains private key material ({', '.join(private)}); "
                          "register the public key only and treat this private key as leaked")
    if jwk.get("use", "sig") != "sig":
        raise KeyRejected("the JWK is not a signature key (use != 'sig')")
    key_ops = jwk.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or set(key_ops) - {"verify"}):
        raise KeyRejected("a registered public key may only have key_ops ['verify']")
    declared = jwk.get("alg")
    if declared is not None and algorithm is not None and declared != algorithm:
        raise KeyRejected(f"the JWK says alg {declared!r} but {algorithm!r} was requested")
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise KeyRejected("the JWK's kid must be a string")
    return declared, kid


def _jwk_public_key(jwk: dict[str, Any], kty: object) -> PublicKeyTypes:
    """The public key of an RSA or EC JWK's members (RFC 7518 section 6)."""
    key: PublicKeyTypes
    try:
        if kty == "RSA":
            key = rsa.RSAPublicNumbers(_jwk_int(jwk, "e"), _jwk_int(jwk, "n")).public_key()
        elif kty == "EC":
            crv = jwk.get("crv")
            curve = next((c for c in _CURVE_BY_NAME.values() if c[0] == crv), None)
            if curve is None:
                raise KeyRejected(f"EC curve {crv!r} is not accepted (P-256 or P-384)")
            _, curve_class, size = curve
            x, y = _jwk_bytes(jwk, "x"), _jwk_bytes(jwk, "y")
            if len(x) != size or len(y) != size:
                raise KeyRejected(
                    f"{crv} coordinates must be exactly {size} bytes (RFC 7518 6.2.1)"
                )
            key = ec.EllipticCurvePublicNumbers(
                int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve_class()
            ).public_key()
        elif kty == "OKP":
            raise KeyRejected("OKP keys (Ed25519/EdDSA) are not supported by the token library "
                              "(python-jose 3.5)")
        else:
            raise KeyRejected(f"key type {kty!r} is not accepted (RSA or EC)")
    except ValueError as exc:  # cryptography: point not on curve, even modulus, bad exponent
        raise KeyRejected(f"invalid {kty} public key: {exc}") from exc
    return key


def public_key_from_pem(
    data: bytes | str, *, kid: str | None = None, algorithm: str | None = None
) -> PublicKey:
    """Validate a PEM ``PUBLIC KEY`` (SubjectPublicKeyInfo or PKCS#1 RSA) and normalize it.

    Raises :class:`KeyRejected` for private keys, certificates, unparseable or unsupported keys.
    """
    raw = data.encode("utf-8") if isinstance(data, str) else data
    if len(raw) > MAX_KEY_INPUT_BYTES:
        raise KeyRejected(f"key input larger than {MAX_KEY_INPUT_BYTES} bytes")
    if b"PRIVATE KEY-----" in raw:
        raise KeyRejected("this PEM holds a private key; register the public key only and "
                          "treat this private key as leaked")
    if b"-----BEGIN CERTIFICATE-----" in raw:
        raise KeyRejected("certificates are not accepted; extract the public key "
                          "(openssl x509 -pubkey -noout)")
    try:
        key = serialization.load_pem_public_key(raw)
    except (ValueError, TypeError) as exc:
        raise KeyRejected(f"not a PEM public key: {exc}") from exc
    return public_key_from_key(key, kid=kid, algorithm=algorithm)


def public_key_from_key(
    key: PublicKeyTypes, *, kid: str | None = None, algorithm: str | None = None
) -> PublicKey:
    """Normalize a ``cryptography`` public key object; see :func:`public_key_from_jwk`."""
    jwk: dict[str, str]
    if isinstance(key, rsa.RSAPublicKey):
        if not MIN_RSA_BITS <= key.key_size <= MAX_RSA_BITS:
            raise KeyRejected(f"RSA keys must have {MIN_RSA_BITS} to {MAX_RSA_BITS} bits "
                              f"(this one has {key.key_size})")
        numbers = key.public_numbers()
        jwk = {"kty": "RSA", "n": _uint(numbers.n), "e": _uint(numbers.e)}
        alg = algorithm or "RS256"
        if alg not in RSA_ALGORITHMS:
            raise KeyRejected(f"an RSA key can only be bound to {sorted(RSA_ALGORITHMS)}")
    elif isinstance(key, ec.EllipticCurvePublicKey):
        curve = _CURVE_BY_NAME.get(key.curve.name)
        if curve is None:
            raise KeyRejected(f"EC curve {key.curve.name} is not accepted (P-256 or P-384)")
        crv, _, size = curve
        point = key.public_numbers()
        jwk = {"kty": "EC", "crv": crv, "x": _uint(point.x, size), "y": _uint(point.y, size)}
        alg = algorithm or EC_ALGORITHM_BY_CURVE[crv]
        if alg != EC_ALGORITHM_BY_CURVE[crv]:
            raise KeyRejected(f"a {crv} key can only be bound to {EC_ALGORITHM_BY_CURVE[crv]}")
    elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        raise KeyRejected("Ed25519/Ed448 (EdDSA) keys are not supported by the token library "
                          "(python-jose 3.5)")
    else:
        raise KeyRejected(f"{type(key).__name__} is not accepted (RSA or EC P-256/P-384)")

    thumbprint = jwk_thumbprint(jwk)
    kid = kid if kid is not None else thumbprint
    if not KID_PATTERN.fullmatch(kid):
        raise KeyRejected(f"kid must match {KID_PATTERN.pattern}")
    normalized = {**jwk, "kid": kid, "alg": alg, "use": "sig"}
    return PublicKey(kid=kid, algorithm=alg, jwk=normalized, thumbprint=thumbprint)


def jwk_thumbprint(jwk: Mapping[str, str]) -> str:
    """RFC 7638 JWK thumbprint (SHA-256, base64url) over the required public members."""
    required = ("e", "kty", "n") if jwk["kty"] == "RSA" else ("crv", "kty", "x", "y")
    canonical = json.dumps({m: jwk[m] for m in required}, sort_keys=True, separators=(",", ":"))
    return b64url_encode(hashlib.sha256(canonical.encode("utf-8")).digest())


def _jwk_object(data: Mapping[str, Any] | str | bytes) -> dict[str, Any]:
    if isinstance(data, str | bytes):
        if len(data) > MAX_KEY_INPUT_BYTES:
            raise KeyRejected(f"key input larger than {MAX_KEY_INPUT_BYTES} bytes")
        try:
            data = json.loads(data)
        except ValueError as exc:
            raise KeyRejected(f"not JSON: {exc}") from exc
    if not isinstance(data, Mapping):
        raise KeyRejected("a JWK must be a JSON object")
    if "keys" in data:
        raise KeyRejected("this is a JWK set; register its keys one at a time")
    return dict(data)


def _jwk_bytes(jwk: Mapping[str, Any], member: str) -> bytes:
    value = jwk.get(member)
    if not isinstance(value, str) or not value:
        raise KeyRejected(f"the JWK lacks {member!r}")
    try:
        return b64url_decode(value)
    except ValueError as exc:
        raise KeyRejected(f"the JWK's {member!r} is not base64url") from exc


def _jwk_int(jwk: Mapping[str, Any], member: str) -> int:
    return int.from_bytes(_jwk_bytes(jwk, member), "big")
