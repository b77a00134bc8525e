"""custody/canonical_line.py and the fast path of verify_export_lines: same answers as the
reference.

Every export here is written as our exporter writes it (canonical lines), so the fast path is
really taken; each check runs the fast path, the reference path (``fast_path=False``) and the
chunked worker path (threads standing in for processes, tiny chunks) and demands the same result
or the same error: class, index, line and reason.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import random
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from custody import _walk as walk_module
from custody import verify_parallel
from custody.canonical_line import check_canonical_entry_line, check_entry_run
from custody.entry import Entry
from custody.errors import (
    ChainError,
    FormatError,
    LeafHashMismatch,
    SequenceError,
    VerificationError,
)
from custody.export import read_export_line
from custody.verify import verify_export_lines
from tests.custody.ledgers import random_ledger

LEDGER = random_ledger(16, random.Random(11), packages=3)
KEY = LEDGER.signer.verifier_key
EXPORT = LEDGER.export_bytes()
Outcome = tuple[Any, ...]


@pytest.fixture(autouse=True)
def _threads_for_workers(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks of 4 lines, checked in threads: the chunk logic without process start-up costs."""
    monkeypatch.setattr(verify_parallel, "CHUNK_LINES", 4)
    monkeypatch.setattr(verify_parallel, "ProcessPoolExecutor",
                        lambda max_workers, mp_context: ThreadPoolExecutor(max_workers))


def _outcome(run: Callable[[], Any]) -> Outcome:
    try:
        result = run()
    except VerificationError as exc:
        return (type(exc), exc.index, getattr(exc, "line", None), exc.reason)
    return ("verified", result)


def outcomes(data: bytes, **kw: Any) -> tuple[Outcome, Outcome, Outcome]:
    lines = data.splitlines(keepends=True)
    fast = _outcome(lambda: verify_export_lines(iter(lines), KEY, **kw))
    reference = _outcome(lambda: verify_export_lines(iter(lines), KEY, fast_path=False, **kw))
    chunked = _outcome(lambda: verify_export_lines(iter(lines), KEY, workers=2, **kw))
    return fast, reference, chunked


def agree(data: bytes, **kw: Any) -> Outcome:
    fast, reference, chunked = outcomes(data, **kw)
    assert fast == reference
    assert chunked == reference
    return reference


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8", "surrogatepass"
    )


def docs(data: bytes = EXPORT) -> list[dict[str, Any]]:
    return [json.loads(line) for line in data.splitlines()]


def encode(doc: list[dict[str, Any]]) -> bytes:
    return b"".join(canonical(obj) + b"\n" for obj in doc)


def raw_rehash(data: bytes) -> bytes:
    """Make every entry line's recorded leaf hash the hash of the bytes between its fixed prefix
    and suffix -- what a forger would do to get an invalid entry past a careless fast path."""
    out = []
    for line in data.splitlines(keepends=True):
        body = line.rstrip(b"\n")
        if (
            body.startswith(b'{"entry":')
            and body[-80:-66] == b',"leaf_hash":"'
            and body.endswith(b'"}')
        ):
            digest = hashlib.sha256(b"\x00" + body[9:-80]).hexdigest().encode()
            line = body[:-66] + digest + b'"}' + line[len(body):]
        out.append(line)
    return b"".join(out)


def replace_in_line(data: bytes, number: int, old: bytes, new: bytes) -> bytes:
    lines = data.splitlines(keepends=True)
    assert old in lines[number - 1], (old, lines[number - 1])
    lines[number - 1] = lines[number - 1].replace(old, new, 1)
    return b"".join(lines)


# --- the fast path is taken, and is right ---------------------------------------------------


def test_writer_output_is_entirely_on_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    reference_reads: list[int] = []

    def counting(line: bytes | str, number: int, position: int, **kw: Any) -> Any:
        reference_reads.append(number)
        return read_export_line(line, number, position, **kw)

    monkeypatch.setattr(walk_module, "read_export_line", counting)
    result = verify_export_lines(io.BytesIO(EXPORT), KEY)
    assert result.root == LEDGER.checkpoint().root and result.entry_count == 16
    assert reference_reads == [1, 18]  # only the header and the checkpoint line


