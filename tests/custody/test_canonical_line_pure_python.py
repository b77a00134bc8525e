"""The fast verification path without CPython's ``_json`` accelerator (as on other interpreters).

``custody.canonical_line`` calls the C scanner and encoder directly when they exist.  Here a child
interpreter starts with ``_json`` blocked, so ``json`` falls back to its pure-Python parts exactly
as it does where the accelerator is absent; the child must still import the custody verifier, take
the fast path, and give the same answer -- result, or error class, index, line and reason -- as
this process (C accelerated) on a valid export and on every broken one.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import custody.canonical_line
from custody.errors import VerificationError
from custody.note import VerifierKey
from custody.verify import verify_export_lines
from tests.custody import broken_exports

CHILD = r"""
import io, json, sys
sys.modules["_json"] = None  # import _json now fails: json uses its pure-Python scanner/encoder
for loaded in [m for m in sys.modules if m == "json" or m.startswith("json.")]:
    del sys.modules[loaded]  # (site start-up may have imported json already)
import json, json.encoder, json.scanner
assert json.scanner.c_make_scanner is None and json.encoder.c_make_encoder is None
import custody._walk, custody.canonical_line, custody.verify
from custody.errors import VerificationError
from custody.export import read_export_line
from custody.note import VerifierKey
assert custody.canonical_line.C_ACCELERATED is False
key = VerifierKey.parse(sys.argv[1])
reference_reads = []
def counting(line, number, position, **kw):
    reference_reads.append(number)
    return read_export_line(line, number, position, **kw)
custody._walk.read_export_line = counting
results = {}
for path in sys.argv[2:]:
    data = open(path, "rb").read()
    for fast in (True, False):
        reference_reads.clear()
        try:
            verified = custody.verify.verify_export_lines(io.BytesIO(data), key, fast_path=fast)
            outcome = ["verified", verified.entry_count, verified.root.hex()]
        except VerificationError as exc:
            outcome = [type(exc).__name__, exc.index, getattr(exc, "line", None), exc.reason]
        results[f"{path} fast={fast}"] = [outcome, list(reference_reads)]
print(json.dumps(results))
"""


def _outcome(data: bytes, *, fast: bool) -> list[object]:
    try:
        verified = verify_export_lines(iter(data.splitlines(keepends=True)),
                                       VerifierKey.parse(broken_exports.KEY), fast_path=fast)
    except VerificationError as exc:
        return [type(exc).__name__, exc.index, getattr(exc, "line", None), exc.reason]
    return ["verified", verified.entry_count, verified.root.hex()]


def _reordered_and_rehashed(export: bytes) -> bytes:
    """The second line's entry with its keys in reverse order, and the recorded leaf hash made
    the hash of those bytes: what a forger would try against a checker that does not sort."""
    lines = export.splitlines(keepends=True)
    record = json.loads(lines[1])
    body = json.dumps(dict(reversed(list(record["entry"].items()))), ensure_ascii=False,
                      separators=(",", ":")).encode("utf-8")
    forged = hashlib.sha256(b"\x00" + body).hexdigest().encode()
    lines[1] = b'{"entry":' + body + b',"leaf_hash":"' + forged + b'"}\n'
    return b"".join(lines)


def test_without_the_c_accelerator_both_paths_agree_with_the_c_path(tmp_path: Path) -> None:
    assert custody.canonical_line.C_ACCELERATED  # this interpreter: the C path is the one tested
    exports = {"valid": broken_exports.LEDGER.export_bytes()}
    exports.update({name: make() for name, (make, _cls, _index) in
                    broken_exports.INTEGRITY_FAILURES.items()})
    exports["entry keys reordered, leaf hash forged"] = _reordered_and_rehashed(exports["valid"])
    paths = {}
    for number, (name, data) in enumerate(exports.items()):
        paths[name] = tmp_path / f"{number}.jsonl"
        paths[name].write_bytes(data)
    done = subprocess.run([sys.executable, "-c", CHILD, broken_exports.KEY,
                           *map(str, paths.values())],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    child = json.loads(done.stdout)

    for name, data in exports.items():
        here = _outcome(data, fast=True)
        assert here == _outcome(data, fast=False), name
        for fast in (True, False):
            outcome, _reads = child[f"{paths[name]} fast={fast}"]
            assert outcome == here, (name, fast)
        if name in broken_exports.INTEGRITY_FAILURES:
            expected_class = broken_exports.INTEGRITY_FAILURES[name][1]
            # re-signed exports are intact ledgers; only the custody rules (not run here) refuse
            assert here[0] == ("verified" if expected_class == "RulesViolated"
                               else expected_class), name

    assert child[f"{paths['valid']} fast=True"][0][0] == "verified"
    assert _outcome(exports["entry keys reordered, leaf hash forged"], fast=True)[0] \
        == "LeafHashMismatch"
    entries = len(broken_exports.LEDGER.entries)
    # The pure-Python fast path really ran: only the header and checkpoint lines took the
    # reference path (the reference run reads every line).
    assert child[f"{paths['valid']} fast=True"][1] == [1, entries + 2]
    assert child[f"{paths['valid']} fast=False"][1] == list(range(1, entries + 3))
