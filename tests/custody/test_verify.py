"""custody/verify.py: full-export verification and the tamper suite (pure, no database)."""

from __future__ import annotations

import copy
import io
import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from custody.checkpoint import Checkpoint
from custody.entry import Entry
from custody.errors import (
    ChainError,
    ForkError,
    FormatError,
    LeafHashMismatch,
    RollbackError,
    RootMismatch,
    SequenceError,
    SignatureError,
    VerificationError,
)
from custody.export import read_export
from custody.note import Signer
from custody.verify import VerifiedLedger, verify_export, verify_export_lines
from tests.custody.ledgers import ORIGIN, Ledger, random_ledger, signer

N = 12
LEDGER = random_ledger(N, random.Random(7), packages=3)
KEY = LEDGER.signer.verifier_key
Lines = list[dict[str, Any]]


def lines() -> Lines:
    return copy.deepcopy(BASE_LINES)


BASE_LINES = LEDGER.export_lines()


def encode(doc: Lines) -> bytes:
    return b"".join(json.dumps(obj, ensure_ascii=False).encode() + b"\n" for obj in doc)


def check(doc: Lines, *, trusted: Checkpoint | None = None) -> VerifiedLedger:
    """Verify both ways (streaming lines and the read model); they must agree."""
    data = encode(doc)
    try:
        streamed = verify_export_lines(io.BytesIO(data), KEY, trusted_checkpoint=trusted)
    except VerificationError as exc:
        with pytest.raises(type(exc)) as again:
            verify_export(read_export(io.BytesIO(data)), KEY, trusted_checkpoint=trusted)
        assert again.value.index == exc.index
        raise
    assert verify_export(read_export(io.BytesIO(data)), KEY, trusted_checkpoint=trusted) == streamed
    return streamed


def expect(
    doc: Lines, error: type[VerificationError], index: int | None, **kw: Any
) -> VerificationError:
    with pytest.raises(error) as info:
        check(doc, **kw)
    assert type(info.value) is error, f"{type(info.value).__name__}: {info.value}"
    assert info.value.index == index, str(info.value)
    return info.value


def entries(doc: Lines) -> list[dict[str, Any]]:
    return [line["entry"] for line in doc[1:-1]]


def rehash(line: dict[str, Any]) -> None:
    line["leaf_hash"] = Entry.from_dict(line["entry"]).leaf_hash().hex()


def test_untampered_export_verifies() -> None:
    result = check(lines())
    assert (result.entry_count, result.tree_size, result.origin) == (N, N, ORIGIN)
    assert result.root == LEDGER.checkpoint().root
    assert result.package_count == len({e.package for e in LEDGER.entries if e.package})


def test_empty_ledger_verifies() -> None:
    empty = Ledger([], signer())
    data = empty.export_bytes()
    assert verify_export_lines(io.BytesIO(data), KEY).tree_size == 0


# --- change any field of any entry --------------------------------------------------------


def _other(field: str, entry: dict[str, Any]) -> tuple[str, Any] | None:
    """A different but still valid value for ``field`` of ``entry`` (None if there is none)."""
    alternatives: dict[str, Any] = {
        "time": "2031-07-04T01:02:03.000004Z",
        "actor.authority": entry["actor"]["authority"] + "x",
        "actor.subject": entry["actor"]["subject"] + "x",
        "actor.role": "auditor" if entry["actor"]["role"] != "auditor" else "operator",
        "action": "ledger.read" if entry["action"] != "ledger.read" else "ledger.exported",
        "package": (entry["package"] or "pkg-new") + "-x",
        "item": (entry["item"] or "") + "x",
        "reason": (entry["reason"] or "") + "x",
        "legal": None if entry["legal"] else {"basis": "b", "request_reference": "r"},
        "details": {**entry["details"], "size": entry["details"]["size"] + 1},
        "prev": None if entry["prev"] is None else "0" * 64,
        "package_prev": "1" * 64,
        "outcome": "failed" if entry["outcome"] == "denied" else "denied",
    }
    if field == "prev" and entry["prev"] is None:
        return None
    return field, alternatives[field]


def _set(entry: dict[str, Any], field: str, value: Any) -> None:
    if field.startswith("actor."):
        entry["actor"][field.split(".")[1]] = value
    else:
        entry[field] = value
        if field == "outcome" and not entry["reason"]:
            entry["reason"] = "refused"
        if field == "package_prev" and entry["package"] is None:
            entry["package"] = "pkg-z"  # package_prev needs a package to be valid


FIELDS = ["time", "actor.authority", "actor.subject", "actor.role", "action", "package", "item",
          "reason", "legal", "details", "prev", "package_prev", "outcome"]


