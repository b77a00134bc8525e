"""Item names: safe relative paths, never used to build a file or object name."""

from __future__ import annotations

import unicodedata

MAX_NAME_BYTES = 512  # bound on what a name may cost in rows, URLs and ledger entries
MAX_SEGMENT_BYTES = 255  # what common filesystems accept for one path component
_FORBIDDEN_CHARS = frozenset('\\:*?"<>|')


class InvalidItemName(ValueError):
    """The item name is not a safe relative path."""


def validate_item_name(name: str) -> str:
    """Return ``name`` if it is a safe relative path (``dir/file.ext``); raise otherwise.

    Raises:
        InvalidItemName: empty, too long, absolute, with ``.``/``..``/empty segments, control
            characters, reserved characters, or not in Unicode NFC form.
    """
    if not name:
        raise InvalidItemName("item name is empty")
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        raise InvalidItemName(f"item name is longer than {MAX_NAME_BYTES} bytes")
    if unicodedata.normalize("NFC", name) != name:
        raise InvalidItemName("item name must be in Unicode NFC form")
    for ch in name:
        if ord(ch) < 0x20 or ord(ch) == 0x7F or 0xD800 <= ord(ch) <= 0xDFFF:
            raise InvalidItemName("item name contains a control or invalid character")
        if ch in _FORBIDDEN_CHARS:
            raise InvalidItemName(f"item name contains the reserved character {ch!r}")
    for segment in name.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidItemName("item name must be a relative path without '', '.' or '..' "
                                  "segments")
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            raise InvalidItemName(f"a path segment is longer than {MAX_SEGMENT_BYTES} bytes")
        if segment != segment.strip():
            raise InvalidItemName("a path segment starts or ends with white space")
    return name
