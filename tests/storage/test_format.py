"""The format as a partner would implement it from docs/encryption-format.md, using nothing but
an AES-256-GCM primitive and ``struct`` -- checked against the storage code in both directions,
and against the worked example printed in the document.

Regenerate the example with ``.venv/bin/python -m tests.storage.test_format``.
"""

from __future__ import annotations

import hashlib
import re
import struct
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from storage.envelope import KeyEnvelope, unwrap_dek
from storage.errors import MalformedObject
from storage.evidence import EvidenceVault, StoredItem
from storage.filesystem import FileSystemStore
from storage.keyring import Keyring, StaticKeySource
from storage.stream import ChunkLayout, ItemBinding, open_chunks

DOC = Path(__file__).resolve().parents[2] / "docs" / "encryption-format.md"

# The worked example's fixed inputs (never use fixed keys or nonces for real data).
VECTOR_KEK_ID = "kek-example"
VECTOR_KEK = bytes(range(32))
VECTOR_DEK = bytes(range(0x40, 0x60))
VECTOR_CONTENT_ID = bytes(range(0x80, 0x90))
VECTOR_NONCE_PREFIX = bytes.fromhex("a0a1a2a3a4a5a6")
VECTOR_WRAP_NONCE = bytes.fromhex("b0b1b2b3b4b5b6b7b8b9babb")
VECTOR_CHUNK_SIZE = 16
VECTOR_PACKAGE = "pkg-1"
VECTOR_ITEM = "item-1"
VECTOR_PLAINTEXT = b"Evidence item #1: 40 bytes of plaintext."


def binding_bytes(package_id: str, item_id: str) -> bytes:
    p, i = package_id.encode(), item_id.encode()
    return struct.pack(">H", len(p)) + p + struct.pack(">H", len(i)) + i


def partner_seal(plaintext: bytes) -> tuple[bytes, bytes]:
    """Build (content, envelope) for the worked example, straight from the document."""
    header = (b"EVXC" + bytes([1, 1]) + struct.pack(">I", VECTOR_CHUNK_SIZE) + VECTOR_CONTENT_ID
              + VECTOR_NONCE_PREFIX)
    ad = header + binding_bytes(VECTOR_PACKAGE, VECTOR_ITEM)
    pieces = [plaintext[i:i + VECTOR_CHUNK_SIZE]
              for i in range(0, len(plaintext), VECTOR_CHUNK_SIZE)] or [b""]
    content = header
    for index, piece in enumerate(pieces):
        nonce = VECTOR_NONCE_PREFIX + struct.pack(">IB", index, int(index == len(pieces) - 1))
        content += AESGCM(VECTOR_DEK).encrypt(nonce, piece, ad)
    digest = hashlib.sha256(binding_bytes(VECTOR_PACKAGE, VECTOR_ITEM)).digest()
    kid = VECTOR_KEK_ID.encode()
    wrap_ad = (b"EVXK" + bytes([1, 1, len(kid)]) + kid + header
               + struct.pack(">Q", len(plaintext)) + digest)
    body = VECTOR_WRAP_NONCE + AESGCM(VECTOR_KEK).encrypt(VECTOR_WRAP_NONCE, VECTOR_DEK, wrap_ad)
    envelope = (b"EVXK" + bytes([1]) + header + struct.pack(">Q", len(plaintext)) + digest
                + bytes([1]) + bytes([1, len(kid)]) + kid + struct.pack(">H", len(body)) + body)
    return content, envelope


