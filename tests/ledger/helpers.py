"""Helpers shared by the ledger tests."""

from __future__ import annotations

import io

from custody.checkpoint import Checkpoint
from custody.entry import Actor
from custody.verify import VerifiedLedger, verify_export_lines
from service.ledger import Event, Ledger

ORIGIN = "evidence-exchange.test/log"


def event(n: int = 0, *, package: str | None = "pkg-a", outcome: str = "allowed",
          reason: str | None = None) -> Event:
    """A valid event; ``n`` varies its content."""
    return Event(actor=Actor("DE-BKA", f"officer-{n}", "investigator"), action="package.read",
                 outcome=outcome, package=package, reason=reason, details={"n": n})


def export_bytes(ledger: Ledger) -> bytes:
    """A fresh export of ``ledger``."""
    out = io.BytesIO()
    ledger.export(out)
    return out.getvalue()


def verify(data: bytes, ledger: Ledger, trusted: Checkpoint | None = None) -> VerifiedLedger:
    """Verify export bytes with custody's offline verifier and the ledger's public key."""
    return verify_export_lines(data.splitlines(keepends=True), ledger.verifier_key,
                               trusted_checkpoint=trusted)
