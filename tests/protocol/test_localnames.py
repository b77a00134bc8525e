"""The local-name mapping for Windows, macOS and case-insensitive file systems: a pure function,
tested by its properties (injective, stable, safe) and by the cases that matter in practice."""

from __future__ import annotations

import random
import unicodedata

from hypothesis import given, settings
from hypothesis import strategies as st

from evx.protocol.localnames import (
    MAX_COMPONENT_BYTES,
    RESERVED,
    Profile,
    _fold,
    local_paths,
)

PROFILES = [Profile.posix(), Profile.macos(), Profile.windows_ntfs(),
            Profile(case_insensitive=True)]

# Components from the awkward corners: reserved characters, device names, dots and spaces,
# case and normalisation variants, bytes that are not UTF-8, long names, our own folders.
_ALPHABET = st.sampled_from(
    ["a", "A", "b", ".", " ", ":", "*", "?", '"', "<", ">", "|", "\\", "%", "~", "\x01", "\n",
     "é", "e\u0301", "É", "ß", "ss", "\u202e", "\u200b", "😀", "ﬁ", "K", "\u212a"])
_COMPONENT = st.one_of(
    st.lists(_ALPHABET, min_size=1, max_size=6).map(lambda cs: "".join(cs).encode()),
    st.sampled_from([b"CON", b"con.txt", b"NUL.tar.gz", b"COM1", b"lpt9.log", b"aux ",
                     b".evx", b".EVX", b".evx-partial", b"\xff", b"bad\xc3(", b"\xed\xa0\x80",
                     b"x" * 255, "é".encode() * 127 + b"e", b"%FF", b"%C3%A9"]),
).filter(lambda c: c not in (b".", b".."))
_NAMES = st.lists(st.lists(_COMPONENT, min_size=1, max_size=3).map(b"/".join),
                  min_size=1, max_size=12)


def _leaves(names: list[bytes]) -> list[bytes]:
    # A package never holds a file that is another item's directory (the service refuses it).
    unique = sorted(set(names))
    return [n for n in unique if not any(o.startswith(n + b"/") for o in unique)]


def _component_ok(component: bytes, profile: Profile) -> bool:
    if not component or component in (b".", b"..") or b"/" in component or b"\0" in component:
        return False
    if len(component) > MAX_COMPONENT_BYTES:
        return False
    if profile.utf8_only or profile.windows:
        try:
            text = component.decode("utf-8")
        except UnicodeDecodeError:
            return False
    else:
        text = component.decode("utf-8", "surrogateescape")
    if profile.windows:
        if any(c in '<>:"/\\|?*' or ord(c) < 0x20 for c in text):
            return False
        if text[-1] in ". ":
            return False
        stem = text.split(".", 1)[0].rstrip(" ").upper()
        if stem in {"CON", "PRN", "AUX", "NUL"} or (
                len(stem) == 4 and stem[:3] in ("COM", "LPT") and stem[3] in "123456789"):
            return False
    return True


@settings(max_examples=150, deadline=None)
@given(names=_NAMES, profile=st.sampled_from(PROFILES))
def test_injective_stable_safe(names: list[bytes], profile: Profile) -> None:
    names = _leaves(names)
    mapping = local_paths(names, profile)
    # Injective, also in the file system's own sense of "the same name".
    folded = {tuple(_fold(c, profile) for c in local.split(b"/")) for local in mapping.values()}
    assert len(folded) == len(names)
    # Stable: the same names in another order give the same mapping.
    shuffled = list(names)
    random.Random(7).shuffle(shuffled)
    assert local_paths(shuffled, profile) == mapping
    # Safe: every component is one the file system holds as written; our folders are free.
    for raw, local in mapping.items():
        parts = local.split(b"/")
        assert len(parts) == len(raw.split(b"/"))
        assert all(_component_ok(p, profile) for p in parts), (raw, local)
        assert parts[0].decode("utf-8", "replace").casefold() not in RESERVED
    # Shared directories stay shared.
    for a in names:
        for b in names:
            pa, pb = a.split(b"/"), b.split(b"/")
            if len(pa) > 1 and len(pb) > 1 and pa[0] == pb[0]:
                assert mapping[a].split(b"/")[0] == mapping[b].split(b"/")[0]


@settings(max_examples=100, deadline=None)
@given(names=_NAMES)
def test_posix_keeps_every_name(names: list[bytes]) -> None:
    names = [n for n in _leaves(names)
             if n.split(b"/")[0].decode("utf-8", "replace").casefold() not in RESERVED]
    assert local_paths(names, Profile.posix()) == {n: n for n in names}


def test_the_cases_of_the_issue() -> None:
    names = ["IMG 2026-11-02 06:10:00.jpg", "Readme.txt", "README.txt", "caf\u00e9",
             unicodedata.normalize("NFD", "caf\u00e9"), "CON.txt", "trailing. ", "plain.txt"]
    raw = [n.encode() for n in names] + [b"bad\xffbyte"]
    windows = local_paths(raw, Profile.windows_ntfs())
    assert windows[b"plain.txt"] == b"plain.txt"
    assert windows[b"IMG 2026-11-02 06:10:00.jpg"] == b"IMG 2026-11-02 06%3A10%3A00.jpg"
    assert windows[b"CON.txt"] == b"CON_.txt"
    assert windows[b"trailing. "] == b"trailing.%20"
    assert windows[b"bad\xffbyte"] == b"bad%FFbyte"
    assert windows[b"README.txt"] == b"README.txt"  # first in byte order keeps its name
    assert windows[b"Readme.txt"].startswith(b"Readme~") and windows[b"Readme.txt"].endswith(
        b".txt")
    mac = local_paths(raw, Profile.macos())
    nfc, nfd = "caf\u00e9".encode(), unicodedata.normalize("NFD", "caf\u00e9").encode()
    assert {mac[nfc], mac[nfd]} & {nfc, nfd} and mac[nfc] != mac[nfd]
    assert mac[b"IMG 2026-11-02 06:10:00.jpg"] == b"IMG 2026-11-02 06:10:00.jpg"
    posix = local_paths([*raw, b".evx/x", b".evx-partial"], Profile.posix())
    assert posix[b".evx/x"] == b"_.evx/x" and posix[b".evx-partial"] == b"_.evx-partial"
    assert posix[b"bad\xffbyte"] == b"bad\xffbyte"
