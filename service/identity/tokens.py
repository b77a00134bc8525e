"""Officer tokens: the one place that knows JOSE. Swap the JWT library here and nowhere else.

Verification order matters: size bound, then the compact serialization and the *unverified*
header (algorithm allow-list, ``kid``) before anything else; then the issuer's active key from
the trust registry, whose bound algorithm must equal the header's; then the signature; and only
then are the claims believed and checked against an injected clock.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

from jose import jwk as jose_jwk
from jose import jwt as jose_jwt

from service.identity.errors import InvalidToken, InvalidTokenReason, UnknownAuthority, UnknownKey
from service.identity.keys import KID_PATTERN, b64url_decode, jwk_thumbprint

MAX_TOKEN_BYTES = 8192  # DoS bound
#: Asymmetric only: never ``none``, never HS* (an HMAC "verified" with a partner's *public* key
#: is forgeable by anyone). PS256/384/512 are absent because python-jose 3.5 cannot verify them.
ALLOWED_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "ES256", "ES384"})
#: Partners mint short-lived tokens; a long-lived one that leaks is a long-lived impersonation.
MAX_TOKEN_LIFETIME = timedelta(hours=12)
MAX_CLAIM_CHARS = 256  # subjects and token ids end up in ledger entries
ACCEPTED_TYPES = frozenset({"jwt", "at+jwt", "application/jwt", "application/at+jwt"})
_SEGMENT = re.compile(r"^[A-Za-z0-9_-]*$")


@dataclass(frozen=True)
class TrustedKey:
    """What verification needs from the trust registry: an ACTIVE key and its issuer's roles."""

    authority: str
    kid: str
    algorithm: str
    jwk: Mapping[str, str]
    allowed_roles: frozenset[str]


#: ``lookup_key(issuer, kid)`` returns the issuer's *active* key with that kid, or raises
#: :class:`UnknownAuthority` / :class:`UnknownKey`.
KeyLookup = Callable[[str, str], TrustedKey]


@dataclass(frozen=True)
class Principal:
    """An authenticated officer: who, for which authority, acting in which role, until when."""

    authority: str
    subject: str
    role: str
    token_id: str
    expires_at: datetime
    #: The JWS ``kid`` and the RFC 7638 thumbprint of the key that verified the token: what
    #: the ledger records (entry version 2) so the authority can tell its keys from others.
    kid: str = ""
    key_thumbprint: str = ""


def verify_token(
    token: str, *, lookup_key: KeyLookup, audience: str, now: datetime, leeway: timedelta
) -> Principal:
    """Verify a compact JWS officer token and return its :class:`Principal`.

    Required claims: ``iss`` (the authority id, or the authority's OpenID Connect issuer URL),
    ``sub``, ``aud`` (must contain ``audience``), ``exp``, ``iat``, ``jti``, ``role`` (one the
    issuer may assert); ``nbf`` is checked when present (RFC 9068 access tokens from identity
    providers usually have none). ``now`` must be
    timezone-aware; ``leeway`` absorbs clock skew on every time check.
    Raises :class:`InvalidToken` with a machine-readable ``reason``.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if leeway < timedelta(0):
        raise ValueError("leeway must not be negative")
    header_b64, payload_b64, signature_b64 = _compact_segments(token)
    alg, kid = _checked_header(_json_object(header_b64, "header"))
    claims = _json_object(payload_b64, "payload")
    key = _issuer_key(claims, kid, alg, lookup_key)
    try:
        signature = b64url_decode(signature_b64)
    except ValueError:
        _refuse("malformed", "signature is not base64url")
    if not _signature_valid(key, alg, f"{header_b64}.{payload_b64}".encode("ascii"), signature):
        _refuse("bad_signature")
    return _principal(claims, key, audience=audience, now=now, leeway=leeway)


def _compact_segments(token: object) -> tuple[str, str, str]:
    """The three base64url segments of a compact JWS, or a refusal."""
    if not isinstance(token, str):
        _refuse("malformed", "token is not text")
    if len(token) > MAX_TOKEN_BYTES:
        _refuse("oversized", f"token longer than {MAX_TOKEN_BYTES} bytes")
    if not token.isascii():
        _refuse("malformed", "token is not ASCII")
    segments = token.split(".")
    if len(segments) != 3 or not all(_SEGMENT.fullmatch(s) for s in segments):
        _refuse("malformed", "not a compact JWS (three base64url segments)")
    return segments[0], segments[1], segments[2]


def _checked_header(header: dict[str, Any]) -> tuple[str, str]:
    """The header's ``alg`` and ``kid`` once the header is one this service accepts."""
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
        _refuse("disallowed_algorithm", f"alg {alg!r} is not accepted")
    if "crit" in header:
        _refuse("malformed", "no critical header extensions are understood")
    typ = header.get("typ")
    if typ is not None and (not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYPES):
        _refuse("malformed", f"typ {typ!r} is not a JWT")
    # Keys a token brings along (jwk, jku, x5u, x5c) are ignored: only registry keys verify.
    kid = header.get("kid")
    if not isinstance(kid, str) or not KID_PATTERN.fullmatch(kid):
        _refuse("malformed", "header needs a kid")
    return alg, kid