@pytest.mark.parametrize("field", FIELDS)
@pytest.mark.parametrize("i", [0, 1, N // 2, N - 1])
def test_changed_field_is_a_leaf_hash_mismatch(field: str, i: int) -> None:
    doc = lines()
    other = _other(field, doc[1 + i]["entry"])
    if other is None:  # entry 0 must have a null prev: giving it one makes it invalid
        doc[1]["entry"]["prev"] = "0" * 64
        expect(doc, FormatError, 0)
        return
    _set(doc[1 + i]["entry"], field, other[1])
    expect(doc, LeafHashMismatch, i)


@pytest.mark.parametrize("field", ["time", "actor.subject", "action", "details", "reason"])
@pytest.mark.parametrize("i", [0, 3, N - 2])
def test_changed_field_with_recomputed_leaf_hash_breaks_the_chain(field: str, i: int) -> None:
    doc = lines()
    _set(doc[1 + i]["entry"], field, _other(field, doc[1 + i]["entry"])[1])  # type: ignore[index]
    rehash(doc[1 + i])
    error = expect(doc, ChainError, i + 1)
    assert "prev" in error.reason


def test_changed_last_entry_with_recomputed_leaf_hash_is_a_root_mismatch() -> None:
    doc = lines()
    doc[N]["entry"]["time"] = "2031-07-04T01:02:03.000004Z"
    rehash(doc[N])
    expect(doc, RootMismatch, None)


def test_changed_index_is_a_sequence_error() -> None:
    doc = lines()
    doc[1 + 4]["entry"]["index"] = 5
    expect(doc, SequenceError, 4)


@pytest.mark.parametrize(
    "change",
    [
        {"v": 3},
        {"action": "bogus"},
        {"outcome": "denied", "reason": None},
        {"details": {"x": 1.5}},
        {"time": "yesterday"},
    ],
)
def test_invalid_change_is_a_format_error_at_that_entry(change: dict[str, Any]) -> None:
    doc = lines()
    doc[1 + 5]["entry"].update(change)
    error = expect(doc, FormatError, 5)
    assert isinstance(error, FormatError) and error.line == 7


def test_changed_recorded_leaf_hash() -> None:
    doc = lines()
    doc[1 + 2]["leaf_hash"] = "f" * 64
    expect(doc, LeafHashMismatch, 2)


# --- delete, insert, reorder, truncate ----------------------------------------------------


@pytest.mark.parametrize("i", [0, 5, N - 1])
def test_deleted_entry(i: int) -> None:
    doc = lines()
    del doc[1 + i]
    expect(doc, SequenceError, i)


@pytest.mark.parametrize("i,j", [(0, 3), (4, 4), (6, 2), (N, 1)])
def test_inserted_entry(i: int, j: int) -> None:
    doc = lines()
    doc.insert(1 + i, copy.deepcopy(doc[1 + j]))
    # A copy of entry j placed at position i is out of place there -- or, when j == i, the
    # original entry i now one further down is.
    expect(doc, SequenceError, i + 1 if i == j else i)


def test_inserted_forged_entry_with_a_valid_chain_at_the_end() -> None:
    doc = lines()
    last = Entry.from_dict(doc[N]["entry"])
    forged = dict(
        copy.deepcopy(doc[N]["entry"]),
        index=N,
        prev=last.leaf_hash().hex(),
        package=None,
        package_prev=None,
        item=None,
    )
    doc.insert(N + 1, {"leaf_hash": Entry.from_dict(forged).leaf_hash().hex(), "entry": forged})
    expect(doc, SequenceError, N)


@pytest.mark.parametrize("i,j", [(0, 1), (2, 9), (N - 2, N - 1)])
def test_reordered_entries(i: int, j: int) -> None:
    doc = lines()
    doc[1 + i], doc[1 + j] = doc[1 + j], doc[1 + i]
    expect(doc, SequenceError, i)


@pytest.mark.parametrize("k", [0, 1, N - 1])
def test_truncated_tail_with_the_original_checkpoint(k: int) -> None:
    doc = lines()
    del doc[1 + k:-1]
    expect(doc, SequenceError, k)


@pytest.mark.parametrize("k", [0, 1, 7, N - 1])
def test_truncated_tail_with_an_older_checkpoint_is_a_rollback(k: int) -> None:
    old = [json.loads(line) for line in LEDGER.export_bytes(k).splitlines()]
    assert check(old).tree_size == k  # on its own, a shorter log is a valid log ...
    expect(old, RollbackError, k, trusted=LEDGER.checkpoint())  # ... but not after seeing N


def test_trusted_checkpoint_at_same_or_smaller_size_accepts_extension() -> None:
    for size in (0, 1, 5, N):
        assert check(lines(), trusted=LEDGER.checkpoint(size)).tree_size == N


def test_rewritten_history_resigned_with_another_key() -> None:
    doc = lines()
    doc[1 + 3]["entry"]["actor"]["subject"] = "mallory"
    forged = _rebuild(doc, Signer.generate(ORIGIN))
    expect(forged, SignatureError, None)


def test_rewritten_history_resigned_with_the_log_key_is_a_fork_against_a_trusted_checkpoint() -> (
    None
):
    doc = lines()
    doc[1 + 3]["entry"]["actor"]["subject"] = "mallory"
    forged = _rebuild(doc, LEDGER.signer)  # an insider with the key
    check(forged)  # undetectable without history ...
    expect(forged, ForkError, None, trusted=LEDGER.checkpoint(5))  # ... detected with it
    check(forged, trusted=LEDGER.checkpoint(3))  # (the untouched prefix still matches)


def _rebuild(doc: Lines, key: Signer) -> Lines:
    """Recompute every hash and link of a modified export and sign it: a perfect forgery."""
    out = io.BytesIO()
    rebuilt = []
    heads: dict[str, str] = {}
    prev = None
    for raw in entries(doc):
        raw = dict(
            raw, prev=prev, package_prev=heads.get(raw["package"]) if raw["package"] else None
        )
        entry = Entry.from_dict(raw)
        prev = entry.leaf_hash().hex()
        if entry.package:
            heads[entry.package] = prev
        rebuilt.append(entry)
    ledger = Ledger(rebuilt, key)
    out.write(ledger.export_bytes())
    return [json.loads(line) for line in out.getvalue().splitlines()]


# --- the checkpoint and the header --------------------------------------------------------


def test_tampered_checkpoint_note() -> None:
    doc = lines()
    root_line = doc[-1]["checkpoint"].split("\n")[2]
    doc[-1]["checkpoint"] = doc[-1]["checkpoint"].replace(root_line, "A" * 43 + "=")
    expect(doc, SignatureError, None)


def test_header_disagreeing_with_checkpoint() -> None:
    doc = lines()
    doc[0]["tree_size"] = N - 1
    error = expect(doc, FormatError, None)
    assert isinstance(error, FormatError) and error.line == 1


def test_broken_package_chain_with_a_valid_global_chain() -> None:
    doc = lines()
    target = next(i for i, e in enumerate(entries(doc)) if e["package_prev"] is not None)
    doc[1 + target]["entry"]["package_prev"] = "2" * 64
    forged = _rebuild_global_only(doc)
    expect(forged, ChainError, target)


def _rebuild_global_only(doc: Lines) -> Lines:
    prev = None
    for line in doc[1:-1]:
        line["entry"]["prev"] = prev
        rehash(line)
        prev = line["leaf_hash"]
    return doc


def test_trusted_checkpoint_of_another_log_is_misuse() -> None:
    with pytest.raises(ValueError):
        check(lines(), trusted=Checkpoint("other.log", 1, bytes(32)))


# --- randomized: any mutation of any random ledger is detected, at the right index -------

MUTATIONS = ["field", "field+rehash", "delete", "insert", "swap", "truncate", "leaf_hash"]


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 25), st.randoms(use_true_random=False), st.sampled_from(MUTATIONS), st.data())
def test_random_mutation_is_detected_at_its_index(
    n: int, rng: random.Random, mutation: str, data: st.DataObject
) -> None:
    ledger = random_ledger(n, rng, packages=rng.randint(1, 4))
    doc = [json.loads(line) for line in ledger.export_bytes().splitlines()]
    i = data.draw(st.integers(0, n - 1))
    allowed: tuple[type[VerificationError], ...]
    if mutation == "field":
        field = data.draw(st.sampled_from(FIELDS if i else [f for f in FIELDS if f != "prev"]))
        _set(doc[1 + i]["entry"], field, _other(field, doc[1 + i]["entry"])[1])  # type: ignore[index]
        allowed, index = (LeafHashMismatch,), i
    elif mutation == "field+rehash":
        _set(doc[1 + i]["entry"], "time", "2031-07-04T01:02:03.000004Z")
        rehash(doc[1 + i])
        allowed, index = ((ChainError,), i + 1) if i < n - 1 else ((RootMismatch,), None)
    elif mutation == "delete":
        del doc[1 + i]
        allowed, index = (SequenceError,), i
    elif mutation == "insert":
        j = data.draw(st.integers(0, n - 1))
        at = data.draw(st.integers(0, n))
        doc.insert(1 + at, copy.deepcopy(doc[1 + j]))
        allowed, index = (SequenceError,), at + 1 if at == j else at
    elif mutation == "swap":
        if n < 2:
            return
        j = data.draw(st.integers(0, n - 1).filter(lambda x: x != i))
        doc[1 + i], doc[1 + j] = doc[1 + j], doc[1 + i]
        allowed, index = (SequenceError,), min(i, j)
    elif mutation == "truncate":
        del doc[1 + i:-1]
        allowed, index = (SequenceError,), i
    else:
        doc[1 + i]["leaf_hash"] = "%064x" % (int(doc[1 + i]["leaf_hash"], 16) ^ 1)
        allowed, index = (LeafHashMismatch,), i
    key = ledger.signer.verifier_key
    with pytest.raises(VerificationError) as info:
        verify_export_lines(io.BytesIO(encode(doc)), key)
    assert type(info.value) in allowed, f"{mutation}: {info.value!r}"
    assert info.value.index == index, f"{mutation}: {info.value}"
