"""Checking an export's entry line that is already canonical, without building an ``Entry``.

Our exporter writes every entry line as ``{"entry":<canonical entry>,"leaf_hash":"<hex>"}``:
the JCS bytes of the record, so the entry's canonical bytes sit verbatim between a fixed prefix
and a fixed-length suffix.  For such a line, :func:`check_canonical_entry_line` proves
everything the reference path (``Entry.from_dict`` via :mod:`custody.export`) would establish,
more cheaply:

* the slice parses (C decoder) to an object that re-serializes to *exactly* the slice with the
  fast JCS encoder (``custody.jcs``: sort_keys, no whitespace, literal non-ASCII) -- so the slice
  was canonical and had no duplicate keys (duplicates collapse and the bytes would differ), and
  its leaf hash is ``SHA-256(0x00 || slice)`` with no second serialization;
* the fields obey every rule of ``Entry``'s constructor (cheap ``dict``/``set`` checks);
* the recorded leaf hash is that hash, as 64 lowercase hex digits.

Anything else -- a line written another way, a float, a non-BMP details key, a wrong hash, any
doubt -- returns ``None`` and the caller takes the reference path, which then raises exactly the
error it always raised.  The checker therefore only needs to be *sound*: accept nothing the
reference path would refuse or read differently.  ``tests/custody/test_canonical_line.py``
cross-checks the two.
"""

from __future__ import annotations

import hashlib
import json
import json.encoder
import json.scanner
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, NamedTuple, cast

# The very patterns and key sets Entry validates with, so the two cannot drift apart.
from custody.entry import (
    ACTOR_KEYS,
    ENTRY_KEYS,
    HEX_HASH_RE,
    LEGAL_KEYS,
    MAX_ENTRY_BYTES,
    TIME_RE,
    Action,
    Outcome,
    Role,
    token_valid,
)
from custody.jcs import MAX_SAFE_INTEGER, key_is_fast
from custody.merkle import CompactRange

__all__ = ["CanonicalEntryLine", "CheckedRun", "check_canonical_entry_line", "check_entry_run"]

_PREFIX = b'{"entry":'
_LEAF_KEY = b',"leaf_hash":"'
_HEX_LEN = 64
_SUFFIX_LEN = len(_LEAF_KEY) + _HEX_LEN + len(b'"}')
_HASH_AT = -(_HEX_LEN + 2)  # the hex digits are line[_HASH_AT:-2]
_LEAF_KEY_AT = _HASH_AT - len(_LEAF_KEY)

_ACTIONS = frozenset(member.value for member in Action)
_OUTCOMES = frozenset(member.value for member in Outcome)
_ROLES = frozenset(member.value for member in Role)
_ALLOWED = Outcome.ALLOWED.value



def _json_machinery() -> tuple[Callable[[str, int], tuple[Any, int]],
                               Callable[[Any, int], Iterable[str]], bool]:
    """The scanner and encoder this module calls directly, and whether they are CPython's C ones.

    CPython's ``_json`` accelerator is an implementation detail (``json.scanner.c_make_scanner``,
    ``json.encoder.c_make_encoder`` are ``None`` without it, and other interpreters may lack the
    names altogether).  With it: the C scanner and encoder, built once and called directly --
    json.loads/JSONEncoder.encode add a whitespace regex pass and build a new C encoder on every
    call.  Without it: the standard library's pure-Python scanner and encoder with the same
    settings, so the checker gives the same answers, only slower.  The encoder's settings are
    custody.jcs's fast path (separators "," ":", sorted keys, literal non-ASCII, no NaN); no
    cycle check, which parsed JSON cannot need.
    """
    c_scanner = getattr(json.scanner, "c_make_scanner", None)
    c_encoder = getattr(json.encoder, "c_make_encoder", None)
    c_encode_string = getattr(json.encoder, "c_encode_basestring", None)
    if c_scanner is not None and c_encoder is not None and c_encode_string is not None:
        encoder = c_encoder(None, None, c_encode_string, None, ":", ",", True, False, False)
        return c_scanner(json.JSONDecoder()), encoder, True
    python = json.JSONEncoder(ensure_ascii=False, check_circular=False, allow_nan=False,
                              sort_keys=True, separators=(",", ":"))
    return (json.scanner.py_make_scanner(json.JSONDecoder()),  # type: ignore[attr-defined]
            lambda obj, _level: python.iterencode(obj), False)