def _issuer_key(claims: dict[str, Any], kid: str, alg: str, lookup_key: KeyLookup) -> TrustedKey:
    """The registered key of the token's issuer named ``kid``, registered for ``alg``."""
    issuer = claims.get("iss")
    if issuer is None:
        _refuse("missing_claim", "iss")
    if not isinstance(issuer, str):
        _refuse("malformed", "iss is not a string")
    try:
        key = lookup_key(issuer, kid)
    except UnknownAuthority:
        _refuse("unknown_issuer", f"issuer {issuer!r} is not a registered authority")
    except UnknownKey:
        _refuse("unknown_key", f"issuer {issuer!r} has no active key {kid!r}")
    if key.kid != kid:
        raise RuntimeError("key lookup returned a key for another kid")
    if key.algorithm != alg:
        _refuse("disallowed_algorithm", f"key {kid!r} is registered for {key.algorithm}, not {alg}")
    return key


def sign_token(
    claims: Mapping[str, Any], *, private_key_pem: bytes, kid: str, algorithm: str
) -> str:
    """Sign ``claims`` as a compact JWS with ``kid`` in the header (dev/test issuing only)."""
    if algorithm not in ALLOWED_ALGORITHMS:
        raise ValueError(f"algorithm {algorithm!r} is not one this service accepts")
    return str(jose_jwt.encode(dict(claims), private_key_pem.decode("ascii"), algorithm=algorithm,
                               headers={"kid": kid}))


def _principal(
    claims: Mapping[str, Any], key: TrustedKey, *, audience: str, now: datetime,
    leeway: timedelta,
) -> Principal:
    for name in ("sub", "aud", "exp", "iat", "jti", "role"):
        if name not in claims:
            _refuse("missing_claim", name)

    aud = claims["aud"]
    audiences = [aud] if isinstance(aud, str) else aud
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        _refuse("malformed", "aud is not a string or a list of strings")
    if audience not in audiences:
        _refuse("bad_audience", f"token is not for {audience!r}")

    exp, iat = (_numeric_date(claims, name) for name in ("exp", "iat"))
    nbf = _numeric_date(claims, "nbf") if "nbf" in claims else iat
    current, slack = now.timestamp(), leeway.total_seconds()
    if current >= exp + slack:
        _refuse("expired")
    if current < nbf - slack:
        _refuse("not_yet_valid", "nbf is in the future")
    if iat > current + slack:
        _refuse("not_yet_valid", "iat is in the future")
    if exp - iat > MAX_TOKEN_LIFETIME.total_seconds():
        _refuse("lifetime_too_long", f"tokens may live at most {MAX_TOKEN_LIFETIME}")

    subject, token_id, role = (_short_text(claims, n) for n in ("sub", "jti", "role"))
    if role not in key.allowed_roles:
        _refuse("role_not_allowed", f"{key.authority} may not assert role {role!r}")
    return Principal(authority=key.authority, subject=subject, role=role, token_id=token_id,
                     expires_at=datetime.fromtimestamp(exp, UTC), kid=key.kid,
                     key_thumbprint=jwk_thumbprint(key.jwk))


def _signature_valid(key: TrustedKey, alg: str, signing_input: bytes, signature: bytes) -> bool:
    verifier = jose_jwk.construct(dict(key.jwk), algorithm=alg)
    try:
        return bool(verifier.verify(signing_input, signature))
    except Exception:  # noqa: BLE001 - any failure to verify is "not authentic"
        return False


def _json_object(segment: str, what: str) -> dict[str, Any]:
    try:
        # Decode as UTF-8 ourselves: json.loads(bytes) would also accept UTF-16/32 (RFC 7515
        # says UTF-8), and every byte another parser reads differently is room for smuggling.
        text = b64url_decode(segment).decode("utf-8")
        value = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except (ValueError, RecursionError):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        _refuse("malformed", f"{what} is not a JSON object")
    if not isinstance(value, dict):
        _refuse("malformed", f"{what} is not a JSON object")
    return value


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two parsers picking different duplicates is how claims get smuggled past a check.
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member name")
    return result


def _no_constants(name: str) -> NoReturn:
    raise ValueError(f"{name} is not JSON")


def _numeric_date(claims: Mapping[str, Any], name: str) -> float:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        _refuse("malformed", f"{name} is not a NumericDate")
    if not 0 <= value < 253402300800:  # before year 10000: datetime can represent it
        _refuse("malformed", f"{name} is out of range")
    return float(value)


def _short_text(claims: Mapping[str, Any], name: str) -> str:
    value = claims[name]
    if not isinstance(value, str) or not value or len(value) > MAX_CLAIM_CHARS:
        _refuse("malformed", f"{name} must be a non-empty string of at most {MAX_CLAIM_CHARS}")
    if not value.isprintable():
        _refuse("malformed", f"{name} contains control characters")
    return value


def _refuse(reason: InvalidTokenReason, detail: str | None = None) -> NoReturn:
    raise InvalidToken(reason, detail)
