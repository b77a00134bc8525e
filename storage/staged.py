"""Resumable writing of an item: sealed segment by segment, each segment durable on its own.

An upload that may be interrupted cannot stream into one atomic ``put``: what was received before
the break would be lost. Instead the item's content (the same format as ``storage.stream``: header,
then STREAM chunks) is written as a sequence of *segment* objects::

    items/<xx>/<32 hex>.keys              the key envelope, written when the upload begins
    staging/<32 hex>/<first chunk, 10 digits>-<tag, 8 hex>
                                          segment: whole sealed chunks (the one of chunk 0
                                          starts with the 33-byte content header)

Because the total plaintext size is declared when the upload begins, the envelope (which records
it) is final from the start and the last chunk is known by its index, so every chunk is sealed
exactly as a one-pass write would seal it. Each segment is stored with the store's atomic ``put``;
what survives a crash is therefore a prefix of whole, authentic chunks. When the last chunk is
stored the segments are joined, in order, into the content object ``items/<xx>/<32 hex>`` and then
removed: a completed item is byte for byte what :meth:`EvidenceVault.put_item` writes, so readers
do not know how it was uploaded.

Segment names carry a random tag, so two writers racing on the same upload (a client reconnecting
while the server still serves its old request) never overwrite each other's segments; the caller
records which segments count (the service keeps them in its database, in order).

Nothing here trusts a stored segment: :meth:`StagedItems.received_digest` decrypts and
authenticates every stored chunk to rebuild the plaintext SHA-256 when an upload resumes.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from storage.envelope import (
    WRAP_KEK_AES256GCM,
    KeyEnvelope,
    binding_digest,
    unwrap_dek,
    wrap_dek,
)
from storage.errors import AuthenticationFailed, TruncatedObject
from storage.evidence import ENVELOPE_SUFFIX, EvidenceVault, StoredItem, _checked_name, _piece_size
from storage.objectstore import ObjectStore
from storage.pipeline import read_ahead
from storage.stream import (
    DEK_LEN,
    HEADER_LEN,
    MAX_CHUNKS,
    ChunkLayout,
    ContentHeader,
    ItemBinding,
    chunk_nonce,
    open_chunks,
)

STAGING_PREFIX = "staging/"
_SEGMENT_NAME = re.compile(r"staging/[0-9a-f]{32}/[0-9]{10}-[0-9a-f]{8}")


def staging_prefix(object_name: str) -> str:
    """Where the segments of the item stored as ``object_name`` live.

    Raises:
        ValueError: not an item object name.
    """
    return f"{STAGING_PREFIX}{_checked_name(object_name).rsplit('/', 1)[1]}/"


def object_name_of_segment(segment_name: str) -> str | None:
    """The 32-hex stem of the item a segment belongs to, or None for a foreign name."""
    if _SEGMENT_NAME.fullmatch(segment_name) is None:
        return None
    return segment_name.split("/")[1]


def remove_staged(store: ObjectStore, object_name: str) -> int:
    """Delete every staged segment of the item ``object_name``; return how many.

    Raises:
        BackendUnavailable: the store failed.
        ValueError: not an item object name.
    """
    removed = 0
    for name in list(store.list(staging_prefix(object_name))):
        store.delete(name)
        removed += 1
    return removed


class BodyReader:
    """Exact-size reads over an iterator of byte blocks of any size.

    An exception raised by the source (a client that went away) is kept in ``error`` instead of
    being raised: the reader then behaves as if the input ended, so whole chunks received before
    the break are still sealed and stored. The caller re-raises ``error`` once they are durable.
    """

    def __init__(self, blocks: Iterable[bytes]) -> None:
        self._blocks = iter(blocks)
        self._buffer = bytearray()
        self.error: BaseException | None = None
        self.ended = False
        self.received = 0

    def read(self, n: int) -> bytes:
        """``n`` bytes, or fewer only when the input ended or broke."""
        while len(self._buffer) < n and not self.ended:
            try:
                block = next(self._blocks)
            except StopIteration:
                self.ended = True
                break
            except Exception as exc:  # noqa: BLE001 - kept for the caller, see the class doc
                self.error = exc
                self.ended = True
                break
            self.received += len(block)
            self._buffer += block
        out = bytes(self._buffer[:n])
        del self._buffer[:n]
        return out

    def unread(self, data: bytes) -> None:
        """Put ``data`` back in front (a partial chunk that is not sealed)."""
        self._buffer[:0] = data

    @property
    def buffered(self) -> int:
        """Bytes received but not consumed (a partial chunk dropped at the end of a request)."""
        return len(self._buffer)


@dataclass(frozen=True)
class StageKey:
    """What sealing the next segment needs: opened from the upload's key envelope."""

    dek: bytes
    header: ContentHeader
    layout: ChunkLayout
    binding: ItemBinding
    key_ids: tuple[str, ...]  # the KEKs its envelope names