_scan, _encode, C_ACCELERATED = _json_machinery()
_sha256 = hashlib.sha256
_fromisoformat = datetime.fromisoformat


class CanonicalEntryLine(NamedTuple):
    """What the ledger walk needs of a checked entry line."""

    entry_index: int  # not ``index``: that would shadow tuple.index
    leaf_hash: bytes
    leaf_hex: str
    prev: str | None
    package: str | None
    package_prev: str | None


def check_canonical_entry_line(line: bytes | str) -> CanonicalEntryLine | None:
    """The entry of a canonical, valid entry line with a correct leaf hash; else ``None``.

    ``None`` says nothing about validity: read the line the reference way to find out.  Does
    not check the entry's place in the ledger (index, ``prev``, ``package_prev``).  Raises
    nothing.
    """
    if type(line) is not bytes:
        try:
            line = line.encode("utf-8") if type(line) is str else b""
        except UnicodeEncodeError:
            return None
    if line[-1:] == b"\n":
        line = line[:-1]
    if (
        not line.startswith(_PREFIX)
        or line[_LEAF_KEY_AT:_HASH_AT] != _LEAF_KEY
        or line[-2:] != b'"}'
        or len(line) - len(_PREFIX) - _SUFFIX_LEN > MAX_ENTRY_BYTES
    ):
        return None
    body = line[len(_PREFIX):_LEAF_KEY_AT]
    try:
        text = body.decode("utf-8")
        obj, end = _scan(text, 0)
    except (ValueError, StopIteration, RecursionError):
        return None
    if type(obj) is not dict or end != len(text) or not _entry_fields_valid(obj):
        return None
    try:
        if "".join(_encode(obj, 0)) != text:
            return None
    except (ValueError, RecursionError):  # pragma: no cover - fields already checked
        return None
    leaf = _sha256(b"\x00" + body).digest()
    leaf_hex = leaf.hex()
    if line[_HASH_AT:-2] != leaf_hex.encode("ascii"):
        return None
    return CanonicalEntryLine(
        obj["index"], leaf, leaf_hex, obj["prev"], obj["package"], obj["package_prev"]
    )


class CheckedRun(NamedTuple):
    """The longest run of entry lines from a chunk that checked out, ready for the ledger walk."""

    start: int  # the ledger position of its first entry
    entries: int  # how many lines checked out (not ``count``: that would shadow tuple.count)
    first_prev: str | None  # the first entry's prev (to link to the ledger so far)
    last_leaf_hex: str
    first_package_prevs: dict[str, str | None]  # package -> package_prev of its first entry here
    last_package_leaves: dict[str, str]  # package -> leaf hash (hex) of its last entry here
    leaf_hashes: bytes  # count * 32 bytes
    subtree: bytes | None  # root over the run when it is a whole aligned perfect subtree


def check_entry_run(start: int, lines: list[bytes]) -> CheckedRun:
    """Check consecutive entry lines meant for positions ``start``, ``start + 1``, ... (a worker's
    job).

    Stops before the first line that :func:`check_canonical_entry_line` refuses, that is not at
    its position, or whose ``prev``/``package_prev`` does not link to an earlier line of the run;
    links to entries before the run are the caller's to check.  Raises nothing.
    """
    leaves = bytearray()
    firsts: dict[str, str | None] = {}
    lasts: dict[str, str] = {}
    first_prev: str | None = None
    prev_hex = ""
    count = 0
    for count, line in enumerate(lines):
        checked = check_canonical_entry_line(line)
        if checked is None or checked.entry_index != start + count:
            break
        if count == 0:
            first_prev = checked.prev
        elif checked.prev != prev_hex:
            break
        package = checked.package
        if package is not None:
            last = lasts.get(package)
            if last is None:
                firsts[package] = checked.package_prev
            elif checked.package_prev != last:
                break
            lasts[package] = checked.leaf_hex
        prev_hex = checked.leaf_hex
        leaves += checked.leaf_hash
    else:
        count = len(lines)
    subtree = None
    if count and count & (count - 1) == 0 and start % count == 0:
        compact = CompactRange()
        for offset in range(0, len(leaves), 32):
            compact.append(bytes(leaves[offset:offset + 32]))
        subtree = compact.root()
    return CheckedRun(start, count, first_prev, prev_hex, firsts, lasts, bytes(leaves), subtree)


