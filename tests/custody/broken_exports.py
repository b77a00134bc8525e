"""Exports broken in every way a verifier must catch: each with the error class and index expected.

Shared by the tests of both verifiers (``python -m custody verify`` and ``evx ledger verify``).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

from custody.checkpoint import Checkpoint
from tests.custody.ledgers import ORIGIN, Ledger, chain, exchange_ledger

LEDGER = exchange_ledger()
KEY = str(LEDGER.signer.verifier_key)


def _lines() -> list[bytes]:
    return LEDGER.export_bytes().split(b"\n")[:-1]


def _join(lines: list[bytes]) -> bytes:
    return b"\n".join(lines) + b"\n"


def resigned(drop_action: str) -> bytes:
    """The exchange with one entry removed and everything re-hashed and re-signed: only the rules
    can tell."""
    specs = [{"time": e.time, "actor": e.actor, "action": e.action, "outcome": e.outcome,
              "package": e.package, "item": e.item, "reason": e.reason, "legal": e.legal,
              "details": dict(e.details)} for e in LEDGER.entries if e.action.value != drop_action]
    return Ledger(chain(specs), LEDGER.signer).export_bytes()


def _bad_root() -> bytes:
    lines = _lines()
    wrong = Checkpoint(ORIGIN, len(LEDGER.entries), b"\x07" * 32).sign(LEDGER.signer)
    lines[-1] = json.dumps({"checkpoint": wrong}).encode()
    return _join(lines)


def _signature_line(transform: Callable[[str], str]) -> bytes:
    lines = _lines()
    note = json.loads(lines[-1])["checkpoint"]
    lines[-1] = json.dumps({"checkpoint": transform(note)}).encode()
    return _join(lines)


def _flip_signature(note: str) -> str:
    body, sig = note.rsplit(" ", 1)
    raw = bytearray(base64.b64decode(sig))
    raw[10] ^= 1
    return f"{body} {base64.b64encode(bytes(raw)).decode()}\n"


def _second_bad_line(note: str) -> str:
    return note + _flip_signature(note).rsplit("\n\n", 1)[1]


INTEGRITY_FAILURES: dict[str, tuple[Callable[[], bytes], str, int | None]] = {
    # name: (the export's bytes, error class, index)
    "checkpoint line missing": (lambda: _join(_lines()[:-1]), "FormatError", None),
    "last entry missing": (lambda: _join(_lines()[:-2] + _lines()[-1:]), "SequenceError", 8),
    "cut mid-line": (lambda: LEDGER.export_bytes()[:-40], "FormatError", None),
    "empty file": (lambda: b"", "FormatError", None),
    "only the header": (lambda: _join(_lines()[:1]), "FormatError", None),
    "content after the checkpoint": (lambda: _join([*_lines(), _lines()[1]]), "FormatError", None),
    "duplicate key": (
        lambda: _join(
            [
                _lines()[0],
                _lines()[1].replace(b'{"entry"', b'{"leaf_hash":"00","entry"', 1),
                *_lines()[2:],
            ]
        ),
        "FormatError",
        0,
    ),
    "header tree size": (
        lambda: _join([_lines()[0].replace(b'"tree_size":9', b'"tree_size":8'), *_lines()[1:]]),
        "FormatError",
        None,
    ),
    "header origin": (
        lambda: _join([_lines()[0].replace(ORIGIN.encode(), b"evx.test/other"), *_lines()[1:]]),
        "FormatError",
        None,
    ),
    "bad signature": (lambda: _signature_line(_flip_signature), "SignatureError", None),
    "a second, bad, line by the pinned key": (
        lambda: _signature_line(_second_bad_line),
        "FormatError",
        None,
    ),
    "not UTF-8": (lambda: LEDGER.export_bytes().replace(b"\xc3\xa9", b"\xe9", 1), "FormatError", 2),
    "entry text edited": (
        lambda: LEDGER.export_bytes().replace(b'"bram"', b'"brom"', 1),
        "LeafHashMismatch",
        4,
    ),
    "two entries swapped": (
        lambda: _join([_lines()[0], _lines()[2], _lines()[1], *_lines()[3:]]),
        "SequenceError",
        0,
    ),
    "root not the checkpoint's": (_bad_root, "RootMismatch", None),
    "share removed and re-signed": (lambda: resigned("share.created"), "RulesViolated", 5),
    "upload removed and re-signed": (lambda: resigned("item.uploaded"), "RulesViolated", 1),
}
