"""EvidenceVault round trips and range reads, property-tested on both real backends."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from storage.errors import ObjectNotFound
from storage.evidence import EvidenceVault, StoredItem
from storage.keyring import Keyring
from storage.stream import HEADER_LEN, MAX_ID_BYTES, TAG_LEN
from tests.storage.conftest import TEST_CHUNK_SIZE, Backend, pieces

C = TEST_CHUNK_SIZE
BOUNDARY_SIZES = [0, 1, C - 1, C, C + 1, 2 * C, 7 * C + 3, 40 * C]
FIXTURE_SETTINGS = settings(max_examples=30, deadline=None,
                            suppress_health_check=[HealthCheck.function_scoped_fixture])


def data_of(size: int, seed: int = 0) -> bytes:
    return hashlib.shake_256(f"{seed}:{size}".encode()).digest(size) if size else b""


def read(vault: EvidenceVault, stored: StoredItem, package: str = "pkg-1", item: str = "item-1",
         offset: int = 0, length: int | None = None) -> bytes:
    return b"".join(vault.open_item(stored, package, item, offset, length))


@FIXTURE_SETTINGS
@given(size=st.integers(0, 12 * C), split=st.lists(st.integers(1, 3 * C), max_size=4))
@example(size=0, split=[]).via("empty item")
@example(size=1, split=[]).via("one byte")
@example(size=C - 1, split=[]).via("chunk - 1")
@example(size=C, split=[]).via("one chunk")
@example(size=C + 1, split=[1]).via("chunk + 1")
@example(size=40 * C, split=[7, 300]).via("many chunks")
def test_round_trip(vault: EvidenceVault, size: int, split: list[int]) -> None:
    data = data_of(size)
    stored = vault.put_item("pkg-1", "item-1", pieces(data, split))
    assert read(vault, stored) == data
    assert stored.plaintext_size == size
    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    chunks = max(1, -(-size // C))
    assert stored.ciphertext_size == HEADER_LEN + size + chunks * TAG_LEN
    assert vault.store.size(stored.object_name) == stored.ciphertext_size
    assert vault.verify_item(stored, "pkg-1", "item-1") == stored.sha256
    assert stored.key_ids == (vault.keyring.active_key_id,)


@pytest.mark.parametrize("size", BOUNDARY_SIZES)
def test_stored_bytes_are_not_plaintext(vault: EvidenceVault, backend: Backend, size: int) -> None:
    data = b"EVIDENCE" * (size // 8 + 1)
    stored = vault.put_item("pkg-1", "item-1", [data[:size]])
    raw = backend.tamper.read(stored.object_name)
    assert (b"EVIDENCE" not in raw) if size >= 8 else True
    assert len(raw) == stored.ciphertext_size


@pytest.fixture
def stored_items(vault: EvidenceVault) -> dict[int, StoredItem]:
    return {size: vault.put_item("pkg-1", "item-1", [data_of(size)]) for size in BOUNDARY_SIZES}


@FIXTURE_SETTINGS
@given(data=st.data())
def test_range_reads(vault: EvidenceVault, stored_items: dict[int, StoredItem],
                     data: st.DataObject) -> None:
    size = data.draw(st.sampled_from(BOUNDARY_SIZES))
    offset = data.draw(st.integers(0, size))
    length = data.draw(st.none() | st.integers(0, size - offset + 2 * C))
    expected = data_of(size)[offset:None if length is None else offset + length]
    assert read(vault, stored_items[size], offset=offset, length=length) == expected


@pytest.mark.parametrize("offset,length", [
    (0, 1), (C - 1, 2), (C, C), (C + 1, C - 2), (3 * C, None), (7 * C, 100), (7 * C + 2, 1),
    (7 * C + 3, None), (7 * C + 3, 5), (0, 7 * C + 3), (5, None),
])
def test_range_reads_around_chunk_boundaries(vault: EvidenceVault,
                                             stored_items: dict[int, StoredItem],
                                             offset: int, length: int | None) -> None:
    size = 7 * C + 3
    data = data_of(size)
    end = None if length is None else offset + length
    assert read(vault, stored_items[size], offset=offset, length=length) == data[offset:end]


def test_range_past_the_end_is_caller_error(vault: EvidenceVault,
                                            stored_items: dict[int, StoredItem]) -> None:
    with pytest.raises(ValueError):
        vault.open_item(stored_items[C], "pkg-1", "item-1", offset=C + 1)
    with pytest.raises(ValueError):
        vault.open_item(stored_items[C], "pkg-1", "item-1", offset=-1)


def test_each_item_has_its_own_names_and_key(vault: EvidenceVault, backend: Backend) -> None:
    data = data_of(200)
    a = vault.put_item("pkg-1", "item-1", [data])
    b = vault.put_item("pkg-1", "item-1", [data])
    assert a.object_name != b.object_name
    assert a.sha256 == b.sha256
    assert backend.tamper.read(a.object_name) != backend.tamper.read(b.object_name)
    assert sorted(vault.store.list("items/")) == sorted(
        [a.object_name, a.envelope_name, b.object_name, b.envelope_name])


def test_delete_item(vault: EvidenceVault) -> None:
    stored = vault.put_item("pkg-1", "item-1", [b"abc"])
    vault.delete_item(stored)
    assert list(vault.store.list()) == []
    with pytest.raises(ObjectNotFound):
        vault.open_item(stored, "pkg-1", "item-1")
    vault.delete_item(stored)  # idempotent


class UploadAborted(Exception):
    pass


def aborted_upload(size: int) -> Iterator[bytes]:
    yield data_of(size)
    raise UploadAborted


@pytest.mark.parametrize("size", [0, 10 * C, 6 << 20])
def test_failed_put_leaves_nothing_behind(vault: EvidenceVault, size: int) -> None:
    with pytest.raises(UploadAborted):
        vault.put_item("pkg-1", "item-1", aborted_upload(size))
    assert list(vault.store.list()) == []


@pytest.mark.parametrize("depth", [0, 1, 4])
def test_read_ahead_depth_does_not_change_results(backend: Backend, keyring: Keyring,
                                                  depth: int) -> None:
    vault = EvidenceVault(backend.store, keyring, chunk_size=C, read_ahead_depth=depth)
    data = data_of(5 * C + 9)
    stored = vault.put_item("p", "i", pieces(data, [13]))
    assert read(vault, stored, "p", "i") == data
    assert read(vault, stored, "p", "i", 2 * C - 1, C + 2) == data[2 * C - 1:3 * C + 1]


def test_ids_are_validated(vault: EvidenceVault) -> None:
    with pytest.raises(ValueError):
        vault.put_item("", "item", [b"x"])
    with pytest.raises(ValueError):
        vault.put_item("pkg", "x" * (MAX_ID_BYTES + 1), [b"x"])
    assert list(vault.store.list()) == []


def test_unicode_ids(vault: EvidenceVault) -> None:
    stored = vault.put_item("paquet-é", "élément/1", [b"data"])
    assert read(vault, stored, "paquet-é", "élément/1") == b"data"


def test_chunk_size_bounds(backend: Backend, keyring: Keyring) -> None:
    with pytest.raises(ValueError):
        EvidenceVault(backend.store, keyring, chunk_size=8)
    with pytest.raises(ValueError):
        EvidenceVault(backend.store, keyring, chunk_size=(16 << 20) + 1)


def test_large_item_streams_in_default_chunks(backend: Backend, keyring: Keyring) -> None:
    """Default chunk size, an item spanning several S3 parts, read back in ranges."""
    vault = EvidenceVault(backend.store, keyring)
    block = os.urandom(1 << 20)
    stored = vault.put_item("p", "big", (block for _ in range(11)))
    assert stored.plaintext_size == 11 << 20
    assert stored.sha256 == hashlib.sha256(block * 11).hexdigest()
    assert vault.verify_item(stored, "p", "big") == stored.sha256
    assert (
        read(vault, stored, "p", "big", (5 << 20) - 3, 10)
        == (block * 6)[(5 << 20) - 3 : (5 << 20) + 7]
    )


def test_reserved_object_name(vault: EvidenceVault) -> None:
    name = vault.new_object_name()
    stored = vault.put_item("p", "i", [b"data"], object_name=name)
    assert stored.object_name == name and read(vault, stored, "p", "i") == b"data"
    vault.delete_object(name)
    assert list(vault.store.list()) == []
    vault.delete_object(name)  # idempotent
    for bad in ["items/../x", "other/ab/" + "0" * 32, name.upper()]:
        with pytest.raises(ValueError):
            vault.put_item("p", "i", [b"x"], object_name=bad)
        with pytest.raises(ValueError):
            vault.delete_object(bad)


def test_failed_put_under_reserved_name_leaves_nothing(vault: EvidenceVault) -> None:
    with pytest.raises(UploadAborted):
        vault.put_item("p", "i", aborted_upload(3 * C), object_name=vault.new_object_name())
    assert list(vault.store.list()) == []


def test_whole_read_asks_for_pieces_of_whole_sealed_chunks() -> None:
    from storage.evidence import _piece_size
    from storage.stream import TAG_LEN, ContentHeader

    for chunk_size in (16, 256 * 1024, 1 << 20, 3 << 20):
        piece = _piece_size(ContentHeader.generate(chunk_size))
        assert piece % (chunk_size + TAG_LEN) == 0