def _entry_fields_valid(obj: dict[str, object]) -> bool:
    """The rules of ``Entry.from_dict`` and ``Entry.__post_init__`` over parsed JSON (exact types).

    Keep in step with ``custody/entry.py``: a rule missing here would let the fast path accept
    what the reference path refuses. Each step below assumes the ones before it passed.
    """
    v = obj.get("v")
    if type(v) is not int or obj.keys() != ENTRY_KEYS.get(v):
        return False
    return (
        (v < 2 or obj["token"] is None or token_valid(obj["token"]))
        and _index_valid(obj["index"])
        and _time_valid(obj["time"])
        and _actor_valid(obj["actor"])
        and _vocabulary_valid(obj)
        and _subject_valid(obj)
        and _legal_valid(obj["legal"])
        and _details_valid(obj["details"])
        and _links_valid(obj)
    )


def _index_valid(index: object) -> bool:
    return type(index) is int and 0 <= index <= MAX_SAFE_INTEGER


def _time_valid(time: object) -> bool:
    if type(time) is not str or not TIME_RE.match(time):
        return False
    try:
        _fromisoformat(time[:-1])
    except ValueError:
        return False
    return True


def _actor_valid(actor: object) -> bool:
    return (
        type(actor) is dict
        and actor.keys() == ACTOR_KEYS
        and type(actor["authority"]) is str
        and type(actor["subject"]) is str
    )


def _vocabulary_valid(obj: dict[str, object]) -> bool:
    """The actor's role, the action and the outcome are words of the contract."""
    actor = cast("dict[str, object]", obj["actor"])  # _actor_valid passed
    role, action, outcome = actor["role"], obj["action"], obj["outcome"]
    return (
        type(role) is str and role in _ROLES
        and type(action) is str and action in _ACTIONS
        and type(outcome) is str and outcome in _OUTCOMES
    )


def _subject_valid(obj: dict[str, object]) -> bool:
    """Package and item are absent or non-empty strings; anything but "allowed" needs a reason."""
    package, item, reason = obj["package"], obj["item"], obj["reason"]
    return (
        (package is None or (type(package) is str and bool(package)))
        and (item is None or (type(item) is str and bool(item)))
        and (reason is None or type(reason) is str)
        and (obj["outcome"] == _ALLOWED or bool(reason))
    )


def _legal_valid(legal: object) -> bool:
    return legal is None or (
        type(legal) is dict
        and legal.keys() == LEGAL_KEYS
        and type(legal["basis"]) is str
        and type(legal["request_reference"]) is str
    )


def _details_valid(details: object) -> bool:
    if type(details) is not dict:
        return False
    for key, value in details.items():
        # Keys from JSON are str; code-point order must equal JCS's UTF-16 order for the encoder.
        if not (key.isascii() or key_is_fast(key)):
            return False
        if value is None or value is True or value is False or type(value) is str:
            continue
        if type(value) is not int or not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
            return False
    return True


def _links_valid(obj: dict[str, object]) -> bool:
    """prev and package_prev are hex hashes where present, and present exactly where required."""
    prev, package_prev = obj["prev"], obj["package_prev"]
    return (
        (prev is None or (type(prev) is str and bool(HEX_HASH_RE.match(prev))))
        and (package_prev is None
             or (type(package_prev) is str and bool(HEX_HASH_RE.match(package_prev))))
        and (obj["index"] == 0) == (prev is None)
        and not (obj["package"] is None and package_prev is not None)
    )

