"""Shared test material: a fixed clock, partner key pairs kept in memory, registered partners."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes

from service.identity.keys import PublicKey, public_key_from_key
from service.identity.registry import TrustRegistry

#: The identity migrations: these tests do not depend on the other domains' tables.
REVISION = "0008_identity_providers"
NOW = datetime(2030, 5, 17, 12, 0, 0, tzinfo=UTC)
AUDIENCE = "evidence-exchange"


@dataclass(frozen=True)
class Signer:
    """A partner's private key and its registered public half."""

    private: PrivateKeyTypes
    public: PublicKey

    @property
    def kid(self) -> str:
        return self.public.kid

    @property
    def private_pem(self) -> bytes:
        return self.private.private_bytes(  # type: ignore[union-attr]
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption())

    @property
    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(  # type: ignore[union-attr]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def ec_signer(curve: ec.EllipticCurve | None = None) -> Signer:
    private = ec.generate_private_key(curve or ec.SECP256R1())
    return Signer(private, public_key_from_key(private.public_key()))


def rsa_signer(bits: int = 2048, algorithm: str = "RS256") -> Signer:
    private = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return Signer(private, public_key_from_key(private.public_key(), algorithm=algorithm))


@dataclass(frozen=True)
class Partners:
    """Two registered partner authorities with known private keys."""

    registry: TrustRegistry
    bka: Signer  # DE-BKA: ES256, investigators only
    ocrteh: Signer  # FR-OCRTEH: RS256, investigators and auditors


def register_partners(db: sa.Connection, rsa_key: Signer) -> Partners:
    registry = TrustRegistry(db)
    bka = ec_signer()
    registry.add_authority("DE-BKA", name="Bundeskriminalamt", country="DE",
                           roles=["investigator"], now=NOW)
    registry.add_key("DE-BKA", bka.public, now=NOW)
    registry.add_authority("FR-OCRTEH", name="OCRTEH", country="FR",
                           roles=["investigator", "auditor"], now=NOW)
    registry.add_key("FR-OCRTEH", rsa_key.public, now=NOW)
    return Partners(registry, bka, rsa_key)