def partner_open(content: bytes, envelope: bytes, kek_id: str, kek: bytes, package_id: str,
                 item_id: str) -> bytes:
    """Decrypt an item straight from the document (single KEK wrap assumed)."""
    assert envelope[:5] == b"EVXK\x01"
    header, rest = envelope[5:38], envelope[38:]
    (size,), digest, count = struct.unpack(">Q", rest[:8]), rest[8:40], rest[40]
    assert count == 1 and rest[41] == 1
    kid_len = rest[42]
    kid = rest[43:43 + kid_len]
    assert kid.decode() == kek_id
    (body_len,) = struct.unpack(">H", rest[43 + kid_len:45 + kid_len])
    body = rest[45 + kid_len:45 + kid_len + body_len]
    wrap_ad = (b"EVXK" + bytes([1, 1, kid_len]) + kid + header + struct.pack(">Q", size) + digest)
    dek = AESGCM(kek).decrypt(body[:12], body[12:], wrap_ad)
    assert digest == hashlib.sha256(binding_bytes(package_id, item_id)).digest()
    assert content[:33] == header
    (chunk_size,) = struct.unpack(">I", header[6:10])
    prefix = header[26:33]
    count_chunks = max(1, -(-size // chunk_size))
    ad = header + binding_bytes(package_id, item_id)
    out, position = b"", 33
    for index in range(count_chunks):
        length = (chunk_size if index < count_chunks - 1
                  else size - chunk_size * (count_chunks - 1)) + 16
        nonce = prefix + struct.pack(">IB", index, int(index == count_chunks - 1))
        out += AESGCM(dek).decrypt(nonce, content[position:position + length], ad)
        position += length
    assert position == len(content)
    return out


def test_partner_built_example_opens_with_storage() -> None:
    content, envelope_bytes = partner_seal(VECTOR_PLAINTEXT)
    envelope = KeyEnvelope.from_bytes(envelope_bytes)
    binding = ItemBinding(VECTOR_PACKAGE, VECTOR_ITEM)
    dek, header = unwrap_dek(envelope, binding,
                             {VECTOR_KEK_ID: VECTOR_KEK}.get)
    assert dek == VECTOR_DEK
    layout = ChunkLayout(header.chunk_size, envelope.plaintext_size)
    assert layout.ciphertext_size == len(content)
    plaintext = b"".join(open_chunks(dek, header, binding, layout, [content[33:]], 0,
                                     layout.chunk_count - 1, expect_end=True))
    assert plaintext == VECTOR_PLAINTEXT


def test_storage_written_items_open_with_partner_code(tmp_path: Path) -> None:
    kek = bytes(range(100, 132))
    vault = EvidenceVault(FileSystemStore(tmp_path),
                          Keyring(StaticKeySource({"kek-a": kek}, "kek-a")), chunk_size=16)
    for size in (0, 1, 15, 16, 17, 100):
        data = bytes(range(size))
        stored: StoredItem = vault.put_item("pkg-x", "item-y", [data])
        content = (tmp_path / stored.object_name).read_bytes()
        envelope = (tmp_path / stored.envelope_name).read_bytes()
        assert partner_open(content, envelope, "kek-a", kek, "pkg-x", "item-y") == data


def hexdump(data: bytes) -> str:
    return "\n".join(data[i:i + 32].hex() for i in range(0, len(data), 32))


def example_text() -> str:
    content, envelope = partner_seal(VECTOR_PLAINTEXT)
    return (f"content ({len(content)} bytes):\n{hexdump(content)}\n\n"
            f"envelope ({len(envelope)} bytes):\n{hexdump(envelope)}\n")


def test_document_shows_the_current_example() -> None:
    text = DOC.read_text()
    match = re.search(r"<!-- example:begin -->\n```\n(.*?)```\n<!-- example:end -->", text, re.S)
    assert match is not None, "docs/encryption-format.md lost its worked example"
    assert match.group(1) == example_text()


# --- one rule for wraps of types a reader does not know (docs: "Key envelope object") ---------

def _with_wrap_before(envelope: bytes, wrap_type: int, key_id: bytes, body: bytes) -> bytes:
    """The envelope with one more wrap in front of its own (wrap_count + 1)."""
    extra = bytes([wrap_type, len(key_id)]) + key_id + struct.pack(">H", len(body)) + body
    return envelope[:78] + bytes([envelope[78] + 1]) + extra + envelope[79:]


def _open_example(envelope: bytes) -> bytes:
    dek, _header = unwrap_dek(KeyEnvelope.from_bytes(envelope),
                              ItemBinding(VECTOR_PACKAGE, VECTOR_ITEM),
                              {VECTOR_KEK_ID: VECTOR_KEK}.get)
    return dek


def test_unknown_wrap_type_with_a_valid_key_id_is_skipped() -> None:
    text = DOC.read_text("utf-8")
    assert "a reader skips a wrap of a type it does not know" in text
    assert "is **MalformedObject**, whatever the wrap's type" in text
    _content, envelope = partner_seal(VECTOR_PLAINTEXT)
    for wrap_type in (0, 2, 255):
        for body in (b"", b"\x00" * 60, b"recipient public-key wrap" * 3):
            changed = _with_wrap_before(envelope, wrap_type, b"DE-BKA.recipient_1", body)
            assert _open_example(changed) == VECTOR_DEK
            # a rewrap keeps it, byte for byte
            parsed = KeyEnvelope.from_bytes(changed)
            assert parsed.to_bytes() == changed


@pytest.mark.parametrize("key_id", [b"", b"-starts-with-punctuation", b"has/slash", b"x" * 65,
                                    b"caf\xc3\xa9"])
@pytest.mark.parametrize("wrap_type", [1, 2])
def test_any_wrap_with_an_invalid_key_id_is_malformed(key_id: bytes, wrap_type: int) -> None:
    _content, envelope = partner_seal(VECTOR_PLAINTEXT)
    body = b"\x00" * 60
    with pytest.raises(MalformedObject):
        KeyEnvelope.from_bytes(_with_wrap_before(envelope, wrap_type, key_id, body))


@pytest.mark.parametrize("length", [0, 59, 61])
def test_kek_wrap_of_the_wrong_body_length_is_malformed(length: int) -> None:
    _content, envelope = partner_seal(VECTOR_PLAINTEXT)
    with pytest.raises(MalformedObject):
        KeyEnvelope.from_bytes(_with_wrap_before(envelope, 1, b"kek-other", b"\x00" * length))
    # the same body under a type this reader does not know is skipped
    assert _open_example(_with_wrap_before(envelope, 2, b"kek-other", b"\x00" * length)) \
        == VECTOR_DEK


if __name__ == "__main__":
    print(example_text())