@dataclass(frozen=True)
class SegmentWritten:
    """A segment stored durably: its name and the chunks it holds."""

    name: str
    first_chunk: int
    chunk_count: int
    plaintext_end: int  # plaintext offset right after its last chunk


class StagedItems:
    """Resumable writes of encrypted items into the vault's store (see the module docstring)."""

    def __init__(self, vault: EvidenceVault, *, segment_bytes: int) -> None:
        """Segments hold about ``segment_bytes`` of plaintext (at least one chunk).

        Raises:
            ValueError: ``segment_bytes`` below 1.
        """
        if segment_bytes < 1:
            raise ValueError("segment_bytes must be >= 1")
        self.vault = vault
        self.store = vault.store
        self.chunks_per_segment = max(1, segment_bytes // vault.chunk_size)

    def begin(self, package_id: str, item_id: str, plaintext_size: int) -> str:
        """Start an item of exactly ``plaintext_size`` bytes: write its key envelope and return
        its object name (record it before anything else is written, so it can be swept).

        Raises:
            BackendUnavailable: the store failed.
            ValueError: bad ids, a negative size, or an item too large for the format.
        """
        if plaintext_size < 0:
            raise ValueError("plaintext_size must be >= 0")
        binding = ItemBinding(package_id, item_id)
        header = ContentHeader.generate(self.vault.chunk_size)
        if ChunkLayout(header.chunk_size, plaintext_size).chunk_count > MAX_CHUNKS:
            raise ValueError("item too large for the 32-bit chunk counter")
        name = self.vault.new_object_name()
        dek = os.urandom(DEK_LEN)
        key_id, kek = self.vault.keyring.active_key()
        envelope = KeyEnvelope(header.to_bytes(), plaintext_size, binding_digest(binding), ())
        envelope = envelope.replace_wraps((wrap_dek(dek, key_id, kek, envelope),))
        self.store.put(name + ENVELOPE_SUFFIX, [envelope.to_bytes()])
        return name

    def open(self, object_name: str, package_id: str, item_id: str) -> StageKey:
        """Open the envelope of a started upload.

        Raises:
            ObjectNotFound: the envelope is missing.
            UnknownKey, KeyUnwrapFailed, MalformedObject, AuthenticationFailed: it cannot be
                opened for this item.
            BackendUnavailable: the store failed.
        """
        binding = ItemBinding(package_id, item_id)
        envelope = KeyEnvelope.from_bytes(
            self.vault._read_small(_checked_name(object_name) + ENVELOPE_SUFFIX))
        dek, header = unwrap_dek(envelope, binding, self.vault.keyring.find)
        key_ids = tuple(w.key_id for w in envelope.wraps if w.wrap_type == WRAP_KEK_AES256GCM)
        return StageKey(dek, header, ChunkLayout(header.chunk_size, envelope.plaintext_size),
                        binding, key_ids)

    def write_segment(self, key: StageKey, object_name: str, first_chunk: int,
                      body: BodyReader, digest: Any) -> SegmentWritten | None:
        """Seal up to one segment of whole chunks from ``body``, starting at ``first_chunk``,
        and store it; ``digest`` is updated with their plaintext. Returns None (and stores
        nothing) when ``body`` does not hold one whole chunk any more.

        Raises:
            BackendUnavailable: the store failed (nothing of this segment counts).
            ValueError: ``first_chunk`` outside the item.
        """
        layout = key.layout
        if not 0 <= first_chunk < layout.chunk_count:
            raise ValueError("first_chunk outside the item")
        first = body.read(layout.chunk_plaintext_size(first_chunk))
        if len(first) < layout.chunk_plaintext_size(first_chunk):
            body.unread(first)  # not a whole chunk: nothing to store
            return None
        stop = min(layout.chunk_count, first_chunk + self.chunks_per_segment)
        done = [first_chunk]
        name = f"{staging_prefix(object_name)}{first_chunk:010d}-{secrets.token_hex(4)}"
        aead = AESGCM(key.dek)
        head = key.header.to_bytes()
        ad = head + key.binding.encode()
        final = layout.chunk_count - 1

        def sealed() -> Iterator[bytes]:
            if first_chunk == 0:
                yield head
            index, data = first_chunk, first
            while True:
                digest.update(data)
                yield aead.encrypt(chunk_nonce(key.header.nonce_prefix, index, index == final),
                                   data, ad)
                index += 1
                done[0] = index
                if index >= stop:
                    return
                want = layout.chunk_plaintext_size(index)
                data = body.read(want)
                if len(data) < want:
                    body.unread(data)
                    return

        self.store.put(name, read_ahead(sealed(), self.vault.read_ahead_depth))
        end = done[0]
        plaintext_end = min(layout.plaintext_size, end * layout.chunk_size)
        return SegmentWritten(name, first_chunk, end - first_chunk, plaintext_end)

    def received_digest(self, key: StageKey, segments: list[str], chunk_count: int) -> Any:
        """Rebuild the SHA-256 of the plaintext stored so far (``chunk_count`` chunks in
        ``segments``, in order) by reading, authenticating and decrypting every chunk.

        Raises:
            AuthenticationFailed, TruncatedObject, TrailingData: a stored segment is not what
                was written (tampered, missing bytes, or too long).
            ObjectNotFound, BackendUnavailable: a segment cannot be read.
        """
        digest = hashlib.sha256()
        if chunk_count == 0:
            return digest
        pieces = read_ahead(self._joined(segments), self.vault.read_ahead_depth)
        reader = _Prefix(pieces, HEADER_LEN)
        if reader.head != key.header.to_bytes():
            raise AuthenticationFailed("staged content header differs from its envelope's")
        last = chunk_count - 1
        for plaintext in open_chunks(key.dek, key.header, key.binding, key.layout, reader,
                                     0, last, expect_end=True):
            digest.update(plaintext)
        return digest

    def assemble(self, key: StageKey, object_name: str, segments: list[str]) -> StoredItem:
        """Join the segments of a complete upload into its content object (atomically, by the
        store's ``put``) and check its size; the returned record has no SHA-256 yet (the caller
        computed it while receiving). The segments stay until :meth:`remove_segments`.

        Raises:
            TruncatedObject: the segments do not hold the whole item.
            BackendUnavailable: the store failed.
        """
        name = _checked_name(object_name)
        size = self.store.put(name, read_ahead(self._joined(segments),
                                               self.vault.read_ahead_depth))
        if size != key.layout.ciphertext_size:
            self.store.delete(name)
            raise TruncatedObject(f"staged content is {size} bytes, expected "
                                  f"{key.layout.ciphertext_size}")
        return StoredItem(name, key.layout.plaintext_size, "", size, key.key_ids)

    def remove_segments(self, object_name: str) -> int:
        """Delete every segment of ``object_name`` (recorded or not); return how many.

        Raises:
            BackendUnavailable: the store failed.
        """
        return remove_staged(self.store, object_name)

    def discard(self, object_name: str) -> None:
        """Remove everything of an upload: segments, envelope, content (if assembled).

        Raises:
            BackendUnavailable: the store failed.
        """
        self.remove_segments(object_name)
        self.vault.delete_object(object_name)

    def _joined(self, segments: list[str]) -> Iterator[bytes]:
        piece = _piece_size(ContentHeader(self.vault.chunk_size, bytes(16), bytes(7)))
        for segment in segments:
            yield from self.store.get(segment, piece_size=piece)


class _Prefix:
    """Splits the first ``n`` bytes off a stream of pieces; iterating yields the rest."""

    def __init__(self, pieces: Iterator[bytes], n: int) -> None:
        self._pieces = pieces
        head = bytearray()
        self._rest = b""
        while len(head) < n:
            try:
                piece = next(pieces)
            except StopIteration:
                raise TruncatedObject("staged content ends inside its header") from None
            take = n - len(head)
            head += piece[:take]
            self._rest = piece[take:]
        self.head = bytes(head)

    def __iter__(self) -> Iterator[bytes]:
        if self._rest:
            yield self._rest
        yield from self._pieces

