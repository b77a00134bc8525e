"""custody/export.py: writing and reading the JSON Lines export."""

from __future__ import annotations

import io
import json
import random

import pytest

from custody.errors import FormatError
from custody.export import (
    MAX_LINE_BYTES,
    ExportRecord,
    dumps_export,
    iter_export,
    read_export,
    write_export,
)
from tests.custody.ledgers import random_ledger

LEDGER = random_ledger(6, random.Random(3))


def test_round_trip() -> None:
    data = LEDGER.export_bytes()
    export = read_export(io.BytesIO(data))
    assert export.header.tree_size == 6 and export.header.origin == LEDGER.signer.name
    assert [r.entry for r in export.records] == LEDGER.entries
    assert [r.leaf_hash for r in export.records] == LEDGER.leaf_hashes
    assert export.checkpoint_note == LEDGER.note()
    assert read_export(io.BytesIO(dumps_export(export))) == export
    # str lines work too (split on "\n" only: entries may hold U+2028, which str.splitlines
    # would split on), and each entry line holds the canonical bytes verbatim.
    assert read_export(line + "\n" for line in data.decode().split("\n")[:-1]) == export
    assert LEDGER.entries[0].canonical_bytes() in data.splitlines()[1]


def test_write_uses_given_leaf_hashes_verbatim() -> None:
    out = io.BytesIO()
    hashes = [bytes(32)] * 6
    assert write_export(LEDGER.entries, hashes, LEDGER.note(), out) == 6
    assert all(r.leaf_hash == bytes(32) for r in read_export(io.BytesIO(out.getvalue())).records)
    with pytest.raises(ValueError):
        write_export(LEDGER.entries, hashes[:5], LEDGER.note(), io.BytesIO())


def _lines() -> list[bytes]:
    return LEDGER.export_bytes().splitlines(keepends=True)


def _replace(n: int, text: bytes) -> list[bytes]:
    lines = _lines()
    lines[n - 1] = text
    return lines


CASES = [
    ("empty", [], 1),
    ("header not first", _lines()[1:], 1),
    ("wrong format", _replace(1, b'{"format":"x","version":1,"origin":"o","tree_size":1}\n'), 1),
    ("bad json", _replace(3, b'{"entry":\n'), 3),
    ("not utf-8", _replace(3, b'{"\xff":1}\n'), 3),
    (
        "duplicate key",
        _replace(2, b'{"leaf_hash":"' + b"a" * 64 + b'","leaf_hash":"b","entry":{}}\n'),
        2,
    ),
    (
        "bad leaf hash",
        _replace(2, json.dumps({"leaf_hash": "AB" * 32, "entry": {}}).encode() + b"\n"),
        2,
    ),
    ("unknown line", _replace(4, b'{"hello":1}\n'), 4),
    ("no checkpoint", _lines()[:-1], 8),
    ("after checkpoint", [*_lines(), b'{"x":1}\n'], 9),
    ("blank line", _replace(5, b"\n"), 5),
    ("array line", _replace(5, b"[]\n"), 5),
    ("huge line", _replace(5, b" " * (MAX_LINE_BYTES + 1)), 5),
]


@pytest.mark.parametrize("name,lines,line", CASES, ids=[c[0] for c in CASES])
def test_malformed_exports_name_the_line(name: str, lines: list[bytes], line: int) -> None:
    with pytest.raises(FormatError) as info:
        read_export(lines)
    assert info.value.line == line, str(info.value)


def test_iter_export_streams() -> None:
    items = iter_export(_lines())
    next(items)
    first = next(items)
    assert isinstance(first, ExportRecord) and first.entry == LEDGER.entries[0]
