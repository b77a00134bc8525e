"""C2SP signed notes (https://c2sp.org/signed-note) with Ed25519 keys.

A note is UTF-8 text ending in a newline, then a blank line, then signature lines
``"— <name> <base64(key id (4 bytes) || signature)>\\n"`` (the dash is U+2014).  A key id is the
first four bytes of ``SHA-256(name || 0x0A || 0x01 || public key)``; a verifier key is written
``<name>+<key id as 8 hex digits>+<base64(0x01 || public key)>``.

:func:`open_note` follows golang.org/x/mod/sumdb/note ``Open``: two signature lines with the same
key name and key id make the note malformed, signatures by unknown keys are ignored, every
signature by a known key must verify, and at least one known key must have signed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from custody.errors import FormatError, SignatureError

__all__ = [
    "ALG_ED25519",
    "MAX_NOTE_BYTES",
    "MAX_SIGNATURES",
    "Note",
    "NoteSignature",
    "Signer",
    "VerifierKey",
    "key_id",
    "open_note",
    "parse_note",
    "sign_note",
]

ALG_ED25519 = 0x01
# Checkpoints are well under 1 KiB; the bound caps what an untrusted note makes us parse.
MAX_NOTE_BYTES = 64 * 1024
# As in Go's note.Open: stop a note with endless signature lines from costing endless work.
MAX_SIGNATURES = 100

_SIG_PREFIX = "\u2014 "
_ED25519_KEY_SIZE = 32
_ED25519_SIG_SIZE = 64
_CONTROL_RE = re.compile(r"[\x00-\x09\x0b-\x1f]")


def _valid_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(ch.isspace() for ch in name)


def key_id(name: str, public_key: bytes) -> int:
    """The 32-bit key id of an Ed25519 key: first 4 bytes (big-endian) of
    ``SHA-256(name || "\\n" || 0x01 || public_key)``.

    Raises:
        ValueError: ``name`` is not a valid key name or ``public_key`` is not 32 bytes.
    """
    if not _valid_name(name):
        raise ValueError(f"invalid key name {name!r}: empty, or contains whitespace or '+'")
    if len(public_key) != _ED25519_KEY_SIZE:
        raise ValueError("an Ed25519 public key is 32 bytes")
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([ALG_ED25519]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


@dataclass(frozen=True, slots=True)
class VerifierKey:
    """A named Ed25519 public key that verifies notes.

    Raises (constructor):
        ValueError: Invalid name or a public key that is not 32 bytes.
    """

    name: str
    public_key: bytes

    def __post_init__(self) -> None:
        key_id(self.name, self.public_key)  # validates

    @property
    def key_id(self) -> int:
        """The key id signature lines carry."""
        return key_id(self.name, self.public_key)

    @classmethod
    def parse(cls, text: str) -> VerifierKey:
        """Parse ``<name>+<hex8 key id>+<base64(0x01 || public key)>``.

        Raises:
            FormatError: The text is not such a key, or its key id does not match the key.
        """
        parts = text.strip().split("+", 2)  # base64 may itself contain "+"
        if len(parts) != 3:
            raise FormatError("verifier key must be <name>+<hex key id>+<base64 key>")
        name, hex_id, b64 = parts
        if not _valid_name(name) or not re.fullmatch(r"[0-9a-f]{8}", hex_id):
            raise FormatError("verifier key has an invalid name or key id")
        try:
            raw = base64.b64decode(b64, validate=True)
        except binascii.Error:
            raise FormatError("verifier key is not valid base64") from None
        if len(raw) != 1 + _ED25519_KEY_SIZE or raw[0] != ALG_ED25519:
            raise FormatError("verifier key is not an Ed25519 key")
        key = cls(name, raw[1:])
        if key.key_id != int(hex_id, 16):
            raise FormatError("verifier key id does not match its name and key")
        return key

    def __str__(self) -> str:
        b64 = base64.b64encode(bytes([ALG_ED25519]) + self.public_key).decode()
        return f"{self.name}+{self.key_id:08x}+{b64}"

    def verify(self, message: bytes, signature: bytes) -> bool:
        """Whether ``signature`` is this key's Ed25519 signature of ``message``."""
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except InvalidSignature:
            return False
        return True


