"""A hostile administrator rewrites the ledger in the database; verification catches it.

The triggers refusing UPDATE/DELETE/TRUNCATE are tested in ``test_triggers.py``; here they are
dropped first, as someone with the database password would. Every change to the evidence is
then caught by ``custody``'s offline verification of an export, naming the entry where one can
be named; truncation and wholesale rewrites are caught against a checkpoint the partner saved.
Query-column edits (not part of the evidence) are caught by the service's own reads.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from custody.checkpoint import Checkpoint
from custody.errors import (
    ChainError,
    ForkError,
    LeafHashMismatch,
    RollbackError,
    SequenceError,
    SignatureError,
)
from service.db import make_engine
from service.ledger import CheckpointInconsistent, Ledger, LedgerCorrupted
from tests.ledger.helpers import ORIGIN, event, export_bytes, verify
from tests.ledger.hostile import HostileAdmin

TRUSTED_SIZE = 10
SIZE = 14
PACKAGES = ("pkg-a", "pkg-b", None)


def _events(changed: int | None = None) -> list[Any]:
    return [event(n + (1000 if n == changed else 0), package=PACKAGES[n % 3])
            for n in range(SIZE)]


@pytest.fixture
def history(db_url: str, log_key: Ed25519PrivateKey
            ) -> Iterator[tuple[Ledger, HostileAdmin, Checkpoint]]:
    """A ledger of SIZE entries whose first TRUSTED_SIZE a partner holds a checkpoint of, a
    checkpoint of all SIZE stored, and an administrator who already dropped the triggers."""
    ledger = Ledger(make_engine(db_url), log_key, origin=ORIGIN, owns_engine=True)
    events = _events()
    ledger.append_many(events[:TRUSTED_SIZE])
    trusted = Checkpoint.verify(ledger.sign_checkpoint().note, ledger.verifier_key)
    ledger.append_many(events[TRUSTED_SIZE:])
    assert verify(export_bytes(ledger), ledger, trusted).tree_size == SIZE
    admin = HostileAdmin(make_engine(db_url))
    admin.drop_triggers()
    try:
        yield ledger, admin, trusted
    finally:
        ledger.close()
        admin.engine.dispose()


def _stored_export(ledger: Ledger) -> bytes:
    """Export under the latest stored checkpoint (what an exporter would ship)."""
    checkpoint = ledger.latest_checkpoint()
    assert checkpoint is not None
    out = io.BytesIO()
    ledger.export_with(out, checkpoint.note)
    return out.getvalue()


def _subject(data: dict[str, Any]) -> None:
    data["actor"]["subject"] = "someone-else"


@pytest.mark.parametrize("field_edit", [
    _subject,
    lambda d: d.update(outcome="denied", reason="made up"),
    lambda d: d.update(action="download.completed"),
    lambda d: d.update(package="pkg-z"),
    lambda d: d.update(time="2001-01-01T00:00:00.000000Z"),
    lambda d: d["details"].update(n=999),
    lambda d: d.update(item="other.bin"),
], ids=["subject", "outcome", "action", "package", "time", "details", "item"])
def test_changed_field_in_canonical_text_is_pinpointed(
        history: tuple[Ledger, HostileAdmin, Checkpoint], field_edit: Any) -> None:
    ledger, admin, _ = history
    admin.edit_entry(5, field_edit, rehash=False)
    with pytest.raises(LeafHashMismatch) as caught:
        verify(export_bytes(ledger), ledger)
    assert caught.value.index == 5


def test_changed_entry_with_recomputed_leaf_hash_breaks_the_chain(
        history: tuple[Ledger, HostileAdmin, Checkpoint]) -> None:
    ledger, admin, _ = history
    forged = admin.edit_entry(5, _subject, rehash=True)
    with pytest.raises(ChainError) as caught:
        verify(export_bytes(ledger), ledger)
    assert caught.value.index == 6  # entry 6's prev still names the genuine entry 5
    assert forged.leaf_hash().hex() not in caught.value.reason
    with pytest.raises(LedgerCorrupted) as read:  # and the service's own reads refuse it
        ledger.entry(5)
    assert read.value.index == 5


def test_changed_query_column_is_refused_by_reads(
        history: tuple[Ledger, HostileAdmin, Checkpoint]) -> None:
    ledger, admin, trusted = history
    admin.set_column(4, package="pkg-z", outcome="denied")
    for read in (lambda: ledger.entry(4), lambda: ledger.package_entries("pkg-z"),
                 lambda: ledger.entries(0, 20)):
        with pytest.raises(LedgerCorrupted, match="disagrees with the canonical entry") as caught:
            read()
        assert caught.value.index == 4
    # The columns are an index, not evidence: the exported evidence is still the genuine log.
    assert verify(export_bytes(ledger), ledger, trusted).tree_size == SIZE


def test_deleted_entry_is_pinpointed(history: tuple[Ledger, HostileAdmin, Checkpoint]) -> None:
    ledger, admin, _ = history
    admin.delete_entry(7)
    with pytest.raises(SequenceError) as caught:
        verify(export_bytes(ledger), ledger)
    assert caught.value.index == 7


def test_inserted_entry_is_pinpointed(history: tuple[Ledger, HostileAdmin, Checkpoint]) -> None:
    ledger, admin, _ = history
    admin.insert_forged(at=4, template=3)
    with pytest.raises(LedgerCorrupted, match="missing"):
        ledger.sign_checkpoint()  # the head says 15 but there is no Merkle node for leaf 14
    with pytest.raises(SequenceError) as caught:
        verify(_stored_export(ledger), ledger)
    # The forgery chains correctly to entry 3; the genuine entry it displaced cannot be at 5.
    assert caught.value.index == 5


def test_reordered_entries_are_pinpointed(
        history: tuple[Ledger, HostileAdmin, Checkpoint]) -> None:
    ledger, admin, _ = history
    admin.swap(3, 8)
    with pytest.raises(SequenceError) as caught:
        verify(export_bytes(ledger), ledger)
    assert caught.value.index == 3


def test_truncated_tail_refused_by_the_log_and_caught_by_the_partner(
        history: tuple[Ledger, HostileAdmin, Checkpoint]) -> None:
    ledger, admin, trusted = history
    admin.truncate_tail(8, drop_checkpoints=False)
    with pytest.raises(CheckpointInconsistent, match="smaller than the signed checkpoint"):
        ledger.sign_checkpoint()
    # The administrator also removes the checkpoints; the log then signs the short tree...
    admin.truncate_tail(8, drop_checkpoints=True)
    data = export_bytes(ledger)
    assert verify(data, ledger).tree_size == 8
    # ...but the partner's saved checkpoint shows entries were cut.
    with pytest.raises(RollbackError) as caught:
        verify(data, ledger, trusted)
    assert caught.value.index == 8


def test_rewritten_history_refused_by_the_log(
        history: tuple[Ledger, HostileAdmin, Checkpoint], db_url: str,
        log_key: Ed25519PrivateKey) -> None:
    _, admin, _ = history
    admin.wipe(drop_checkpoints=False)
    rewriter = Ledger(make_engine(db_url), log_key, origin=ORIGIN, owns_engine=True)
    try:
        rewriter.append_many(_events(changed=2))  # a whole, self-consistent, different history
        with pytest.raises(CheckpointInconsistent, match="roots of equal sizes differ"):
            rewriter.sign_checkpoint()
    finally:
        rewriter.close()


@pytest.mark.parametrize("key", ["another", "the log's"])
def test_rewritten_and_resigned_history_caught(
        history: tuple[Ledger, HostileAdmin, Checkpoint], db_url: str,
        log_key: Ed25519PrivateKey, key: str) -> None:
    ledger, admin, trusted = history
    admin.wipe(drop_checkpoints=True)
    signing_key = Ed25519PrivateKey.generate() if key == "another" else log_key
    rewriter = Ledger(make_engine(db_url), signing_key, origin=ORIGIN, owns_engine=True)
    try:
        rewriter.append_many(_events(changed=2))
        data = export_bytes(rewriter)
    finally:
        rewriter.close()
    if key == "another":
        with pytest.raises(SignatureError):
            verify(data, ledger)  # the partner verifies with the genuine log's key
    else:  # even with the log's own key: the partner's saved checkpoint pins the history
        assert verify(data, ledger).tree_size == SIZE
        with pytest.raises(ForkError):
            verify(data, ledger, trusted)
