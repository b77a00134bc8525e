"""custody/entry.py: the contract's rules, canonical bytes, leaf hash."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from custody.entry import (
    MAX_ENTRY_BYTES,
    Action,
    Actor,
    Entry,
    Outcome,
    Role,
    TokenRef,
    format_time,
)
from custody.errors import FormatError

H = "ab" * 32


def base(**changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "v": 1,
        "index": 3,
        "time": "2025-03-01T12:00:00.123456Z",
        "actor": {"authority": "fr-pj", "subject": "alice", "role": "investigator"},
        "action": "download.completed",
        "package": "pkg-1",
        "item": "disk.img",
        "outcome": "allowed",
        "reason": None,
        "legal": {"basis": "EIO", "request_reference": "REQ-1"},
        "details": {"sha256": "00" * 32, "bytes_sent": 1234, "resumed": False, "expires_at": None},
        "prev": H,
        "package_prev": None,
    }
    entry.update(changes)
    return entry


def test_valid_entry_round_trips() -> None:
    data = base()
    entry = Entry.from_dict(data)
    assert entry.to_dict() == data
    assert entry.action is Action.DOWNLOAD_COMPLETED and entry.actor.role is Role.INVESTIGATOR
    assert entry.canonical_bytes() == rfc8785.dumps(data)
    assert entry.leaf_hash() == hashlib.sha256(b"\x00" + rfc8785.dumps(data)).digest()
    assert Entry.from_json_bytes(json.dumps(data, indent=2).encode()) == entry


def test_entry_is_immutable() -> None:
    entry = Entry.from_dict(base())
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.index = 4  # type: ignore[misc]
    with pytest.raises(TypeError):
        entry.details["sha256"] = "x"  # type: ignore[index]


def test_constructor_coerces_enums_and_validates() -> None:
    entry = Entry(index=0, time="2025-01-01T00:00:00.000000Z", actor=Actor("a", "b", Role.SYSTEM),
                  action=Action.KEY_ROTATED, outcome=Outcome.ALLOWED)
    assert entry.to_dict()["details"] == {} and entry.prev is None
    with pytest.raises(FormatError):
        Entry(index=0, time="2025-01-01T00:00:00.000000Z", actor=Actor("a", "b", Role.SYSTEM),
              action="nope", outcome=Outcome.ALLOWED)  # type: ignore[arg-type]


BAD: list[tuple[str, dict[str, Any]]] = [
    ("v", {"v": 2}),
    ("v", {"v": True}),
    ("index", {"index": -1}),
    ("index", {"index": 2**53}),
    ("index", {"index": "3"}),
    ("index", {"index": True}),
    ("time", {"time": "2025-03-01T12:00:00Z"}),
    ("time", {"time": "2025-03-01 12:00:00.123456Z"}),
    ("time", {"time": "2025-13-01T12:00:00.123456Z"}),
    ("time", {"time": "2025-03-01T12:00:00.123456+00:00"}),
    ("time", {"time": "\uff12025-03-01T12:00:00.123456Z"}),  # FULLWIDTH DIGIT TWO
    ("actor", {"actor": {"authority": "x", "subject": "y"}}),
    ("role", {"actor": {"authority": "x", "subject": "y", "role": "admin"}}),
    ("action", {"action": "package.deleted"}),
    ("outcome", {"outcome": "ok"}),
    ("reason", {"outcome": "denied"}),
    ("reason", {"outcome": "failed", "reason": ""}),
    ("legal", {"legal": {"basis": "x"}}),
    ("legal", {"legal": "EIO"}),
    ("details", {"details": {"x": 1.5}}),
    ("details", {"details": {"x": [1]}}),
    ("details", {"details": {"x": 2**53}}),
    ("details", {"details": []}),
    ("unicode", {"details": {"x": "\ud800"}}),
    ("unicode", {"item": "a\udfffb"}),
    ("prev", {"prev": H.upper()}),
    ("prev", {"prev": "ab"}),
    ("prev", {"prev": None}),
    ("prev", {"index": 0}),
    ("package_prev", {"package": None, "package_prev": H}),
    ("package", {"package": ""}),
    ("package", {"package": 5}),
    ("size", {"reason": "x" * MAX_ENTRY_BYTES}),
]


@pytest.mark.parametrize("rule,changes", BAD, ids=[f"{r}-{i}" for i, (r, _) in enumerate(BAD)])
def test_contract_violations_are_format_errors(rule: str, changes: dict[str, Any]) -> None:
    with pytest.raises(FormatError):
        Entry.from_dict(base(**changes))


def test_error_names_index_when_known() -> None:
    with pytest.raises(FormatError) as info:
        Entry.from_dict(base(outcome="denied"))
    assert info.value.index == 3 and "reason" in info.value.reason


def test_missing_and_extra_keys() -> None:
    data = base()
    del data["item"]
    with pytest.raises(FormatError, match="missing \\['item'\\]"):
        Entry.from_dict(data)
    with pytest.raises(FormatError, match="unexpected \\['extra'\\]"):
        Entry.from_dict(base(extra=1))
    with pytest.raises(FormatError):
        Entry.from_dict([base()])


@pytest.mark.parametrize("raw", [b'{"v":1.0}', b'{"v":1,"v":1}', b"\xff", b"[]"])
def test_from_json_bytes_rejects(raw: bytes) -> None:
    with pytest.raises(FormatError):
        Entry.from_json_bytes(raw)


def test_from_json_bytes_rejects_float_even_if_integral() -> None:
    text = json.dumps(base()).replace('"bytes_sent": 1234', '"bytes_sent": 1234.0').encode()
    with pytest.raises(FormatError, match="float"):
        Entry.from_json_bytes(text)


DETAIL_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-(2**53) + 1, 2**53 - 1),
                          st.text(st.characters(exclude_categories=("Cs",)), max_size=10))


@given(
    st.dictionaries(
        st.text(st.characters(exclude_categories=("Cs",)), max_size=6), DETAIL_VALUES, max_size=6
    ),
    st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=10),
)
def test_canonical_bytes_equal_rfc8785(details: dict[str, Any], item: str) -> None:
    data = base(details=details, item=item)
    assert Entry.from_dict(data).canonical_bytes() == rfc8785.dumps(data)


def test_format_time() -> None:
    from datetime import datetime, timedelta, timezone

    moment = datetime(2025, 3, 1, 13, 0, 0, 5, tzinfo=timezone(timedelta(hours=1)))
    assert format_time(moment) == "2025-03-01T12:00:00.000005Z"
    with pytest.raises(ValueError):
        format_time(datetime(2025, 3, 1))
    entry = Entry.from_dict(base(time=format_time(moment)))
    assert entry.timestamp == moment


# -- versions 1 and 2 ------------------------------------------------------------------------------

def _v2(**change: Any) -> dict[str, Any]:
    return base(**{"v": 2, "token": {"kid": "k1", "jkt": "A" * 43, "jti": "t-1"}, **change})


def test_version_2_carries_the_token() -> None:
    entry = Entry.from_dict(_v2())
    assert entry.v == 2 and entry.token == TokenRef("k1", "A" * 43, "t-1")
    assert b'"token":{"jkt":"' + b"A" * 43 + b'","jti":"t-1","kid":"k1"}' in entry.canonical_bytes()
    assert Entry.from_json_bytes(entry.canonical_bytes()) == entry
    assert Entry.from_dict(_v2(token=None)).token is None


@pytest.mark.parametrize("data", [
    base(token=None),  # v1 with a token key
    base(v=2),  # v2 without one
    _v2(token={"kid": "k1", "jkt": "short", "jti": "t"}),
    _v2(token={"kid": "", "jkt": "A" * 43, "jti": "t"}),
    _v2(token={"kid": "k", "jkt": "A" * 43}),
    _v2(token="k1"),
    base(v=3),
])
def test_version_rules(data: dict[str, Any]) -> None:
    with pytest.raises(FormatError):
        Entry.from_dict(data)
