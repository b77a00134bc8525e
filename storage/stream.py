"""The content format: a header, then the item's plaintext sealed in fixed-size AES-256-GCM chunks.

This module is pure code (no I/O) and is specified byte by byte in ``docs/encryption-format.md``::

    content    = header || chunk_0 || ... || chunk_{n-1}
    header     = "EVXC" || version (1) || suite (1) || chunk_size (u32 BE)
                 || content_id (16) || nonce_prefix (7)                        -- 33 bytes
    chunk_i    = AES-256-GCM(DEK, nonce_i, plaintext_i, chunk_ad)   (ciphertext || 16-byte tag)
    nonce_i    = nonce_prefix || i (u32 BE) || (0x01 if i == n-1 else 0x00)
    chunk_ad   = header || u16 BE len(package_id) || package_id || u16 BE len(item_id) || item_id

Every chunk but the last holds exactly ``chunk_size`` plaintext bytes; the last holds 0 to
``chunk_size`` (an empty item is one empty, final chunk). This is the STREAM construction of
Hoang, Reyhanitabar, Rogaway and Vizar (as in Tink's streaming AEAD): the counter detects
reordering, dropping and duplication, the last-chunk flag detects truncation and appending, the
header in the associated data authenticates the parameters, and the ids bind the ciphertext to
its item.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from storage.errors import AuthenticationFailed, MalformedObject, TrailingData, TruncatedObject

CONTENT_MAGIC = b"EVXC"
FORMAT_VERSION = 1
SUITE_AES256GCM_STREAM = 1  # AES-256-GCM, 7-byte prefix + u32 counter + last flag nonce
HEADER_LEN = 33
DEK_LEN = 32
CONTENT_ID_LEN = 16
NONCE_PREFIX_LEN = 7
TAG_LEN = 16
MIN_CHUNK_SIZE = 16
MAX_CHUNK_SIZE = 16 * 1024 * 1024  # memory bound: a reader holds one chunk at a time
DEFAULT_CHUNK_SIZE = 256 * 1024
MAX_CHUNKS = 2**32  # the counter is 32 bits
MAX_ID_BYTES = 16384  # package and item ids are opaque strings up to this size (UTF-8); an
# item name of 4096 bytes takes up to 12288 in its text form (every byte escaped as %XX)
_HEADER = struct.Struct(">4sBBI16s7s")


@dataclass(frozen=True)
class ItemBinding:
    """The identity a ciphertext is bound to: it only decrypts as this package's item."""

    package_id: str
    item_id: str

    def __post_init__(self) -> None:
        for what, value in (("package_id", self.package_id), ("item_id", self.item_id)):
            encoded = value.encode("utf-8")
            if not encoded or len(encoded) > MAX_ID_BYTES:
                raise ValueError(f"{what} must be 1..{MAX_ID_BYTES} UTF-8 bytes")

    def encode(self) -> bytes:
        """``u16 len || package_id || u16 len || item_id`` (UTF-8), as used in associated data."""
        package = self.package_id.encode("utf-8")
        item = self.item_id.encode("utf-8")
        return struct.pack(">H", len(package)) + package + struct.pack(">H", len(item)) + item


