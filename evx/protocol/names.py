"""Item names: the exact bytes of a path on the evidence's file system, and one text form of them.

A file system names a file by bytes: anything but ``/`` (the separator) and NUL. Seized evidence
keeps its names exactly (a name is itself evidence), so an item name is the original relative
path as bytes, nothing normalised or renamed. Wherever a name travels as text -- the API, the
database, the ledger's ``item`` field, manifests, download records -- it is written in one
reversible form, the *name text* (docs/api.md, "Item names"):

* a valid UTF-8 character stands for itself, except ``%``, written ``%25``;
* every byte that is not part of a valid UTF-8 sequence is written ``%XX`` (uppercase hex).

So a name that is valid UTF-8 without ``%`` reads as itself, and each byte string has exactly one
text form: :func:`check_name` refuses any other (``%41``, ``%c3%a9``, a lone ``%``). Characters
that trouble terminals (controls, bidirectional and zero-width ones) are kept; they are made
visible only when *displayed* (:func:`display`).

This module is the single definition of the rules, imported by the service and the client.
Standard library only.
"""

from __future__ import annotations

import codecs
import re
import unicodedata

MAX_NAME_BYTES = 4096  # PATH_MAX: bounds what one name costs in rows, URLs and ledger entries
MAX_SEGMENT_BYTES = 255  # NAME_MAX of common file systems
MAX_TARGET_BYTES = 4096  # a symbolic link's target (PATH_MAX)
MAX_NAME_TEXT_CHARS = 3 * MAX_NAME_BYTES  # every byte escaped as %XX

_ESCAPE = re.compile(r"%([0-9A-F]{2})")


class InvalidName(ValueError):
    """The item name (or link target) is not acceptable; the message says why."""


# -- the text form -------------------------------------------------------------------------------

def _escape_invalid(error: UnicodeError) -> tuple[str, int]:
    assert isinstance(error, UnicodeDecodeError)
    bad = error.object[error.start:error.end]
    return "".join(f"%{b:02X}" for b in bad), error.end


codecs.register_error("evx-name-escape", _escape_invalid)


def encode_bytes(raw: bytes) -> str:
    """The text form of ``raw`` (an item name or a link target, as bytes)."""
    # Strict UTF-8 (no surrogates, no overlongs): each undecodable byte becomes %XX.
    text = raw.decode("utf-8", errors="evx-name-escape")
    if "%" not in text:
        return text
    # Escape literal "%" first, then re-decode so the escapes of invalid bytes survive.
    pieces = []
    for chunk in re.split(rb"(%)", raw):
        if chunk == b"%":
            pieces.append("%25")
        else:
            pieces.append(chunk.decode("utf-8", errors="evx-name-escape"))
    return "".join(pieces)


def decode_text(text: str) -> bytes:
    """The bytes a text form stands for (inverse of :func:`encode_bytes` on canonical text).

    Raises:
        InvalidName: A ``%`` not followed by two uppercase hex digits, or a lone surrogate.
    """
    out = bytearray()
    position = 0
    for match in _ESCAPE.finditer(text):
        out += _utf8(text[position:match.start()])
        out.append(int(match.group(1), 16))
        position = match.end()
    out += _utf8(text[position:])
    return bytes(out)


def _utf8(text: str) -> bytes:
    if "%" in text:
        raise InvalidName("'%' must be written %25 (or %XX for a byte that is not UTF-8)")
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidName("the name contains a lone surrogate (not a character)") from None


def _canonical(text: str, what: str) -> bytes:
    raw = decode_text(text)
    if encode_bytes(raw) != text:
        raise InvalidName(f"the {what} is not in canonical form: write it "
                          f"{encode_bytes(raw)!r} (characters as themselves, '%' as %25, "
                          "%XX only for bytes that are not UTF-8)")
    return raw


# -- rules ----------------------------------------------------------------------------------------

def check_name(text: str) -> bytes:
    """Check an item name in text form; return the path bytes it stands for.

    A name is a relative path: segments separated by ``/``, none empty, ``.`` or ``..``, no NUL,
    at most :data:`MAX_SEGMENT_BYTES` bytes per segment and :data:`MAX_NAME_BYTES` in all.

    Raises:
        InvalidName: Says which rule the name breaks.
    """
    if not isinstance(text, str) or not text:
        raise InvalidName("the item name is empty")
    if len(text) > MAX_NAME_TEXT_CHARS:
        raise InvalidName(f"the item name is longer than {MAX_NAME_BYTES} bytes")
    raw = _canonical(text, "item name")
    if len(raw) > MAX_NAME_BYTES:
        raise InvalidName(f"the item name is {len(raw)} bytes; the maximum is "
                          f"{MAX_NAME_BYTES} (PATH_MAX)")
    if b"\x00" in raw:
        raise InvalidName("the item name contains a NUL byte")
    for segment in raw.split(b"/"):
        if segment in (b"", b".", b".."):
            raise InvalidName("the item name must be a relative path without empty, '.' or "
                              "'..' segments")
        if len(segment) > MAX_SEGMENT_BYTES:
            raise InvalidName(f"a path segment is {len(segment)} bytes; the maximum is "
                              f"{MAX_SEGMENT_BYTES} (NAME_MAX)")
    return raw


def check_target(text: str) -> bytes:
    """Check a symbolic link's target in text form; return its bytes.

    A target is recorded as it was, never resolved: absolute or relative, ``..`` allowed. Only
    empty targets, NUL bytes and targets over :data:`MAX_TARGET_BYTES` are refused.

    Raises:
        InvalidName: Says which rule the target breaks.
    """
    if not isinstance(text, str) or not text:
        raise InvalidName("the link target is empty")
    if len(text) > 3 * MAX_TARGET_BYTES:
        raise InvalidName(f"the link target is longer than {MAX_TARGET_BYTES} bytes")
    raw = _canonical(text, "link target")
    if len(raw) > MAX_TARGET_BYTES:
        raise InvalidName(f"the link target is {len(raw)} bytes; the maximum is "
                          f"{MAX_TARGET_BYTES}")
    if b"\x00" in raw:
        raise InvalidName("the link target contains a NUL byte")
    return raw


def name_of(parts: list[bytes]) -> str:
    """The text form of the item name made of path segments ``parts`` (bytes, no ``/``)."""
    return encode_bytes(b"/".join(parts))


def parent_names(text: str) -> list[str]:
    """The proper prefix directories of a name: ``a/b/c`` -> ``["a", "a/b"]`` (text form)."""
    segments = text.split("/")  # "/" is never part of an escape: splitting text is exact
    return ["/".join(segments[:i]) for i in range(1, len(segments))]


# -- display ------------------------------------------------------------------------------------

_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def display(text: str) -> str:
    """A name for people: every character that could hide or reorder text made visible.

    Controls, format characters (bidirectional overrides, zero-width ones), separators other
    than the space and unassigned code points are shown as ``\\u202e``-style escapes; ``\\`` as
    ``\\\\``. The result is printable, single-line and JSON-safe; undecodable bytes already read
    ``%XX`` in the text form.
    """
    out = []
    for ch in text:
        if ch == "\\":
            out.append("\\\\")
        elif unicodedata.category(ch) in _INVISIBLE_CATEGORIES or (
                ch.isspace() and ch != " "):
            code = ord(ch)
            out.append(f"\\x{code:02x}" if code < 0x100 else
                       f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}")
        else:
            out.append(ch)
    return "".join(out)
