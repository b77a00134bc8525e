"""HTTP fields of evidence transfer: RFC 9530 digests and RFC 9110 byte ranges."""

from __future__ import annotations

import base64
import binascii
import re

from service.packages.errors import InvalidRequest, RangeNotSatisfiable

MAX_DIGEST_HEADER_BYTES = 1024  # a sha-256 and a sha-512 fit many times over

_DIGEST_MEMBER = re.compile(r"\s*([a-z][a-z0-9_\-*.]*)\s*=\s*:([A-Za-z0-9+/=]*):\s*")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def parse_content_digest(value: str) -> bytes:
    """The sha-256 digest from an RFC 9530 ``Content-Digest`` structured-field dictionary.

    Other algorithms may be present and are ignored; sha-256 must be among them.

    Raises:
        InvalidRequest: malformed field, no sha-256 member, or a digest that is not 32 bytes.
    """
    if len(value) > MAX_DIGEST_HEADER_BYTES:
        raise InvalidRequest("Content-Digest header is too long")
    found: bytes | None = None
    for member in value.split(","):
        match = _DIGEST_MEMBER.fullmatch(member)
        if match is None:
            raise InvalidRequest("Content-Digest must look like sha-256=:<base64>: (RFC 9530)")
        if match.group(1) == "sha-256":
            try:
                found = base64.b64decode(match.group(2), validate=True)
            except binascii.Error as exc:
                raise InvalidRequest("Content-Digest sha-256 value is not base64") from exc
    if found is None:
        raise InvalidRequest("Content-Digest must include a sha-256 member")
    if len(found) != 32:
        raise InvalidRequest("Content-Digest sha-256 value must be 32 bytes")
    return found


def format_sha256_digest(sha256_hex: str) -> str:
    """``sha-256=:<base64>:`` for a hex digest (``Repr-Digest`` / ``Content-Digest``)."""
    return f"sha-256=:{base64.b64encode(bytes.fromhex(sha256_hex)).decode()}:"


def parse_range(value: str | None, size: int) -> tuple[int, int] | None:
    """The single byte range ``[start, end)`` a ``Range`` header asks for, or None for all.

    Multiple ranges and other units are ignored (served whole), as RFC 9110 allows.

    Raises:
        RangeNotSatisfiable: a syntactically valid range that selects no byte of the item.
    """
    if value is None:
        return None
    match = _RANGE.fullmatch(value.strip())
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if first == "" and last == "":
        return None
    if first == "":  # suffix range: the last N bytes
        suffix = int(last)
        if suffix == 0:
            raise RangeNotSatisfiable("empty suffix range", size)
        return max(0, size - suffix), size
    start = int(first)
    if start >= size:
        raise RangeNotSatisfiable(f"range starts at {start}, item has {size} bytes", size)
    end = size if last == "" else min(int(last) + 1, size)
    if end <= start:
        return None  # last < first: invalid, so ignored
    return start, end