@dataclass(frozen=True)
class ContentHeader:
    """The 33-byte header of a content object (see the module docstring)."""

    chunk_size: int
    content_id: bytes
    nonce_prefix: bytes

    def __post_init__(self) -> None:
        if not MIN_CHUNK_SIZE <= self.chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk_size must be {MIN_CHUNK_SIZE}..{MAX_CHUNK_SIZE}")
        if len(self.content_id) != CONTENT_ID_LEN or len(self.nonce_prefix) != NONCE_PREFIX_LEN:
            raise ValueError("content_id must be 16 bytes and nonce_prefix 7 bytes")

    @classmethod
    def generate(cls, chunk_size: int = DEFAULT_CHUNK_SIZE) -> ContentHeader:
        """A header with a fresh random content id and nonce prefix.

        Raises:
            ValueError: ``chunk_size`` out of bounds.
        """
        return cls(chunk_size, os.urandom(CONTENT_ID_LEN), os.urandom(NONCE_PREFIX_LEN))

    @classmethod
    def from_bytes(cls, data: bytes) -> ContentHeader:
        """Parse a header.

        Raises:
            MalformedObject: wrong length, magic, version, suite or chunk size.
        """
        if len(data) != HEADER_LEN:
            raise MalformedObject("content header has the wrong length")
        magic, version, suite, chunk_size, content_id, prefix = _HEADER.unpack(data)
        if magic != CONTENT_MAGIC:
            raise MalformedObject("not an evidence content header (bad magic)")
        if version != FORMAT_VERSION or suite != SUITE_AES256GCM_STREAM:
            raise MalformedObject(f"unsupported content version {version} / suite {suite}")
        try:
            return cls(chunk_size, content_id, prefix)
        except ValueError as exc:
            raise MalformedObject(f"content header: {exc}") from None

    def to_bytes(self) -> bytes:
        """The header's 33 bytes."""
        return _HEADER.pack(CONTENT_MAGIC, FORMAT_VERSION, SUITE_AES256GCM_STREAM,
                            self.chunk_size, self.content_id, self.nonce_prefix)


