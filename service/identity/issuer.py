"""Dev/test token issuing: authorities whose private keys live in our own data directory.

In production partners keep their private keys and register public keys only; nothing here runs.
For local development and tests, ``create_authority(..., data_dir=...)`` generates an EC P-256
key pair, registers the public half and keeps the private half at
``<data_dir>/authorities/<ID>/<kid>.pem`` (mode 0600), and :func:`mint_token` signs with it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from evx import durable
from service.identity.authorities import Authority, AuthorityKey, check_authority_id
from service.identity.errors import NoSigningKey
from service.identity.keys import PublicKey, public_key_from_key
from service.identity.registry import Database, TrustRegistry
from service.identity.tokens import MAX_TOKEN_LIFETIME, sign_token

DEFAULT_TOKEN_TTL = timedelta(minutes=15)
PRIVATE_KEY_MODE = 0o600  # only the service user may read a signing key
PRIVATE_DIR_MODE = 0o700


def private_key_path(data_dir: Path, authority_id: str, kid: str) -> Path:
    """Where a generated private key of ``authority_id`` lives."""
    return data_dir / "authorities" / check_authority_id(authority_id) / f"{kid}.pem"


def create_authority(
    db: Database, authority_id: str, *, name: str, country: str,
    roles: Iterable[str] = ("investigator",), public_key: PublicKey | None = None,
    data_dir: Path | None = None, now: datetime | None = None,
) -> Authority:
    """Register an authority, optionally with a public key, or with a key pair generated into
    ``data_dir`` (dev/test). Returns the authority with its keys.

    Raises AuthorityRejected, AuthorityExists, KeyRejected.
    """
    if public_key is not None and data_dir is not None:
        raise ValueError("give either public_key or data_dir (to generate a key), not both")
    registry = TrustRegistry(db)
    registry.add_authority(authority_id, name=name, country=country, roles=roles, now=now)
    if public_key is not None:
        registry.add_key(authority_id, public_key, now=now)
    if data_dir is not None:
        generate_key(db, data_dir, authority_id, now=now)
    return registry.get_authority(authority_id)


def generate_key_pair(data_dir: Path, authority_id: str) -> tuple[PublicKey, Path]:
    """Generate an EC P-256 (ES256) key pair and keep the private key (0600) in ``data_dir``;
    return the public key and the private key's path. Registering it is the caller's."""
    private = ec.generate_private_key(ec.SECP256R1())
    public = public_key_from_key(private.public_key())
    path = private_key_path(data_dir, authority_id, public.kid)
    path.parent.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR_MODE)
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    durable.create_file(path, pem, PRIVATE_KEY_MODE)
    return public, path


def generate_key(
    db: Database, data_dir: Path, authority_id: str, *, now: datetime | None = None
) -> AuthorityKey:
    """Generate a key pair (:func:`generate_key_pair`) and register the public key as an
    active key of ``authority_id`` directly in ``db`` (test fixtures; the ``evx authority``
    commands go through the registrar, on the record). Raises UnknownAuthority."""
    public, path = generate_key_pair(data_dir, authority_id)
    try:
        return TrustRegistry(db).add_key(authority_id, public, source="generated", now=now)
    except BaseException:
        path.unlink(missing_ok=True)
        raise


def mint_token(
    db: Database, data_dir: Path, authority_id: str, *, subject: str, role: str, audience: str,
    ttl: timedelta = DEFAULT_TOKEN_TTL, now: datetime | None = None, kid: str | None = None,
    token_id: str | None = None,
) -> str:
    """Sign an officer token with the newest active key of ``authority_id`` (or ``kid``) whose
    private key is in ``data_dir``.

    The role is not checked against the authority's allowed roles: verification does that, and
    tests need to mint tokens it refuses. Raises UnknownAuthority, NoSigningKey, ValueError (ttl).
    """
    if not timedelta(0) < ttl <= MAX_TOKEN_LIFETIME:
        raise ValueError(f"ttl must be positive and at most {MAX_TOKEN_LIFETIME}")
    authority = TrustRegistry(db).get_authority(authority_id)
    candidates = [k for k in reversed(authority.active_keys) if kid is None or k.kid == kid]
    for key in candidates:
        path = private_key_path(data_dir, authority_id, key.kid)
        if path.is_file():
            issued = (now or datetime.now(UTC)).astimezone(UTC)
            iat = int(issued.timestamp())
            claims = {
                "iss": authority_id, "sub": subject, "aud": audience, "role": role,
                "iat": iat, "nbf": iat, "exp": iat + int(ttl.total_seconds()),
                "jti": token_id or str(uuid.uuid4()),
            }
            return sign_token(claims, private_key_pem=path.read_bytes(), kid=key.kid,
                              algorithm=key.algorithm)
    which = f"key {kid!r}" if kid else "any active key"
    raise NoSigningKey(f"no private key for {which} of {authority_id} in {data_dir}")