def test_checked_line_carries_the_entry_and_its_leaf_hash() -> None:
    for entry, line in zip(LEDGER.entries, EXPORT.splitlines()[1:-1], strict=True):
        checked = check_canonical_entry_line(line)
        assert checked is not None
        assert (checked.entry_index, checked.leaf_hash, checked.leaf_hex) == (
            entry.index,
            entry.leaf_hash(),
            entry.leaf_hash().hex(),
        )
        assert (checked.prev, checked.package, checked.package_prev) == (entry.prev, entry.package,
                                                                        entry.package_prev)
        assert check_canonical_entry_line(line.decode()) == checked


def test_run_of_a_whole_aligned_chunk_carries_its_subtree() -> None:
    lines = EXPORT.splitlines()[1:-1]
    run = check_entry_run(4, lines[4:8])
    assert run.entries == 4 and run.first_prev == LEDGER.entries[3].leaf_hash().hex()
    assert run.leaf_hashes == b"".join(e.leaf_hash() for e in LEDGER.entries[4:8])
    assert run.subtree is not None
    misaligned = check_entry_run(3, lines[3:7])
    assert misaligned.entries == 4 and misaligned.subtree is None
    assert check_entry_run(4, lines[5:9]).entries == 0  # first line not at its position


def test_run_stops_before_a_line_that_does_not_link() -> None:
    lines = EXPORT.splitlines()[1:-1]
    assert check_entry_run(0, [lines[0], lines[1], lines[3]]).entries == 2


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 9, 16])
def test_ledgers_of_every_chunk_shape_verify_alike(size: int) -> None:
    ledger = random_ledger(size, random.Random(size), packages=2)
    data = ledger.export_bytes()
    global KEY
    assert ledger.signer.verifier_key == KEY
    fast, reference, chunked = outcomes(data)
    assert fast == reference == chunked
    assert fast[0] == "verified" and fast[1].root == ledger.checkpoint().root


def test_trusted_checkpoint_inside_and_at_chunk_edges() -> None:
    for size in (0, 3, 4, 5, 8, 16):
        result = agree(EXPORT, trusted_checkpoint=LEDGER.checkpoint(size))
        assert result[0] == "verified"


def test_fork_against_a_trusted_checkpoint_inside_a_chunk() -> None:
    other = random_ledger(16, random.Random(99), packages=3)
    outcome = agree(other.export_bytes(), trusted_checkpoint=LEDGER.checkpoint(6))
    assert outcome[0].__name__ == "ForkError"


# --- explicit inputs the fast path must not accept ------------------------------------------


@pytest.mark.parametrize("rehash", [False, True])
def test_duplicate_key_in_an_entry_line(rehash: bool) -> None:
    fix = raw_rehash if rehash else (lambda data: data)
    data = fix(replace_in_line(EXPORT, 5, b',"v":1}', b',"v":1,"v":1}'))
    assert agree(data)[:2] == (FormatError, 3)
    data = fix(replace_in_line(EXPORT, 5, b'"index":3,', b'"index":4,"index":3,'))
    assert agree(data)[:2] == (FormatError, 3)
    data = fix(replace_in_line(EXPORT, 5, b'"actor":{', b'"actor":{"role":"system",'))
    assert agree(data)[:2] == (FormatError, 3)


def test_duplicate_record_key() -> None:
    data = replace_in_line(EXPORT, 5, b'"}\n', b'","leaf_hash":"' + b"0" * 64 + b'"}\n')
    assert agree(data)[:2] == (FormatError, 3)


@pytest.mark.parametrize("old,new", [(b'{"entry":{', b'{"entry": {'), (b',"v":1}', b', "v":1}'),
                                     (b'"}\n', b'" }\n'), (b'"}\n', b'"}\r\n')])
def test_non_canonical_whitespace_still_verifies(old: bytes, new: bytes) -> None:
    outcome = agree(replace_in_line(EXPORT, 5, old, new))
    assert outcome[0] == "verified"


def test_non_canonical_key_order_still_verifies() -> None:
    doc = docs()
    line = doc[4]
    reordered = {
        "leaf_hash": line["leaf_hash"],
        "entry": dict(reversed(list(line["entry"].items()))),
    }
    data = b"".join(canonical(obj) + b"\n" if i != 4 else json.dumps(reordered, ensure_ascii=False,
                    separators=(",", ":")).encode() + b"\n" for i, obj in enumerate(doc))
    assert agree(data)[0] == "verified"


