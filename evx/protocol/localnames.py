"""Where each item goes on this machine's file system: its exact name where the file system can
hold it, a safe mapped name where it cannot -- never two items on one local path.

:func:`local_paths` is a pure function of the item names and the file system's
:class:`Profile`: injective (under the file system's own idea of "the same name": case folding,
Unicode normalisation), stable (the same names give the same result in any order), and safe
(every component it returns is one the file system accepts as written). On Linux with a
case-sensitive file system every name maps to itself, except names under the client's own
folders (:data:`RESERVED`).
"""

from __future__ import annotations

import hashlib
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

from evx.protocol.names import encode_bytes

#: The client's own folders in ``-o``: the download record and partial downloads.
RECORD_DIR = ".evx"
PARTIAL_DIR = ".evx-partial"
RESERVED = (RECORD_DIR, PARTIAL_DIR)

_WINDOWS_FORBIDDEN = frozenset('<>:"/\\|?*')
_WINDOWS_DEVICES = frozenset(
    ["CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"]
    + [f"{p}{n}" for p in ("COM", "LPT") for n in "123456789\u00b9\u00b2\u00b3"])
MAX_COMPONENT_BYTES = 255


@dataclass(frozen=True)
class Profile:
    """What the local file system cannot hold as it is."""

    windows: bool = False  # reserved characters and device names, no trailing dot or space
    case_insensitive: bool = False  # "A" and "a" are one name
    normalizing: bool = False  # NFC and NFD spellings are one name (macOS)
    utf8_only: bool = False  # names must be valid UTF-8 (Windows, macOS)

    @classmethod
    def posix(cls) -> Profile:
        return cls()

    @classmethod
    def macos(cls) -> Profile:
        return cls(case_insensitive=True, normalizing=True, utf8_only=True)

    @classmethod
    def windows_ntfs(cls) -> Profile:
        return cls(windows=True, case_insensitive=True, normalizing=False, utf8_only=True)


def _fold(component: bytes, profile: Profile) -> bytes:
    """The file system's notion of a component's identity."""
    if not (profile.case_insensitive or profile.normalizing or profile.windows):
        return component
    text = component.decode("utf-8", "surrogateescape")
    if profile.normalizing or profile.case_insensitive:
        text = unicodedata.normalize("NFD", text)
    if profile.case_insensitive:
        text = unicodedata.normalize("NFD", text.casefold())
    if profile.windows:
        text = text.rstrip(". ")
    return text.encode("utf-8", "surrogateescape")


def _escape_char(ch: str) -> str:
    return "".join(f"%{b:02X}" for b in ch.encode("utf-8"))


def _safe(component: bytes, profile: Profile, top: bool) -> bytes:
    """A spelling of ``component`` the file system accepts (itself when it already does)."""
    result = component
    if profile.utf8_only or profile.windows:
        text = encode_bytes(component) if _not_utf8(component) else component.decode("utf-8")
        if profile.windows:
            text = "".join(_escape_char(c) if c in _WINDOWS_FORBIDDEN or ord(c) < 0x20
                           else c for c in text)
            if text[-1] in ". ":
                text = text[:-1] + _escape_char(text[-1])
            stem = text.split(".", 1)[0].rstrip(" ").upper()
            if stem in _WINDOWS_DEVICES:
                text = text[:len(stem)] + "_" + text[len(stem):]
        result = text.encode("utf-8")
    if top and result.decode("utf-8", "replace").casefold() in RESERVED:
        result = b"_" + result
    if len(result) > MAX_COMPONENT_BYTES:
        result = _shorten(result, component)
    return result


def _not_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def _tag(component: bytes, size: int = 8) -> str:
    return hashlib.sha256(component).hexdigest()[:size]


def _shorten(name: bytes, original: bytes, size: int = 8) -> bytes:
    """``name`` cut to fit with a tag of the original, on a character boundary."""
    tag = f"~{_tag(original, size)}".encode()
    room = MAX_COMPONENT_BYTES - len(tag)
    cut = name[:room].decode("utf-8", "ignore").encode("utf-8") if not _not_utf8(name) \
        else name[:room]
    return cut + tag


def _tagged(name: bytes, original: bytes, size: int) -> bytes:
    """``name`` with a tag of the original before its extension: ``photo~1a2b3c4d.jpg``."""
    stem, dot, ext = name.rpartition(b".")
    if not dot or not stem or len(ext) > 16:
        stem, ext, dot = name, b"", b""
    tag = f"~{_tag(original, size)}".encode()
    candidate = stem + tag + dot + ext
    if len(candidate) > MAX_COMPONENT_BYTES:
        candidate = _shorten(name, original, size)
    return candidate


def _map_siblings(children: list[bytes], profile: Profile, top: bool) -> dict[bytes, bytes]:
    """Local names for the components of one directory."""
    mapped: dict[bytes, bytes] = {}
    taken: set[bytes] = set()
    pending = []
    # First pass: a name the file system holds as it is keeps it, first come in byte order.
    for raw in sorted(children):
        safe = _safe(raw, profile, top)
        key = _fold(safe, profile)
        if safe == raw and key not in taken:
            mapped[raw] = raw
            taken.add(key)
        else:
            pending.append((raw, safe))
    # Second pass: escaped or colliding names get a tag of their original bytes.
    for raw, safe in pending:
        candidate, size = safe, 8
        while _fold(candidate, profile) in taken:
            candidate = _tagged(safe, raw, size)
            size += 8
            if size > 64:
                raise AssertionError("no free local name")  # SHA-256 prefixes never collide
        mapped[raw] = candidate
        taken.add(_fold(candidate, profile))
    return mapped


def local_paths(names: Iterable[bytes], profile: Profile) -> dict[bytes, bytes]:
    """Map each item path (bytes, ``/``-separated) to the relative local path it is written at.

    Directories shared by several items map once, so ``a/b`` and ``a/c`` stay siblings.
    """
    wanted = sorted(set(names))
    tree: dict[tuple[bytes, ...], set[bytes]] = {}
    for name in wanted:
        parts = tuple(name.split(b"/"))
        for depth in range(len(parts)):
            tree.setdefault(parts[:depth], set()).add(parts[depth])
    local_dir: dict[tuple[bytes, ...], tuple[bytes, ...]] = {(): ()}
    for parent in sorted(tree, key=len):
        mapped = _map_siblings(sorted(tree[parent]), profile, top=not parent)
        for raw, local in mapped.items():
            local_dir[(*parent, raw)] = local_dir[parent] + (local,)
    return {name: b"/".join(local_dir[tuple(name.split(b"/"))]) for name in wanted}