class Signer:
    """A named Ed25519 private key that signs notes."""

    __slots__ = ("_key", "name", "verifier_key")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        """Raises: ValueError: ``name`` is not a valid key name."""
        public = private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.name = name
        self.verifier_key = VerifierKey(name, public)
        self._key = private_key

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> Signer:
        """A signer from a 32-byte Ed25519 seed (RFC 8032 private key).

        Raises:
            ValueError: Invalid name or a seed that is not 32 bytes.
        """
        if len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        return cls(name, Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def generate(cls, name: str) -> Signer:
        """A signer with a fresh random key.  Raises: ValueError: invalid name."""
        return cls(name, Ed25519PrivateKey.generate())

    def sign(self, message: bytes) -> bytes:
        """The raw 64-byte Ed25519 signature of ``message``."""
        return self._key.sign(message)

    def __repr__(self) -> str:
        return f"Signer({self.verifier_key})"


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One signature line of a note, decoded (not verified)."""

    name: str
    key_id: int
    signature: bytes


@dataclass(frozen=True, slots=True)
class Note:
    """A parsed, *unverified* note: its text and signature lines."""

    text: str
    signatures: tuple[NoteSignature, ...]


def _check_text(text: str) -> None:
    if not text.endswith("\n"):
        raise FormatError("note text must end with a newline")
    if _CONTROL_RE.search(text):
        raise FormatError("note text must not contain control characters other than newline")


def sign_note(text: str, signer: Signer) -> str:
    """Sign ``text`` and return the signed note (text, blank line, one signature line).

    Raises:
        ValueError: ``text`` is empty, does not end with a newline, or has control characters.
    """
    try:
        _check_text(text)
    except FormatError as exc:
        raise ValueError(exc.reason) from None
    signature = signer.sign(text.encode("utf-8"))
    blob = signer.verifier_key.key_id.to_bytes(4, "big") + signature
    return f"{text}\n{_SIG_PREFIX}{signer.name} {base64.b64encode(blob).decode()}\n"


def parse_note(note: str | bytes) -> Note:
    """Split a signed note into its text and decoded signature lines, without verifying.

    Raises:
        FormatError: Not a well-formed signed note (size, encoding, layout, a signature line).
    """
    if isinstance(note, bytes):
        if len(note) > MAX_NOTE_BYTES:
            raise FormatError(f"note exceeds {MAX_NOTE_BYTES} bytes")
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError("note is not UTF-8") from None
    if len(note) > MAX_NOTE_BYTES:
        raise FormatError(f"note exceeds {MAX_NOTE_BYTES} bytes")
    try:
        note.encode("utf-8")
    except UnicodeEncodeError:
        raise FormatError("note is not valid Unicode") from None
    if _CONTROL_RE.search(note):
        raise FormatError("note must not contain control characters other than newline")
    split = note.rfind("\n\n")
    if split < 0:
        raise FormatError("note has no blank line before its signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block or not block.endswith("\n"):
        raise FormatError("note signature block must be non-empty and end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise FormatError(f"note has more than {MAX_SIGNATURES} signatures")
    signatures = []
    for line in lines:
        if not line.startswith(_SIG_PREFIX):
            raise FormatError("note signature line does not start with '\u2014 '")
        name, sep, b64 = line[len(_SIG_PREFIX) :].partition(" ")
        try:
            blob = base64.b64decode(b64, validate=True)
        except binascii.Error:
            blob = b""
        if not sep or not _valid_name(name) or len(blob) < 5:
            raise FormatError(f"malformed note signature line for {name!r}")
        signatures.append(NoteSignature(name, int.from_bytes(blob[:4], "big"), blob[4:]))
    return Note(text, tuple(signatures))


def open_note(note: str | bytes, verifiers: Iterable[VerifierKey]) -> str:
    """Verify a signed note and return its text.

    Signatures by keys not in ``verifiers`` are ignored; every signature by a key in
    ``verifiers`` must verify, and there must be at least one.  Two lines with the same key
    name and key id are refused (as Go's ``note.Open`` does): otherwise a bad second line by the
    pinned key would go unchecked.

    Raises:
        FormatError: The note is malformed, or names one key twice.
        SignatureError: A known key's signature is bad, or no known key signed.
    """
    parsed = parse_note(note)
    known = {(key.name, key.key_id): key for key in verifiers}
    message = parsed.text.encode("utf-8")
    verified = 0
    seen: set[tuple[str, int]] = set()
    for sig in parsed.signatures:
        if (sig.name, sig.key_id) in seen:
            raise FormatError(f"note has two signatures by key {sig.name} {sig.key_id:08x}")
        seen.add((sig.name, sig.key_id))
        key = known.get((sig.name, sig.key_id))
        if key is None:
            continue
        if len(sig.signature) != _ED25519_SIG_SIZE or not key.verify(message, sig.signature):
            raise SignatureError(f"invalid signature by {sig.name}")
        verified += 1
    if not verified:
        names = sorted({sig.name for sig in parsed.signatures})
        raise SignatureError(f"no signature by a trusted key (signed by {names})")
    return parsed.text