def test_escaped_and_unescaped_unicode() -> None:
    line = next(i for i, text in enumerate(EXPORT.splitlines(), 1) if "é".encode() in text)
    escaped = replace_in_line(EXPORT, line, "é".encode(), b"\\u00e9")
    assert agree(escaped)[0] == "verified"  # same string, so same canonical bytes and hash
    control = next(i for i, text in enumerate(EXPORT.splitlines(), 1) if b"\\u0001" in text)
    assert agree(replace_in_line(EXPORT, line, "é".encode(), b"\\u00E9"))[0] == "verified"
    assert agree(replace_in_line(EXPORT, control, "\u2028".encode(), b"\\u2028"))[0] == "verified"
    lone = replace_in_line(EXPORT, control, b"\\u0001", b"\\ud800")
    assert agree(lone)[:2] == (FormatError, control - 2)


@pytest.mark.parametrize(
    "value,error",
    [
        (2**53 - 1, LeafHashMismatch),
        (-(2**53 - 1), LeafHashMismatch),
        (2**53, FormatError),
        (-(2**53), FormatError),
        (10**400, FormatError),
    ],
)
def test_large_ints(value: int, error: type[VerificationError]) -> None:
    doc = docs()
    doc[3]["entry"]["details"]["size"] = value
    assert agree(encode(doc))[:2] == (error, 2)
    forged = agree(raw_rehash(encode(doc)))  # a valid changed entry then breaks the chain
    assert forged[:2] == ((ChainError, 3) if error is LeafHashMismatch else (FormatError, 2))


@pytest.mark.parametrize(
    "text", [b"1.0", b"1.5", b"1e2", b"-0.0", b"NaN", b"Infinity", b"-Infinity"]
)
def test_floats_and_constants(text: bytes) -> None:
    data = replace_in_line(EXPORT, 4, b'"size":', b'"size":' + text + b',"z":')
    assert agree(data)[:2] == (FormatError, 2)
    data = raw_rehash(replace_in_line(EXPORT, 4, b'"flag":', b'"flag":' + text + b',"g":'))
    assert agree(data)[:2] == (FormatError, 2)


@pytest.mark.parametrize(
    "field,value",
    [
        ("index", True),
        ("index", 2.0),
        ("v", True),
        ("index", -1),
        ("time", "2025-02-30T00:00:00.000000Z"),
        ("prev", "A" * 64),
        ("package", ""),
        ("item", ""),
        ("details", []),
        ("actor", None),
        ("legal", {"basis": "b"}),
        ("action", ["package.read"]),
        ("reason", 5),
        ("outcome", "allowed "),
    ],
)
def test_wrong_field_values(field: str, value: Any) -> None:
    doc = docs()
    doc[3]["entry"][field] = value
    assert agree(encode(doc))[0] in (FormatError, SequenceError, LeafHashMismatch)
    assert agree(raw_rehash(encode(doc)))[:2] in ((FormatError, 2), (SequenceError, 2))


ENTRY_RULES: list[tuple[int, dict[str, Any]]] = [
    (3, {"outcome": "denied", "reason": None}),
    (3, {"outcome": "failed", "reason": ""}),
    (3, {"details": {"n": 2**53}}),
    (3, {"details": {"n": 1.5}}),
    (3, {"details": {"n": [1]}}),
    (3, {"details": {"n": {"a": 1}}}),
    (3, {"prev": None}),
    (0, {"prev": "0" * 64}),
    (3, {"package": None, "package_prev": "0" * 64}),
    (3, {"v": 2}),
    (3, {"index": 2**53}),
    (3, {"time": "2025-03-01T12:00:00.000000+00:00"}),
    (3, {"time": "2025-03-01T24:00:00.000000Z"}),
    (3, {"legal": {"basis": "b", "request_reference": None}}),
    (3, {"actor": {"authority": "a", "subject": "s"}}),
    (3, {"actor": {"authority": 1, "subject": "s", "role": "system"}}),
    (3, {"action": "Package.read"}),
    (3, {"extra": 1}),
    (3, {"item": 0}),
]


@pytest.mark.parametrize("i,change", ENTRY_RULES)
def test_every_entry_rule_holds_on_the_fast_path_with_a_forged_leaf_hash(
    i: int, change: dict[str, Any]
) -> None:
    doc = docs()
    doc[1 + i]["entry"].update(change)
    data = raw_rehash(encode(doc))
    assert check_canonical_entry_line(data.splitlines()[1 + i]) is None
    assert agree(data)[:2] in ((FormatError, i), (SequenceError, i))


