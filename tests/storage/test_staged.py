"""Resumable writes (storage/staged.py): an item written segment by segment across broken
requests reads back exactly as one written in one pass; stored segments are never trusted."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import pytest

from storage.errors import AuthenticationFailed
from storage.evidence import ENVELOPE_SUFFIX, EvidenceVault
from storage.staged import BodyReader, StagedItems, staging_prefix
from tests.storage.conftest import TEST_CHUNK_SIZE, Backend, pieces


class ClientGone(Exception):
    """Stands for the server seeing the client disconnect."""


def _broken(data: bytes, at: int) -> Iterator[bytes]:
    yield from pieces(data[:at], [37, 100])
    raise ClientGone()


def _upload_in_requests(staged: StagedItems, name: str, data: bytes,
                        breaks: list[int]) -> tuple[list[str], int, str]:
    """Send ``data`` in requests broken at each offset of ``breaks``, resuming each time from
    the durable point with a rebuilt digest; return segments, chunks and the digest."""
    segments: list[str] = []
    chunks = 0
    offset = 0
    for cut in [*breaks, None]:
        key = staged.open(name, "pkg-1", "disk.img")
        digest = staged.received_digest(key, segments, chunks)
        body = BodyReader(_broken(data[offset:], cut - offset) if cut is not None
                          else pieces(data[offset:], [1000]))
        while chunks < key.layout.chunk_count:
            written = staged.write_segment(key, name, chunks, body, digest)
            if written is None:
                break
            segments.append(written.name)
            chunks += written.chunk_count
            offset = written.plaintext_end
        if cut is not None:
            assert isinstance(body.error, ClientGone)
            assert offset == cut - cut % TEST_CHUNK_SIZE  # everything but a partial chunk kept
    return segments, chunks, digest.hexdigest()


@pytest.mark.parametrize("size", [1, TEST_CHUNK_SIZE, 10 * TEST_CHUNK_SIZE + 5])
def test_resumed_item_reads_back_exactly(vault: EvidenceVault, backend: Backend,
                                         size: int) -> None:
    data = os.urandom(size)
    staged = StagedItems(vault, segment_bytes=3 * TEST_CHUNK_SIZE)
    name = staged.begin("pkg-1", "disk.img", size)
    breaks = sorted({min(size - 1, b) for b in (size // 3, size // 3 + 1, 2 * size // 3)})
    segments, chunks, digest = _upload_in_requests(staged, name, data, breaks)
    assert digest == hashlib.sha256(data).hexdigest()
    key = staged.open(name, "pkg-1", "disk.img")
    assert chunks == key.layout.chunk_count
    stored = staged.assemble(key, name, segments)
    assert staged.remove_segments(name) >= len(segments)
    assert list(backend.store.list(staging_prefix(name))) == []
    assert stored.ciphertext_size == backend.store.size(name)
    from dataclasses import replace
    stored = replace(stored, sha256=digest)
    assert b"".join(vault.open_item(stored, "pkg-1", "disk.img")) == data
    assert vault.verify_item(stored, "pkg-1", "disk.img") == digest


def test_tampered_segment_is_refused_on_resume(fs_vault: EvidenceVault,
                                               fs_backend: Backend) -> None:
    data = os.urandom(8 * TEST_CHUNK_SIZE)
    staged = StagedItems(fs_vault, segment_bytes=2 * TEST_CHUNK_SIZE)
    name = staged.begin("pkg-1", "disk.img", len(data))
    segments, chunks, _ = _upload_in_requests(staged, name, data[:5 * TEST_CHUNK_SIZE + 3] +
                                              data[5 * TEST_CHUNK_SIZE + 3:],
                                              [5 * TEST_CHUNK_SIZE + 3])
    victim = segments[1]
    raw = bytearray(fs_backend.tamper.read(victim))
    raw[5] ^= 1
    fs_backend.tamper.write(victim, bytes(raw))
    key = staged.open(name, "pkg-1", "disk.img")
    with pytest.raises(AuthenticationFailed):
        staged.received_digest(key, segments, chunks)
    # the envelope of another item does not open for this one
    with pytest.raises(AuthenticationFailed):
        staged.open(name, "pkg-1", "other.img")


def test_discard_removes_everything(fs_vault: EvidenceVault, fs_backend: Backend) -> None:
    staged = StagedItems(fs_vault, segment_bytes=TEST_CHUNK_SIZE)
    name = staged.begin("pkg-1", "x", 5 * TEST_CHUNK_SIZE)
    key = staged.open(name, "pkg-1", "x")
    written = staged.write_segment(key, name, 0, BodyReader([b"a" * 200]),
                                   hashlib.sha256())
    assert written is not None and written.chunk_count == 1
    assert set(fs_backend.store.list("")) == {name + ENVELOPE_SUFFIX, written.name}
    staged.discard(name)
    assert list(fs_backend.store.list("")) == []
