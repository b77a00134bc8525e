"""evx/client/record.py's pure checks: the package pin and the authorities' declared keys."""

from __future__ import annotations

from dataclasses import replace

from custody.entry import TokenRef
from evx.client.record import check_record
from evx.client.state import PackagePin
from tests.custody.ledgers import Ledger, chain, exchange_ledger

LEDGER = exchange_ledger()
PACKAGE = [e for e in LEDGER.entries if e.package == "pkg-x"]


def _with_token(jkt: str) -> list:
    specs = [{"time": e.time, "actor": e.actor, "action": e.action, "outcome": e.outcome,
              "package": e.package, "item": e.item, "reason": e.reason, "legal": e.legal,
              "details": dict(e.details), "token": TokenRef("k", jkt, f"t{i}")}
             for i, e in enumerate(LEDGER.entries)]
    return [e for e in Ledger(chain(specs), LEDGER.signer).entries if e.package == "pkg-x"]


def test_a_legitimate_record_holds() -> None:
    last = PACKAGE[-1]
    assert check_record(PACKAGE, PackagePin(last.index, last.leaf_hash().hex()), {}) == []


def test_a_vanished_pinned_entry_is_named() -> None:
    gone = PACKAGE[-1]
    problems = check_record(PACKAGE[:-1], PackagePin(gone.index, gone.leaf_hash().hex()), {})
    assert problems == [
        f"entry {gone.index}: verified here before (leaf hash {gone.leaf_hash().hex()}) "
        "and no longer in the package's record: entries were removed or rewritten"
    ]
    rewritten = replace(gone, time="2030-01-01T00:00:00.000000Z")  # type: ignore[call-arg]
    assert check_record(
        [*PACKAGE[:-1], rewritten], PackagePin(gone.index, gone.leaf_hash().hex()), {}
    )


def test_an_undeclared_key_is_named() -> None:
    entries = _with_token("B" * 43)
    assert check_record(entries, None, {"nl-om": frozenset({"B" * 43})}) == []
    problems = check_record(entries, None, {"nl-om": frozenset({"C" * 43})})
    partner = [e.index for e in entries if e.actor.authority == "nl-om"]
    assert [p.split(":")[0] for p in problems] == [f"entry {i}" for i in partner]
    assert "acts for nl-om under key 'k'" in problems[0]