def test_non_bmp_details_key_takes_the_reference_path() -> None:
    doc = docs()
    entry = doc[3]["entry"]
    entry["details"] = {"\U0001f600": 1, "\uffff": 2}  # UTF-16 order differs from code points
    doc[3]["leaf_hash"] = Entry.from_dict(entry).leaf_hash().hex()
    lines = encode(doc).splitlines()
    assert check_canonical_entry_line(lines[3]) is None
    assert agree(encode(doc))[:2] == (ChainError, 3)
    # Hashed over its code-point-ordered bytes, the line is not the entry's JCS form.
    assert agree(raw_rehash(encode(doc)))[:2] == (LeafHashMismatch, 2)


def test_uppercase_recorded_leaf_hash() -> None:
    doc = docs()
    doc[3]["leaf_hash"] = doc[3]["leaf_hash"].upper()
    assert agree(encode(doc))[:2] == (FormatError, 2)


def test_content_after_the_checkpoint_line() -> None:
    data = EXPORT + EXPORT.splitlines(keepends=True)[1]
    assert agree(data)[:3] == (FormatError, None, 19)


# --- random ledgers and random single mutations ---------------------------------------------


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 13), st.randoms(use_true_random=False))
def test_random_valid_ledgers_verify_alike(size: int, rng: random.Random) -> None:
    ledger = random_ledger(size, rng, packages=rng.randrange(1, 4))
    outcome = agree(ledger.export_bytes())
    assert outcome[0] == "verified" and outcome[1].root == ledger.checkpoint().root


FIELD_VALUES: list[Any] = [
    None,
    "",
    "x",
    "pkg-0",
    "allowed",
    "denied",
    "ledger.read",
    "auditor",
    0,
    1,
    7,
    -1,
    2**53,
    1.5,
    True,
    False,
    [],
    {},
    {"a": 1},
    "0" * 64,
    "A" * 64,
    "2025-03-01T12:00:00.000000Z",
    "2025-13-01T12:00:00.000000Z",
    "\ud800",
]
ENTRY_FIELDS = [
    "v",
    "index",
    "time",
    "actor",
    "action",
    "package",
    "item",
    "outcome",
    "reason",
    "legal",
    "details",
    "prev",
    "package_prev",
]


def _mutations(rng: random.Random, data: bytes) -> Iterator[bytes]:
    """One random change of a canonical export, as bytes."""
    doc = docs(data)
    n = len(doc) - 2
    kind = rng.randrange(9)
    i = 1 + rng.randrange(n) if n else 0
    if kind == 0 and n:  # a field of an entry, to any value
        doc[i]["entry"][rng.choice(ENTRY_FIELDS)] = rng.choice(FIELD_VALUES)
    elif kind == 1 and n:  # a nested field
        target = rng.choice(["actor", "details", "legal"])
        if isinstance(doc[i]["entry"][target], dict):
            key = rng.choice([*doc[i]["entry"][target], "extra"])
            doc[i]["entry"][target][key] = rng.choice(FIELD_VALUES)
    elif kind == 2 and n:  # the same, with the recorded leaf hash made to match
        doc[i]["entry"][rng.choice(ENTRY_FIELDS)] = rng.choice(FIELD_VALUES)
        with contextlib.suppress(FormatError, TypeError):
            doc[i]["leaf_hash"] = Entry.from_dict(doc[i]["entry"]).leaf_hash().hex()
    elif kind == 3 and n:
        del doc[i]
    elif kind == 4 and n:
        doc.insert(i, dict(doc[1 + rng.randrange(n)]))
    elif kind == 5 and n > 1:
        j = 1 + rng.randrange(n)
        doc[i], doc[j] = doc[j], doc[i]
    elif kind == 6 and n:
        doc[i]["leaf_hash"] = f"{rng.getrandbits(256):064x}"
    encoded = encode(doc)
    if kind == 7:  # one byte changed, anywhere
        position = rng.randrange(len(encoded))
        encoded = encoded[:position] + bytes([rng.randrange(256)]) + encoded[position + 1:]
    elif kind == 8:  # one byte inserted, anywhere
        position = rng.randrange(len(encoded))
        encoded = (
            encoded[:position]
            + rng.choice([b" ", b",", b'"', b"\\", b"0", b"\n", b"}"])
            + encoded[position:]
        )
    yield encoded
    yield raw_rehash(encoded)  # the same change by a forger who fixes up the recorded hash


@settings(max_examples=250, deadline=None)
@given(st.integers(0, 11), st.randoms(use_true_random=False))
def test_random_single_mutation_is_judged_alike(size: int, rng: random.Random) -> None:
    ledger = random_ledger(size, rng, packages=rng.randrange(1, 4))
    for data in _mutations(rng, ledger.export_bytes()):
        agree(data)
