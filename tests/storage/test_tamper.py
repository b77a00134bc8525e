"""Every way of damaging or misplacing a stored item raises its exact IntegrityError subclass.

The exhaustive bit-flip and truncation sweeps run on the filesystem (cheap raw writes); the same
attacks are sampled on SeaweedFS S3 by the ``backend``-parametrized tests.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from storage.envelope import KEK_WRAP_BODY_LEN
from storage.errors import (
    AuthenticationFailed,
    IntegrityError,
    KeyUnwrapFailed,
    MalformedObject,
    TrailingData,
    TruncatedObject,
    UnknownKey,
)
from storage.evidence import EvidenceVault, StoredItem
from storage.keyring import Keyring, StaticKeySource
from storage.stream import HEADER_LEN, TAG_LEN
from tests.storage.conftest import TEST_CHUNK_SIZE, Backend
from tests.storage.test_evidence import data_of

C = TEST_CHUNK_SIZE
SEALED = C + TAG_LEN
# Envelope layout for one KEK wrap (docs/encryption-format.md): magic+version, header copy,
# plaintext size, binding digest, wrap count, then type, key id length, key id, body length, body.
ENV_FIXED = 4 + 1 + HEADER_LEN + 8 + 32
KEY_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def expect(exc_class: type[IntegrityError], action: Callable[[], object]) -> IntegrityError:
    with pytest.raises(IntegrityError) as info:
        action()
    assert type(info.value) is exc_class, f"{type(info.value).__name__}: {info.value}"
    return info.value


def read_all(vault: EvidenceVault, stored: StoredItem, package: str = "pkg-1",
             item: str = "item-1") -> bytes:
    return b"".join(vault.open_item(stored, package, item))


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


def envelope_flip_expectation(envelope: bytes, key_id: str, bit: int) -> type[IntegrityError]:
    """What flipping ``bit`` of a one-wrap envelope must raise, by the field it lands in."""
    byte = bit // 8
    kid_start = ENV_FIXED + 1 + 2
    kid_end = kid_start + len(key_id)
    if byte < 5:
        return MalformedObject  # magic, version
    if byte < ENV_FIXED:
        return KeyUnwrapFailed  # header copy, size, binding digest: covered by the wrap's AD
    if byte == ENV_FIXED:
        return MalformedObject  # wrap count
    if byte == ENV_FIXED + 1:
        return UnknownKey  # wrap type: an unknown type is skipped, leaving no usable wrap
    if byte == ENV_FIXED + 2:
        return MalformedObject  # key id length
    if byte < kid_end:
        flipped = flip(envelope, bit)[kid_start:kid_end]
        valid = flipped.isascii() and KEY_ID_RE.fullmatch(flipped.decode("ascii")) is not None
        return UnknownKey if valid else MalformedObject
    if byte < kid_end + 2:
        return MalformedObject  # body length
    return KeyUnwrapFailed  # nonce, wrapped key, tag


# --- exhaustive sweeps (filesystem) ---------------------------------------------------------

@pytest.mark.slow  # every bit of the stored bytes, one by one
def test_every_bit_flip_in_content_fails_authentication(fs_vault: EvidenceVault,
                                                        fs_backend: Backend) -> None:
    stored = fs_vault.put_item("pkg-1", "item-1", [data_of(2 * C + 5)])
    original = fs_backend.tamper.read(stored.object_name)
    for bit in range(len(original) * 8):
        fs_backend.tamper.write(stored.object_name, flip(original, bit))
        expect(AuthenticationFailed, lambda: read_all(fs_vault, stored))
    fs_backend.tamper.write(stored.object_name, original)
    assert read_all(fs_vault, stored) == data_of(2 * C + 5)


def test_every_bit_flip_in_empty_item(fs_vault: EvidenceVault, fs_backend: Backend) -> None:
    stored = fs_vault.put_item("pkg-1", "item-1", [])
    original = fs_backend.tamper.read(stored.object_name)
    assert len(original) == HEADER_LEN + TAG_LEN
    for bit in range(len(original) * 8):
        fs_backend.tamper.write(stored.object_name, flip(original, bit))
        expect(AuthenticationFailed, lambda: read_all(fs_vault, stored))


@pytest.mark.slow  # every bit of the stored bytes, one by one
def test_every_bit_flip_in_key_envelope(fs_vault: EvidenceVault, fs_backend: Backend) -> None:
    stored = fs_vault.put_item("pkg-1", "item-1", [data_of(C + 1)])
    original = fs_backend.tamper.read(stored.envelope_name)
    (key_id,) = stored.key_ids
    assert len(original) == ENV_FIXED + 1 + 2 + len(key_id) + 2 + KEK_WRAP_BODY_LEN
    seen: set[type[IntegrityError]] = set()
    for bit in range(len(original) * 8):
        fs_backend.tamper.write(stored.envelope_name, flip(original, bit))
        expected = envelope_flip_expectation(original, key_id, bit)
        expect(expected, lambda: read_all(fs_vault, stored))
        seen.add(expected)
    assert seen == {MalformedObject, KeyUnwrapFailed, UnknownKey}


def test_truncation_at_every_byte(fs_vault: EvidenceVault, fs_backend: Backend) -> None:
    stored = fs_vault.put_item("pkg-1", "item-1", [data_of(3 * C + 7)])
    original = fs_backend.tamper.read(stored.object_name)
    for cut in range(len(original)):
        fs_backend.tamper.write(stored.object_name, original[:cut])
        expect(TruncatedObject, lambda: read_all(fs_vault, stored))


def test_truncated_envelope(fs_vault: EvidenceVault, fs_backend: Backend) -> None:
    stored = fs_vault.put_item("pkg-1", "item-1", [b"x"])
    original = fs_backend.tamper.read(stored.envelope_name)
    for cut in range(len(original)):
        fs_backend.tamper.write(stored.envelope_name, original[:cut])
        expect(MalformedObject, lambda: read_all(fs_vault, stored))


def test_truncation_yields_authentic_chunks_then_raises(fs_vault: EvidenceVault,
                                                        fs_backend: Backend) -> None:
    data = data_of(4 * C)
    stored = fs_vault.put_item("pkg-1", "item-1", [data])
    original = fs_backend.tamper.read(stored.object_name)
    fs_backend.tamper.write(stored.object_name, original[:HEADER_LEN + 2 * SEALED])
    received = []
    with pytest.raises(IntegrityError) as info:
        for piece in fs_vault.open_item(stored, "pkg-1", "item-1"):
            received.append(piece)
    assert type(info.value) is TruncatedObject
    assert b"".join(received) == data[:2 * C]


# --- structural attacks on chunks (both backends) -------------------------------------------

def chunks_of(raw: bytes) -> tuple[bytes, list[bytes]]:
    body = raw[HEADER_LEN:]
    return raw[:HEADER_LEN], [body[i:i + SEALED] for i in range(0, len(body), SEALED)]


@pytest.fixture
def four_chunks(vault: EvidenceVault, backend: Backend) -> tuple[StoredItem, bytes, list[bytes]]:
    stored = vault.put_item("pkg-1", "item-1", [data_of(4 * C)])
    header, chunks = chunks_of(backend.tamper.read(stored.object_name))
    assert len(chunks) == 4
    return stored, header, chunks


@pytest.mark.parametrize("i,j", [(0, 1), (1, 2), (0, 3), (2, 3)])
def test_swapped_chunks(vault: EvidenceVault, backend: Backend, four_chunks: tuple[
        StoredItem, bytes, list[bytes]], i: int, j: int) -> None:
    stored, header, chunks = four_chunks
    chunks[i], chunks[j] = chunks[j], chunks[i]
    backend.tamper.write(stored.object_name, header + b"".join(chunks))
    expect(AuthenticationFailed, lambda: read_all(vault, stored))


@pytest.mark.parametrize("i,expected", [(0, AuthenticationFailed), (2, AuthenticationFailed),
                                        (3, TrailingData)])
def test_duplicated_chunk(vault: EvidenceVault, backend: Backend,
                          four_chunks: tuple[StoredItem, bytes, list[bytes]], i: int,
                          expected: type[IntegrityError]) -> None:
    stored, header, chunks = four_chunks
    chunks.insert(i + 1, chunks[i])
    backend.tamper.write(stored.object_name, header + b"".join(chunks))
    expect(expected, lambda: read_all(vault, stored))


@pytest.mark.parametrize("i,expected", [(0, AuthenticationFailed), (2, AuthenticationFailed),
                                        (3, TruncatedObject)])
def test_dropped_chunk(vault: EvidenceVault, backend: Backend,
                       four_chunks: tuple[StoredItem, bytes, list[bytes]], i: int,
                       expected: type[IntegrityError]) -> None:
    stored, header, chunks = four_chunks
    del chunks[i]
    backend.tamper.write(stored.object_name, header + b"".join(chunks))
    expect(expected, lambda: read_all(vault, stored))


def test_dropped_chunk_before_short_final_chunk(vault: EvidenceVault, backend: Backend) -> None:
    stored = vault.put_item("pkg-1", "item-1", [data_of(2 * C + 5)])
    header, chunks = chunks_of(backend.tamper.read(stored.object_name))
    backend.tamper.write(stored.object_name, header + chunks[0] + chunks[2])
    expect(TruncatedObject, lambda: read_all(vault, stored))


@pytest.mark.parametrize("garbage", [b"\x00", b"x" * 17, b"y" * SEALED])
def test_appended_garbage(vault: EvidenceVault, backend: Backend, garbage: bytes) -> None:
    stored = vault.put_item("pkg-1", "item-1", [data_of(C + 3)])
    raw = backend.tamper.read(stored.object_name)
    backend.tamper.write(stored.object_name, raw + garbage)
    expect(TrailingData, lambda: read_all(vault, stored))
    envelope = backend.tamper.read(stored.envelope_name)
    backend.tamper.write(stored.envelope_name, envelope + garbage)
    expect(MalformedObject, lambda: read_all(vault, stored))


def test_range_read_detects_tampered_chunk(vault: EvidenceVault, backend: Backend) -> None:
    stored = vault.put_item("pkg-1", "item-1", [data_of(4 * C)])
    raw = backend.tamper.read(stored.object_name)
    backend.tamper.write(stored.object_name, flip(raw, (HEADER_LEN + 2 * SEALED + 3) * 8))
    assert b"".join(vault.open_item(stored, "pkg-1", "item-1", 0, 2 * C)) == data_of(4 * C)[:2 * C]
    expect(AuthenticationFailed,
           lambda: b"".join(vault.open_item(stored, "pkg-1", "item-1", 2 * C + 1, 1)))


def test_range_read_of_truncated_object(vault: EvidenceVault, backend: Backend) -> None:
    stored = vault.put_item("pkg-1", "item-1", [data_of(4 * C)])
    raw = backend.tamper.read(stored.object_name)
    backend.tamper.write(stored.object_name, raw[:HEADER_LEN + SEALED + 5])
    expect(TruncatedObject,
           lambda: b"".join(vault.open_item(stored, "pkg-1", "item-1", 3 * C, 4)))


# --- misplaced objects ------------------------------------------------------------------------

@pytest.mark.parametrize("other_package,other_item", [("pkg-1", "item-2"), ("pkg-2", "item-1")])
@pytest.mark.parametrize("moved", ["content", "envelope", "both"])
def test_objects_moved_between_items(vault: EvidenceVault, backend: Backend, other_package: str,
                                     other_item: str, moved: str) -> None:
    victim = vault.put_item("pkg-1", "item-1", [data_of(3 * C, seed=1)])
    other = vault.put_item(other_package, other_item, [data_of(3 * C, seed=2)])
    if moved in ("content", "both"):
        backend.tamper.write(victim.object_name, backend.tamper.read(other.object_name))
    if moved in ("envelope", "both"):
        backend.tamper.write(victim.envelope_name, backend.tamper.read(other.envelope_name))
    expect(AuthenticationFailed, lambda: read_all(vault, victim))


def test_opening_with_another_items_ids(vault: EvidenceVault) -> None:
    stored = vault.put_item("pkg-1", "item-1", [b"evidence"])
    expect(AuthenticationFailed, lambda: read_all(vault, stored, "pkg-2", "item-1"))
    expect(AuthenticationFailed, lambda: read_all(vault, stored, "pkg-1", "item-2"))
    expect(AuthenticationFailed, lambda: vault.open_item(stored, "pkg-1", "item-2", 1, 2))


def test_record_disagreeing_with_envelope(vault: EvidenceVault) -> None:
    stored = vault.put_item("pkg-1", "item-1", [b"evidence"])
    wrong_size = StoredItem(stored.object_name, 7, stored.sha256, stored.ciphertext_size,
                            stored.key_ids)
    expect(AuthenticationFailed, lambda: read_all(vault, wrong_size))
    wrong_digest = StoredItem(stored.object_name, stored.plaintext_size, "0" * 64,
                              stored.ciphertext_size, stored.key_ids)
    expect(AuthenticationFailed, lambda: vault.verify_item(wrong_digest, "pkg-1", "item-1"))


# --- keys ------------------------------------------------------------------------------------

def test_wrong_kek_material(vault: EvidenceVault, keyring: Keyring) -> None:
    stored = vault.put_item("pkg-1", "item-1", [b"evidence"])
    impostor = Keyring(StaticKeySource({keyring.active_key_id: b"\x01" * 32},
                                       keyring.active_key_id))
    other = EvidenceVault(vault.store, impostor, chunk_size=C)
    expect(KeyUnwrapFailed, lambda: read_all(other, stored))


def test_kek_removed_from_keyring(vault: EvidenceVault, keyring: Keyring) -> None:
    stored = vault.put_item("pkg-1", "item-1", [b"evidence"])
    unrelated = Keyring(StaticKeySource({"kek-other": b"\x02" * 32}, "kek-other"))
    error = expect(UnknownKey, lambda: read_all(EvidenceVault(vault.store, unrelated), stored))
    assert isinstance(error, UnknownKey) and error.key_ids == stored.key_ids


def test_rotation_rewraps_without_touching_content(vault: EvidenceVault, backend: Backend,
                                                   keyring: Keyring) -> None:
    items = {size: vault.put_item("pkg-1", f"item-{size}", [data_of(size)])
             for size in (0, 1, C, 3 * C + 1)}
    old_id = keyring.active_key_id
    content_before = {s: backend.tamper.read(i.object_name) for s, i in items.items()}
    envelopes_before = {s: backend.tamper.read(i.envelope_name) for s, i in items.items()}

    new_id = keyring.rotate()
    assert new_id != old_id and keyring.active_key_id == new_id
    assert set(keyring.key_ids) == {old_id, new_id}
    for size, stored in items.items():  # still readable before rewrap
        assert read_all(vault, stored, item=f"item-{size}") == data_of(size)

    report = vault.rewrap_all()
    assert (report.examined, report.rewrapped, report.already_current, report.failed) == (
        4, 4, 0, ())
    assert vault.rewrap_all().already_current == 4
    for size, stored in items.items():
        assert backend.tamper.read(stored.object_name) == content_before[size]
        assert backend.tamper.read(stored.envelope_name) != envelopes_before[size]

    # retire the old key: everything still opens with the new key alone
    _, secret = keyring.active_key()
    only_new = Keyring(StaticKeySource({new_id: secret}, new_id))
    retired = EvidenceVault(vault.store, only_new, chunk_size=C)
    for size, stored in items.items():
        assert read_all(retired, stored, item=f"item-{size}") == data_of(size)
        assert retired.verify_item(stored, "pkg-1", f"item-{size}") == stored.sha256

    # an envelope restored from before the rotation names only the retired key
    stored = items[C]
    backend.tamper.write(stored.envelope_name, envelopes_before[C])
    expect(UnknownKey, lambda: read_all(retired, stored, item=f"item-{C}"))
    assert retired.rewrap_all().failed == (stored.envelope_name,)


def test_new_items_use_the_rotated_key(vault: EvidenceVault, keyring: Keyring) -> None:
    before = vault.put_item("p", "a", [b"1"])
    new_id = keyring.rotate()
    after = vault.put_item("p", "b", [b"2"])
    assert before.key_ids != after.key_ids == (new_id,)
    report = vault.rewrap_all()
    assert (report.examined, report.rewrapped, report.already_current) == (2, 1, 1)
