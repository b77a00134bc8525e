"""The key envelope: a small object beside the content that holds the item's wrapped data key.

Kept apart from the content so that key rotation rewrites a few hundred bytes and never the
evidence itself. Specified byte by byte in ``docs/encryption-format.md``::

    envelope = "EVXK" || version (1) || content header (33) || plaintext_size (u64 BE)
               || binding_digest (32) || wrap_count (u8, 1..16) || wrap_1 || ... || wrap_count
    binding_digest = SHA-256(item binding)
    wrap     = type (u8) || key_id_len (u8) || key_id (ASCII) || body_len (u16 BE) || body
    type 1   = KEK AES-256-GCM: body = nonce (12) || AES-256-GCM(KEK, nonce, DEK, wrap_ad)
    wrap_ad  = "EVXK" || version || type || key_id_len || key_id || content header
               || plaintext_size (u64 BE) || binding_digest

The binding enters the wraps as a digest so that rotation can rewrap every envelope without
knowing which package and item each belongs to, and without storing those ids in the clear.
Only framing (magic, version, counts and lengths) is interpreted before authentication; the
header copy and the size are trusted only after a wrap that covers them has been opened. Unknown
wrap types are skipped, so later recipient (public-key) wraps can be added without a new version.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import struct
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from storage.errors import AuthenticationFailed, KeyUnwrapFailed, MalformedObject, UnknownKey
from storage.stream import DEK_LEN, ContentHeader, ItemBinding

ENVELOPE_MAGIC = b"EVXK"
ENVELOPE_VERSION = 1
WRAP_KEK_AES256GCM = 1
MAX_WRAPS = 16
MAX_ENVELOPE_BYTES = 64 * 1024  # DoS bound on what a reader loads into memory
WRAP_NONCE_LEN = 12
KEK_WRAP_BODY_LEN = WRAP_NONCE_LEN + DEK_LEN + 16
KEY_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_PREFIX = struct.Struct(">4sB33sQ32sB")
BINDING_DIGEST_LEN = 32


def validate_key_id(key_id: str) -> str:
    """Return ``key_id`` if it is a valid key id (1-64 of ``[A-Za-z0-9._-]``, not starting with
    punctuation).

    Raises:
        ValueError: invalid key id.
    """
    if KEY_ID_PATTERN.fullmatch(key_id) is None:
        raise ValueError(f"invalid key id: {key_id!r}")
    return key_id


@dataclass(frozen=True)
class KeyWrap:
    """One wrapped copy of the data key: its type, the id of the key that opens it, the body."""

    wrap_type: int
    key_id: str
    body: bytes


@dataclass(frozen=True)
class KeyEnvelope:
    """A parsed key envelope. ``header`` and ``plaintext_size`` are *unauthenticated* until a
    wrap has been opened with ``unwrap_dek``."""

    header_bytes: bytes
    plaintext_size: int
    binding_digest: bytes
    wraps: tuple[KeyWrap, ...]

    def to_bytes(self) -> bytes:
        """Serialize the envelope.

        Raises:
            ValueError: no wraps or more than ``MAX_WRAPS``.
        """
        if not 1 <= len(self.wraps) <= MAX_WRAPS:
            raise ValueError(f"an envelope holds 1..{MAX_WRAPS} wraps")
        out = bytearray(_PREFIX.pack(ENVELOPE_MAGIC, ENVELOPE_VERSION, self.header_bytes,
                                     self.plaintext_size, self.binding_digest,
                                     len(self.wraps)))
        for wrap in self.wraps:
            key_id = validate_key_id(wrap.key_id).encode("ascii")
            out += struct.pack(">BB", wrap.wrap_type, len(key_id)) + key_id
            out += struct.pack(">H", len(wrap.body)) + wrap.body
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> KeyEnvelope:
        """Parse the framing of an envelope (nothing is authenticated yet).

        Raises:
            MalformedObject: bad magic or version, or framing that does not exactly parse.
        """
        if len(data) > MAX_ENVELOPE_BYTES:
            raise MalformedObject("key envelope is too large")
        if len(data) < _PREFIX.size:
            raise MalformedObject("key envelope is truncated")
        magic, version, header_bytes, plaintext_size, digest, count = _PREFIX.unpack_from(data)
        if magic != ENVELOPE_MAGIC:
            raise MalformedObject("not a key envelope (bad magic)")
        if version != ENVELOPE_VERSION:
            raise MalformedObject(f"unsupported key envelope version {version}")
        if not 1 <= count <= MAX_WRAPS:
            raise MalformedObject("key envelope wrap count out of range")
        wraps = []
        position = _PREFIX.size
        for _ in range(count):
            if position + 2 > len(data):
                raise MalformedObject("key envelope is truncated")
            wrap_type, id_len = data[position], data[position + 1]
            position += 2
            raw_id = data[position:position + id_len]
            position += id_len
            try:
                key_id = validate_key_id(raw_id.decode("ascii"))
            except (UnicodeDecodeError, ValueError):
                raise MalformedObject("key envelope has an invalid key id") from None
            if position + 2 > len(data):
                raise MalformedObject("key envelope is truncated")
            (body_len,) = struct.unpack_from(">H", data, position)
            position += 2
            if wrap_type == WRAP_KEK_AES256GCM and body_len != KEK_WRAP_BODY_LEN:
                raise MalformedObject("key wrap body has the wrong length")
            body = data[position:position + body_len]
            position += body_len
            if len(body) != body_len:
                raise MalformedObject("key envelope is truncated")
            wraps.append(KeyWrap(wrap_type, key_id, bytes(body)))
        if position != len(data):
            raise MalformedObject("bytes follow the last key wrap")
        return cls(bytes(header_bytes), plaintext_size, bytes(digest), tuple(wraps))

    def replace_wraps(self, wraps: tuple[KeyWrap, ...]) -> KeyEnvelope:
        """The same envelope with a different list of wraps."""
        return KeyEnvelope(self.header_bytes, self.plaintext_size, self.binding_digest, wraps)


def binding_digest(binding: ItemBinding) -> bytes:
    """SHA-256 of the encoded item binding, as stored in the envelope."""
    return hashlib.sha256(binding.encode()).digest()


def _wrap_ad(wrap_type: int, key_id: str, envelope: KeyEnvelope) -> bytes:
    kid = key_id.encode("ascii")
    return (ENVELOPE_MAGIC + bytes([ENVELOPE_VERSION, wrap_type, len(kid)]) + kid
            + envelope.header_bytes + struct.pack(">Q", envelope.plaintext_size)
            + envelope.binding_digest)


def wrap_dek(dek: bytes, key_id: str, kek: bytes, envelope: KeyEnvelope) -> KeyWrap:
    """Wrap ``dek`` under the KEK ``kek`` named ``key_id``, bound to the envelope's header copy,
    plaintext size and binding digest (its existing wraps do not matter).

    Raises:
        ValueError: invalid key id or key lengths.
    """
    if len(dek) != DEK_LEN or len(kek) != 32:
        raise ValueError("DEK and KEK must be 32 bytes")
    validate_key_id(key_id)
    nonce = os.urandom(WRAP_NONCE_LEN)
    ad = _wrap_ad(WRAP_KEK_AES256GCM, key_id, envelope)
    return KeyWrap(WRAP_KEK_AES256GCM, key_id, nonce + AESGCM(kek).encrypt(nonce, dek, ad))


def unwrap_dek(envelope: KeyEnvelope, binding: ItemBinding | None,
               kek_for: Callable[[str], bytes | None]) -> tuple[bytes, ContentHeader]:
    """Open the first wrap whose KEK ``kek_for(key_id)`` returns, check (unless ``binding`` is
    None, as during rotation) that the envelope belongs to ``binding``, and return the DEK and
    the now authenticated content header.

    Raises:
        AuthenticationFailed: the envelope is authentic but belongs to another item.
        UnknownKey: no KEK-type wrap names a key that ``kek_for`` knows.
        KeyUnwrapFailed: a named KEK is known but the wrap does not authenticate under it
            (wrong key material, tampered envelope, or an envelope of another item).
        MalformedObject: the authenticated header is not a valid content header.
    """
    wanted = tuple(w.key_id for w in envelope.wraps if w.wrap_type == WRAP_KEK_AES256GCM)
    failed: list[str] = []
    for wrap in envelope.wraps:
        if wrap.wrap_type != WRAP_KEK_AES256GCM:
            continue  # e.g. a recipient public-key wrap: not ours to open
        kek = kek_for(wrap.key_id)
        if kek is None:
            continue
        ad = _wrap_ad(wrap.wrap_type, wrap.key_id, envelope)
        nonce, sealed = wrap.body[:WRAP_NONCE_LEN], wrap.body[WRAP_NONCE_LEN:]
        try:
            dek = AESGCM(kek).decrypt(nonce, sealed, ad)
        except InvalidTag:
            failed.append(wrap.key_id)
            continue
        if binding is not None and not hmac.compare_digest(envelope.binding_digest,
                                                           binding_digest(binding)):
            raise AuthenticationFailed("key envelope belongs to another item")
        return dek, ContentHeader.from_bytes(envelope.header_bytes)
    if failed:
        raise KeyUnwrapFailed(f"data key does not unwrap under {', '.join(failed)}")
    raise UnknownKey(f"no key in the keyring opens this item (it names {', '.join(wanted)})",
                     wanted)
