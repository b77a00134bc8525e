"""custody/verify_parallel.py with real worker processes (the chunk logic itself is cross-checked
against the reference path in test_canonical_line.py)."""

from __future__ import annotations

import io
import random

import pytest

from custody import verify_parallel
from custody.errors import SequenceError
from custody.verify import verify_export_lines
from tests.custody.ledgers import random_ledger

LEDGER = random_ledger(40, random.Random(5), packages=4)
KEY = LEDGER.signer.verifier_key


def test_worker_processes_verify_an_export(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify_parallel, "CHUNK_LINES", 8)
    result = verify_export_lines(io.BytesIO(LEDGER.export_bytes()), KEY, workers=2,
                                 trusted_checkpoint=LEDGER.checkpoint(13))
    assert result == verify_export_lines(io.BytesIO(LEDGER.export_bytes()), KEY, fast_path=False)
    assert result.root == LEDGER.checkpoint().root


def test_worker_processes_report_the_first_bad_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(verify_parallel, "CHUNK_LINES", 8)
    lines = LEDGER.export_bytes().splitlines(keepends=True)
    del lines[1 + 21]  # entry 21 missing: entry 22 sits at position 21
    with pytest.raises(SequenceError) as info:
        verify_export_lines(iter(lines), KEY, workers=2)
    assert type(info.value) is SequenceError and info.value.index == 21
    lines = LEDGER.export_bytes().splitlines(keepends=True)
    lines[1 + 17], lines[1 + 18] = lines[1 + 18], lines[1 + 17]
    with pytest.raises(SequenceError) as info:
        verify_export_lines(iter(lines), KEY, workers=2)
    assert type(info.value) is SequenceError and info.value.index == 17


def test_workers_must_be_positive() -> None:
    with pytest.raises(ValueError):
        verify_export_lines(io.BytesIO(LEDGER.export_bytes()), KEY, workers=0)

