"""``EvidenceVault``: store, read, verify, delete and rewrap encrypted evidence items.

This is the recipe the HTTP service calls. Each item becomes two objects in an ``ObjectStore``:

* ``items/<xx>/<32 hex>``       the content: header and AES-256-GCM chunks (``storage.stream``)
* ``items/<xx>/<32 hex>.keys``  its key envelope: the data key wrapped by KEKs
                                (``storage.envelope``)

Object names are random, never derived from ids or file names. The database record
(``StoredItem``) says where an item lives; the envelope authenticates its size and binding.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from storage.envelope import (
    MAX_ENVELOPE_BYTES,
    WRAP_KEK_AES256GCM,
    KeyEnvelope,
    binding_digest,
    unwrap_dek,
    wrap_dek,
)
from storage.errors import (
    AuthenticationFailed,
    IntegrityError,
    MalformedObject,
    ObjectNotFound,
    StorageError,
    TruncatedObject,
)
from storage.keyring import Keyring
from storage.objectstore import ObjectStore, validate_range
from storage.pipeline import read_ahead
from storage.stream import (
    DEFAULT_CHUNK_SIZE,
    DEK_LEN,
    HEADER_LEN,
    TAG_LEN,
    ChunkLayout,
    ContentHeader,
    ItemBinding,
    SealStats,
    open_chunks,
    seal_stream,
)

ITEM_PREFIX = "items/"
ENVELOPE_SUFFIX = ".keys"
_CONTENT_NAME = re.compile(r"items/[0-9a-f]{2}/[0-9a-f]{32}")
DEFAULT_READ_AHEAD = 4  # pieces produced ahead by the background thread (memory: 4 pieces)
# Bytes asked of the store per piece when reading content, rounded to whole sealed chunks so no
# chunk straddles two pieces (that would cost a join, i.e. a copy of the chunk).
READ_PIECE_TARGET = 1 << 20


@dataclass(frozen=True)
class StoredItem:
    """Where and what an item is, as the service records it after ``put_item``.

    ``key_ids`` are the KEKs that wrapped the data key at write time; rotation changes the
    envelope, not this record, and reading does not depend on it.
    """

    object_name: str
    plaintext_size: int
    sha256: str
    ciphertext_size: int
    key_ids: tuple[str, ...]

    @property
    def envelope_name(self) -> str:
        """Name of the key envelope object beside the content."""
        return self.object_name + ENVELOPE_SUFFIX


@dataclass(frozen=True)
class RewrapReport:
    """What ``rewrap_all`` did: envelopes examined, rewrapped, already under the active key, and
    the names of those it could not open (left unchanged)."""

    examined: int
    rewrapped: int
    already_current: int
    failed: tuple[str, ...]


class EvidenceVault:
    """Encrypted evidence items in one object store under one keyring."""

    def __init__(self, store: ObjectStore, keyring: Keyring, *,
                 chunk_size: int = DEFAULT_CHUNK_SIZE,
                 read_ahead_depth: int = DEFAULT_READ_AHEAD) -> None:
        """Seal new items in ``chunk_size``-byte chunks; overlap crypto with I/O using
        ``read_ahead_depth`` pieces of buffering (0 keeps everything on the calling thread).

        Raises:
            ValueError: chunk size out of bounds or negative depth.
        """
        ContentHeader(chunk_size, bytes(16), bytes(7))  # validates the bounds
        if read_ahead_depth < 0:
            raise ValueError("read_ahead_depth must be >= 0")
        self.store = store
        self.keyring = keyring
        self.chunk_size = chunk_size
        self.read_ahead_depth = read_ahead_depth

    def new_object_name(self) -> str:
        """A fresh random object name for :meth:`put_item` -- for callers that record the name
        (e.g. as pending) before the upload starts, so a crash mid-upload can be swept."""
        return f"{ITEM_PREFIX}{secrets.token_hex(1)}/{secrets.token_hex(16)}"

    def delete_object(self, object_name: str) -> None:
        """Delete an item's objects (key envelope first, then content) by object name; missing
        objects are not an error.

        Raises:
            BackendUnavailable: the store failed.
            ValueError: not an item object name.
        """
        name = _checked_name(object_name)
        self.store.delete(name + ENVELOPE_SUFFIX)
        self.store.delete(name)

    def put_item(self, package_id: str, item_id: str, chunks: Iterable[bytes], *,
                 object_name: str | None = None) -> StoredItem:
        """Encrypt and store the plaintext ``chunks`` as an item of ``package_id``.

        The SHA-256 and size are computed in the same pass as encryption. On any failure both
        objects are removed (best effort) and the exception propagates. With read-ahead on,
        ``chunks`` is iterated on a background thread.

        Raises:
            BackendUnavailable: the store failed.
            ValueError: empty or oversized ids, an ``object_name`` not made by
                ``new_object_name``, or an item too large for the format.
            Exception: whatever ``chunks`` raises, unchanged.
        """
        binding = ItemBinding(package_id, item_id)
        name = self.new_object_name() if object_name is None else _checked_name(object_name)
        dek = os.urandom(DEK_LEN)
        header = ContentHeader.generate(self.chunk_size)
        stats = SealStats()
        key_id, kek = self.keyring.active_key()
        try:
            sealed = seal_stream(dek, header, binding, chunks, stats)
            ciphertext_size = self.store.put(name, read_ahead(sealed, self.read_ahead_depth))
            envelope = KeyEnvelope(header.to_bytes(), stats.plaintext_size,
                                   binding_digest(binding), ())
            envelope = envelope.replace_wraps((wrap_dek(dek, key_id, kek, envelope),))
            self.store.put(name + ENVELOPE_SUFFIX, [envelope.to_bytes()])
        except BaseException:
            self._discard(name)
            raise
        return StoredItem(name, stats.plaintext_size, stats.sha256_hex, ciphertext_size,
                          (key_id,))

    def open_item(self, stored: StoredItem, package_id: str, item_id: str,
                  offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Decrypt ``length`` plaintext bytes (to the end if None) from ``offset``.

        The key envelope is read and opened by this call, so key and lookup errors are raised
        before any byte is returned; chunk errors are raised while iterating, and no chunk is
        yielded before it has been authenticated. A read of the whole item (offset 0, length
        None) also checks the content header and that nothing follows the final chunk.

        Raises:
            ObjectNotFound: the content or its envelope is missing.
            UnknownKey, KeyUnwrapFailed, MalformedObject: the envelope cannot be opened.
            AuthenticationFailed: tampered or misplaced content, or the record's size disagrees.
            TruncatedObject, TrailingData: while iterating, the content is cut short or too long.
            BackendUnavailable: the store failed.
            ValueError: negative offset or length, or offset past the end of the item.
        """
        validate_range(offset, length)
        binding = ItemBinding(package_id, item_id)
        dek, header, size = self._open_envelope(stored, binding)
        if size != stored.plaintext_size:
            raise AuthenticationFailed("item size does not match its record")
        if offset > size:
            raise ValueError(f"offset {offset} is past the end of the item ({size} bytes)")
        end = size if length is None else min(size, offset + length)
        layout = ChunkLayout(header.chunk_size, size)
        if offset == 0 and end == size:
            return self._read_whole(stored.object_name, dek, header, binding, layout)
        if offset == end:
            return iter(())
        first, last = offset // header.chunk_size, (end - 1) // header.chunk_size
        start = layout.chunk_offset(first)
        stop = layout.chunk_offset(last) + layout.chunk_plaintext_size(last) + TAG_LEN
        ciphertext = read_ahead(self.store.get(stored.object_name, start, stop - start,
                                               piece_size=_piece_size(header)),
                                self.read_ahead_depth)
        plaintext = open_chunks(dek, header, binding, layout, ciphertext, first, last)
        return _trim(plaintext, offset - first * header.chunk_size, end - offset)

    def verify_item(self, stored: StoredItem, package_id: str, item_id: str) -> str:
        """Decrypt the whole item, check it against its record, and return its SHA-256 (hex).

        Raises:
            AuthenticationFailed: the digest or size disagrees with the record, or as
                ``open_item``, whose other errors it also raises.
        """
        digest = hashlib.sha256()
        for piece in self.open_item(stored, package_id, item_id):
            digest.update(piece)
        actual = digest.hexdigest()
        if not hmac.compare_digest(actual, stored.sha256):
            raise AuthenticationFailed("plaintext digest does not match its record")
        return actual

    def delete_item(self, stored: StoredItem) -> None:
        """Delete the item: its key envelope first (so the content is unreadable even if the
        second delete fails), then its content. Deleting a missing item is not an error.

        Raises:
            BackendUnavailable: the store failed.
        """
        self.store.delete(stored.envelope_name)
        self.store.delete(stored.object_name)

    def rewrap_all(self) -> RewrapReport:
        """Rewrap every item's data key under the keyring's active KEK, leaving content objects
        untouched. Recipient (non-KEK) wraps are kept; old KEK wraps are dropped. An envelope
        that cannot be opened is left as is and reported in ``failed``.

        Raises:
            BackendUnavailable: the store failed (rewrapping stops; rerunning is safe).
        """
        examined = rewrapped = current = 0
        failed: list[str] = []
        active_id, kek = self.keyring.active_key()
        for name in self.store.list(ITEM_PREFIX):
            if not name.endswith(ENVELOPE_SUFFIX):
                continue
            try:
                data = self._read_small(name)
            except ObjectNotFound:
                continue  # deleted since it was listed
            examined += 1
            try:
                envelope = KeyEnvelope.from_bytes(data)
                kek_ids = [w.key_id for w in envelope.wraps if w.wrap_type == WRAP_KEK_AES256GCM]
                if kek_ids == [active_id]:
                    current += 1
                    continue
                dek, _ = unwrap_dek(envelope, None, self.keyring.find)
            except IntegrityError:
                failed.append(name)
                continue
            others = tuple(w for w in envelope.wraps if w.wrap_type != WRAP_KEK_AES256GCM)
            rewrapped_envelope = envelope.replace_wraps(
                (wrap_dek(dek, active_id, kek, envelope), *others))
            self.store.put(name, [rewrapped_envelope.to_bytes()])
            rewrapped += 1
        return RewrapReport(examined, rewrapped, current, tuple(failed))

    def _open_envelope(self, stored: StoredItem,
                       binding: ItemBinding) -> tuple[bytes, ContentHeader, int]:
        envelope = KeyEnvelope.from_bytes(self._read_small(stored.envelope_name))
        dek, header = unwrap_dek(envelope, binding, self.keyring.find)
        return dek, header, envelope.plaintext_size

    def _read_small(self, name: str) -> bytes:
        data = bytearray()
        for piece in self.store.get(name, 0, MAX_ENVELOPE_BYTES + 1):
            data += piece
        if len(data) > MAX_ENVELOPE_BYTES:
            raise MalformedObject("key envelope is too large")
        return bytes(data)

    def _read_whole(self, name: str, dek: bytes, header: ContentHeader, binding: ItemBinding,
                    layout: ChunkLayout) -> Iterator[bytes]:
        # The header is read on its own so that the chunks after it start a piece: with pieces
        # of whole sealed chunks, every chunk is decrypted straight from the piece it lies in.
        head = b"".join(self.store.get(name, 0, HEADER_LEN))
        if len(head) < HEADER_LEN:
            raise TruncatedObject("content ends inside its header")
        if not hmac.compare_digest(head, header.to_bytes()):
            raise AuthenticationFailed("content header differs from the one its envelope "
                                       "vouches for")
        rest = read_ahead(self.store.get(name, HEADER_LEN, piece_size=_piece_size(header)),
                          self.read_ahead_depth)
        return open_chunks(dek, header, binding, layout, rest, 0, layout.chunk_count - 1,
                           expect_end=True)

    def _discard(self, name: str) -> None:
        for victim in (name + ENVELOPE_SUFFIX, name):
            # best effort: the orphan sweeper removes what is left
            with contextlib.suppress(StorageError, ValueError):
                self.store.delete(victim)


def _checked_name(object_name: str) -> str:
    if _CONTENT_NAME.fullmatch(object_name) is None:
        raise ValueError(f"not a content object name: {object_name!r}")
    return object_name


def _piece_size(header: ContentHeader) -> int:
    """Bytes per store read for this content: whole sealed chunks, about ``READ_PIECE_TARGET``."""
    sealed = header.chunk_size + TAG_LEN
    return sealed * max(1, READ_PIECE_TARGET // sealed)


def _trim(plaintext: Iterator[bytes], skip: int, count: int) -> Iterator[bytes]:
    """Drop ``skip`` leading bytes, then yield ``count`` bytes."""
    for piece in plaintext:
        if skip:
            if skip >= len(piece):
                skip -= len(piece)
                continue
            piece, skip = piece[skip:], 0
        if len(piece) >= count:
            if count:
                yield piece[:count]
            return
        count -= len(piece)
        yield piece
