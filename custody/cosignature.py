"""C2SP tlog-cosignature (https://c2sp.org/tlog-cosignature), the Ed25519 ``cosignature/v1`` type.

A witness's cosignature is a note signature line on a checkpoint,
``"— <witness name> base64(key id || timestamp (u64, big-endian) || Ed25519 signature)"``, where
the key id is the first four bytes of ``SHA-256(name || "\\n" || 0x04 || public key)`` and the
signed message is::

    cosignature/v1
    time <timestamp>
    <the checkpoint's note body, extension lines included>

A cosigner's verifier key (vkey) is ``<name>+<hex8 key id>+base64(0x04 || public key)``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from custody.errors import FormatError, SignatureError
from custody.note import parse_note

__all__ = [
    "ALG_COSIGNATURE_V1",
    "MAX_TIMESTAMP",
    "Cosigner",
    "CosignerKey",
    "cosigned_message",
    "cosigner_key_id",
    "verify_cosignatures",
]

ALG_COSIGNATURE_V1 = 0x04
MAX_TIMESTAMP = 2**63 - 1  # tlog-cosignature: a timestamp MUST NOT exceed 2^63 - 1
_KEY_SIZE = 32
_SIG_SIZE = 64
_BLOB_SIZE = 8 + _SIG_SIZE


def _valid_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(ch.isspace() for ch in name)


def cosigner_key_id(name: str, public_key: bytes) -> int:
    """The key id of an Ed25519 cosigner: ``SHA-256(name || "\\n" || 0x04 || key)[:4]``.

    Raises:
        ValueError: ``name`` is not a valid key name or ``public_key`` is not 32 bytes.
    """
    if not _valid_name(name):
        raise ValueError(f"invalid cosigner name {name!r}: empty, or contains whitespace or '+'")
    if len(public_key) != _KEY_SIZE:
        raise ValueError("an Ed25519 public key is 32 bytes")
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([ALG_COSIGNATURE_V1]) + public_key)
    return int.from_bytes(digest.digest()[:4], "big")


def cosigned_message(checkpoint_body: str, timestamp: int) -> bytes:
    """The bytes a ``cosignature/v1`` signs: header line, time line, then the checkpoint body.

    Raises:
        ValueError: ``timestamp`` is outside [0, 2**63-1] or the body does not end in a newline.
    """
    if type(timestamp) is not int or not 0 <= timestamp <= MAX_TIMESTAMP:
        raise ValueError("timestamp must be an integer in [0, 2**63-1]")
    if not checkpoint_body.endswith("\n"):
        raise ValueError("a checkpoint body ends with a newline")
    return f"cosignature/v1\ntime {timestamp}\n{checkpoint_body}".encode()


@dataclass(frozen=True, slots=True)
class CosignerKey:
    """A witness's public key: its name (the signature line's key name) and Ed25519 key.

    Raises (constructor):
        ValueError: Invalid name or a public key that is not 32 bytes.
    """

    name: str
    public_key: bytes

    def __post_init__(self) -> None:
        cosigner_key_id(self.name, self.public_key)  # validates

    @property
    def key_id(self) -> int:
        """The key id the witness's signature lines carry."""
        return cosigner_key_id(self.name, self.public_key)

    @classmethod
    def parse(cls, text: str) -> CosignerKey:
        """Parse a cosigner vkey ``<name>+<hex8 key id>+base64(0x04 || public key)``.

        Raises:
            FormatError: Not such a key, or its key id does not match the name and key.
        """
        parts = text.strip().split("+", 2)
        if len(parts) != 3:
            raise FormatError("witness key must be <name>+<hex key id>+<base64 key>")
        name, hex_id, b64 = parts
        if not _valid_name(name) or not re.fullmatch(r"[0-9a-f]{8}", hex_id):
            raise FormatError("witness key has an invalid name or key id")
        try:
            raw = base64.b64decode(b64, validate=True)
        except binascii.Error:
            raise FormatError("witness key is not valid base64") from None
        if len(raw) != 1 + _KEY_SIZE or raw[0] != ALG_COSIGNATURE_V1:
            raise FormatError("witness key is not an Ed25519 cosignature/v1 key (type 0x04)")
        key = cls(name, raw[1:])
        if key.key_id != int(hex_id, 16):
            raise FormatError("witness key id does not match its name and key")
        return key

    def __str__(self) -> str:
        b64 = base64.b64encode(bytes([ALG_COSIGNATURE_V1]) + self.public_key).decode()
        return f"{self.name}+{self.key_id:08x}+{b64}"

    def verify(self, checkpoint_body: str, blob: bytes) -> int:
        """Verify a signature line's payload (without key id) over ``checkpoint_body``; return
        the cosignature's timestamp.

        Raises:
            SignatureError: The payload is not ``timestamp || signature`` or does not verify.
        """
        if len(blob) != _BLOB_SIZE:
            raise SignatureError(f"cosignature by {self.name} is not 8 + 64 bytes")
        timestamp = int.from_bytes(blob[:8], "big")
        if timestamp > MAX_TIMESTAMP:
            raise SignatureError(f"cosignature by {self.name} has a timestamp above 2^63-1")
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(
                blob[8:], cosigned_message(checkpoint_body, timestamp))
        except (InvalidSignature, ValueError):
            raise SignatureError(f"invalid cosignature by witness {self.name}") from None
        return timestamp