@dataclass(frozen=True)
class ChunkLayout:
    """Where each chunk of an item of ``plaintext_size`` bytes lies in the content object."""

    chunk_size: int
    plaintext_size: int

    @property
    def chunk_count(self) -> int:
        """Number of chunks (at least one: an empty item has one empty final chunk)."""
        return max(1, -(-self.plaintext_size // self.chunk_size))

    @property
    def ciphertext_size(self) -> int:
        """Total size of the content object in bytes."""
        return HEADER_LEN + self.plaintext_size + self.chunk_count * TAG_LEN

    def chunk_offset(self, index: int) -> int:
        """Byte offset of chunk ``index`` in the content object."""
        return HEADER_LEN + index * (self.chunk_size + TAG_LEN)

    def chunk_plaintext_size(self, index: int) -> int:
        """Plaintext bytes in chunk ``index``."""
        if index < self.chunk_count - 1:
            return self.chunk_size
        return self.plaintext_size - (self.chunk_count - 1) * self.chunk_size


def chunk_nonce(nonce_prefix: bytes, index: int, last: bool) -> bytes:
    """The 12-byte nonce of chunk ``index``."""
    return nonce_prefix + struct.pack(">IB", index, 1 if last else 0)


@dataclass
class SealStats:
    """Filled in while sealing: the plaintext's size and SHA-256, computed in the same pass."""

    plaintext_size: int = 0
    ciphertext_size: int = 0
    _sha256: hashlib._Hash = field(default_factory=hashlib.sha256, repr=False)

    @property
    def sha256_hex(self) -> str:
        """Hex SHA-256 of the plaintext seen so far."""
        return self._sha256.hexdigest()


def seal_stream(dek: bytes, header: ContentHeader, binding: ItemBinding,
                plaintext: Iterable[bytes], stats: SealStats) -> Iterator[bytes]:
    """Yield the content object (header, then sealed chunks) for ``plaintext`` pieces of any size.

    Memory is bounded by one chunk plus the caller's piece size. ``stats`` is updated as the
    plaintext is consumed and is complete once the iterator is exhausted.

    Raises:
        ValueError: the item would exceed ``MAX_CHUNKS`` chunks, or a bad key length.
    """
    aead = AESGCM(dek)
    ad = header.to_bytes() + binding.encode()
    prefix = header.nonce_prefix
    size = header.chunk_size
    head = header.to_bytes()
    stats.ciphertext_size += len(head)
    yield head
    pending = bytearray()
    index = 0
    for piece in plaintext:
        if not piece:
            continue
        stats._sha256.update(piece)
        stats.plaintext_size += len(piece)
        view = memoryview(piece)
        if pending:  # top up the partial chunk first
            take = min(len(view), size - len(pending))
            pending += view[:take]
            view = view[take:]
            if not view:
                continue  # pending may be the last chunk: only the end of input decides
            sealed = _seal_one(aead, prefix, index, False, pending, ad)
            pending = bytearray()
            index += 1
            stats.ciphertext_size += len(sealed)
            yield sealed
        # whole chunks straight from the caller's buffer (no copy); keep at least one byte
        # back, because only the end of input decides which chunk is the last
        while len(view) > size:
            sealed = _seal_one(aead, prefix, index, False, view[:size], ad)
            view = view[size:]
            index += 1
            stats.ciphertext_size += len(sealed)
            yield sealed
        pending += view
    sealed = _seal_one(aead, prefix, index, True, pending, ad)
    stats.ciphertext_size += len(sealed)
    yield sealed


def _seal_one(aead: AESGCM, prefix: bytes, index: int, last: bool, plaintext: bytes | bytearray
              | memoryview, ad: bytes) -> bytes:
    if index >= MAX_CHUNKS:
        raise ValueError("item too large for the 32-bit chunk counter")
    return aead.encrypt(chunk_nonce(prefix, index, last), plaintext, ad)


class _ExactReader:
    """Reads exact byte counts from an iterator of arbitrarily sized pieces, without copying
    when the bytes asked for lie within one piece (the common case: stores read 1 MiB)."""

    def __init__(self, pieces: Iterable[bytes]) -> None:
        self._pieces = iter(pieces)
        self._current = memoryview(b"")

    def read(self, n: int) -> bytes | memoryview:
        """``n`` bytes, or fewer only at the end of the stream."""
        if len(self._current) >= n:
            out = self._current[:n]
            self._current = self._current[n:]
            return out
        parts = [self._current]
        have = len(self._current)
        self._current = memoryview(b"")
        while have < n:
            try:
                piece = memoryview(next(self._pieces))
            except StopIteration:
                break
            take = n - have
            if have == 0 and len(piece) >= take:
                self._current = piece[take:]
                return piece[:take]
            parts.append(piece[:take])
            self._current = piece[take:]
            have += len(parts[-1])
        return b"".join(parts)  # one copy, only for chunks that straddle two pieces

    def at_end(self) -> bool:
        """Whether no byte is left."""
        return len(self.read(1)) == 0


def open_chunks(dek: bytes, header: ContentHeader, binding: ItemBinding, layout: ChunkLayout,
                ciphertext: Iterable[bytes], first_chunk: int, last_chunk: int,
                *, expect_end: bool = False) -> Iterator[bytes]:
    """Authenticate and decrypt chunks ``first_chunk..last_chunk`` (inclusive), yielding each
    chunk's plaintext only after its tag has been verified.

    ``ciphertext`` must start at ``layout.chunk_offset(first_chunk)``. With ``expect_end`` the
    stream must end right after ``last_chunk`` (which must then be the item's final chunk).

    Raises:
        AuthenticationFailed: a chunk does not authenticate in its position for this item.
        TruncatedObject: the stream ended before ``last_chunk`` was complete.
        TrailingData: ``expect_end`` and bytes follow the last chunk.
        ValueError: chunk indices outside the layout.
    """
    if not 0 <= first_chunk <= last_chunk < layout.chunk_count:
        raise ValueError("chunk range outside the item")
    aead = AESGCM(dek)
    ad = header.to_bytes() + binding.encode()
    reader = _ExactReader(ciphertext)
    final = layout.chunk_count - 1
    prefix = header.nonce_prefix
    sealed_size = header.chunk_size + TAG_LEN
    # per-chunk work is kept to the decryption itself: on a page-cache read the rest of this
    # loop is what separates us from raw read speed
    for index in range(first_chunk, last_chunk + 1):
        last = index == final
        want = layout.chunk_plaintext_size(index) + TAG_LEN if last else sealed_size
        sealed = reader.read(want)
        if len(sealed) < want:
            raise TruncatedObject(f"content ends inside chunk {index} of {layout.chunk_count}")
        try:
            plaintext = aead.decrypt(chunk_nonce(prefix, index, last), sealed, ad)
        except InvalidTag:
            raise AuthenticationFailed(f"chunk {index} does not authenticate") from None
        yield plaintext
    if expect_end and not reader.at_end():
        raise TrailingData("bytes follow the final chunk")
