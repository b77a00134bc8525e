"""RFC 8785 JSON Canonicalization Scheme (JCS) for the value domain of ledger entries.

The domain is ``dict`` (``str`` keys) / ``list`` / ``str`` / ``int`` / ``bool`` / ``None``.
Floats are outside it on purpose: the ledger has none, and refusing them removes the only hard
part of JCS (ECMAScript number formatting).  Within the domain JCS is:

* object members sorted by their keys as arrays of UTF-16 code units;
* strings escaped as ECMAScript ``JSON.stringify`` does: ``\\"``, ``\\\\``, ``\\b \\f \\n \\r \\t``,
  every other character below U+0020 as ``\\u00xx`` (lowercase hex), everything else literal;
* integers in decimal, ``true``/``false``/``null``, no whitespace; UTF-8 output.

Fast path: :func:`json.dumps` with ``sort_keys=True, separators=(",", ":"), ensure_ascii=False``
escapes strings exactly as above and prints integers as above; it sorts keys by code point,
which equals UTF-16 code-unit order as long as no key contains a character at or above U+D800
(code points >= U+10000 become surrogates U+D800..U+DFFF in UTF-16 and then sort *before*
U+E000..U+FFFF).  Entry keys are ASCII in practice, so :func:`canonicalize` checks the keys
while validating and takes the fast path whenever it provably gives the JCS bytes; the general
serializer handles the rest.  ``tests/custody/test_jcs.py`` checks both against ``rfc8785``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence

__all__ = ["MAX_DEPTH", "MAX_SAFE_INTEGER", "JSONValue", "canonicalize"]

JSONValue = None | bool | int | str | Sequence["JSONValue"] | Mapping[str, "JSONValue"]

# ECMAScript Number.MAX_SAFE_INTEGER: beyond it JCS (which prints IEEE doubles) is not exact,
# and I-JSON (RFC 7493) says not to rely on such numbers.
MAX_SAFE_INTEGER = 2**53 - 1
# Entries nest three levels deep; the bound keeps untrusted input from exhausting the stack.
MAX_DEPTH = 32

# The first character for which code-point order and UTF-16 code-unit order can disagree.
_FIRST_UNSAFE_KEY_CHAR = "\ud800"

# Built once: json.dumps with non-default options constructs an encoder on every call.
_FAST_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_ESCAPE_RE = re.compile(r'[\x00-\x1f"\\]')
_SHORT_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
}


def canonicalize(value: JSONValue) -> bytes:
    """Return the RFC 8785 canonical UTF-8 bytes of ``value``.

    Raises:
        ValueError: ``value`` is outside the supported domain: a float, an integer beyond
            +-(2**53-1), a non-``str`` key, a string with a lone surrogate, a type other than
            dict/list/tuple/str/int/bool/None, or nesting deeper than ``MAX_DEPTH``.
    """
    fast = _check(value, 0)
    text = _FAST_ENCODER.encode(value) if fast else _serialize(value)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("string is not valid Unicode (lone surrogate)") from exc


def dumps_fast(value: object) -> bytes:
    """Canonical bytes of a value *already known* to be in the domain with fast-path-safe keys.

    For callers (``Entry``) that validated the value themselves; skips the validation walk.

    Raises:
        ValueError: A string holds a lone surrogate.
    """
    text = _FAST_ENCODER.encode(value)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError("string is not valid Unicode (lone surrogate)") from exc


def key_is_fast(key: str) -> bool:
    """Whether code-point order of ``key`` agrees with UTF-16 order against any other key."""
    return key.isascii() or max(key) < _FIRST_UNSAFE_KEY_CHAR


def _check(value: object, depth: int) -> bool:
    """Validate ``value``; return whether every key in it is fast-path safe."""
    if depth > MAX_DEPTH:
        raise ValueError(f"nesting deeper than {MAX_DEPTH}")
    if value is None or isinstance(value, (bool, str)):
        return True
    if isinstance(value, int):
        if -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return True
        raise ValueError(f"integer {value} outside +-(2**53-1)")
    if isinstance(value, float):
        raise ValueError("floats are not allowed")
    fast = True
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"object key {key!r} is not a string")
            fast = _check(item, depth + 1) and fast and key_is_fast(key)
        return fast
    if isinstance(value, (list, tuple)):
        for item in value:
            fast = _check(item, depth + 1) and fast
        return fast
    raise ValueError(f"type {type(value).__name__} is not allowed in JSON")


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    return _SHORT_ESCAPES.get(char) or f"\\u{ord(char):04x}"


def _string(value: str) -> str:
    return '"' + _ESCAPE_RE.sub(_escape, value) + '"'


def _utf16_key(key: str) -> bytes:
    # Big-endian UTF-16 bytes compare exactly as the sequence of code units does.
    return key.encode("utf-16-be", "surrogatepass")


def _serialize(value: object) -> str:
    """The general JCS serializer (value already validated by ``_check``)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, Mapping):
        members = sorted(value.items(), key=lambda kv: _utf16_key(kv[0]))
        return "{" + ",".join(_string(k) + ":" + _serialize(v) for k, v in members) + "}"
    assert isinstance(value, (list, tuple))
    return "[" + ",".join(_serialize(item) for item in value) + "]"


def loads_strict(data: bytes | str) -> object:
    """Parse JSON text from an untrusted source, refusing what JCS-hashed data must not contain.

    UTF-8 only (no encoding sniffing), no duplicate object keys (two readers could otherwise see
    two different objects behind the same bytes), no floats, no ``NaN``/``Infinity``.

    Raises:
        ValueError: The text is not such JSON.
    """
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"not UTF-8: {exc.reason} at byte {exc.start}") from exc
    try:
        return _STRICT_DECODER.decode(data)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc.msg} at column {exc.colno}") from exc
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc


def _unique_object(pairs: list[tuple[str, object]]) -> dict[str, object]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"duplicate object key {key!r}")
            seen.add(key)
    return obj


def _refuse_float(text: str) -> object:
    raise ValueError(f"floats are not allowed ({text})")


def _refuse_constant(text: str) -> object:
    raise ValueError(f"{text} is not allowed")


_STRICT_DECODER = json.JSONDecoder(
    object_pairs_hook=_unique_object, parse_float=_refuse_float, parse_constant=_refuse_constant
)