class Cosigner:
    """A witness's private key, which cosigns checkpoints."""

    __slots__ = ("_key", "key", "name")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        """Raises: ValueError: ``name`` is not a valid key name."""
        public = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.name = name
        self.key = CosignerKey(name, public)
        self._key = private_key

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> Cosigner:
        """A cosigner from a 32-byte Ed25519 seed.

        Raises:
            ValueError: Invalid name or a seed that is not 32 bytes.
        """
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        return cls(name, Ed25519PrivateKey.from_private_bytes(seed))

    def cosign(self, checkpoint_body: str, timestamp: int) -> str:
        """The signature line (with its final newline) cosigning ``checkpoint_body`` at
        ``timestamp`` (POSIX seconds).

        Raises:
            ValueError: ``timestamp`` is 0 (tlog-witness forbids omitting it) or out of range.
        """
        if timestamp == 0:
            raise ValueError("a witness cosignature must carry a non-zero timestamp")
        signature = self._key.sign(cosigned_message(checkpoint_body, timestamp))
        blob = self.key.key_id.to_bytes(4, "big") + timestamp.to_bytes(8, "big") + signature
        return f"\u2014 {self.name} {base64.b64encode(blob).decode()}\n"

    def __repr__(self) -> str:
        return f"Cosigner({self.key})"


def verify_cosignatures(
    note: str | bytes, keys: Iterable[CosignerKey]
) -> Mapping[CosignerKey, int]:
    """The witnesses among ``keys`` that validly cosigned the checkpoint ``note``, with the
    timestamp of each cosignature.

    As in a note verifier: signature lines whose name and key id match none of ``keys`` are
    ignored (the log's own signature among them); a matching line that does not verify, or two
    lines with the same name and key id, make the whole note invalid. The log's signature is not
    checked here.

    Raises:
        FormatError: The note is malformed, or has two lines with one key name and key id.
        SignatureError: A cosignature by one of ``keys`` does not verify.
    """
    parsed = parse_note(note)
    known = {(key.name, key.key_id): key for key in keys}
    found: dict[CosignerKey, int] = {}
    seen: set[tuple[str, int]] = set()
    for sig in parsed.signatures:
        if (sig.name, sig.key_id) in seen:  # as note.open_note (Go's note.Open)
            raise FormatError(f"note has two signatures by key {sig.name} {sig.key_id:08x}")
        seen.add((sig.name, sig.key_id))
        key = known.get((sig.name, sig.key_id))
        if key is None:
            continue
        found[key] = key.verify(parsed.text, sig.signature)
    return found
