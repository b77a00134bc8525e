"""Appending: positions, chains, time, atomic batches, failures that record nothing."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from custody.checkpoint import Checkpoint
from custody.verify import verify_consistency_from
from service.db import make_engine
from service.ledger import (
    CheckpointInconsistent,
    EntryNotFound,
    Event,
    InvalidEvent,
    InvalidProofRequest,
    Ledger,
    LedgerUnavailable,
    tables,
)
from tests.ledger.helpers import ORIGIN, event, export_bytes, verify


def test_append_assigns_position_time_and_both_chains(ledger: Ledger) -> None:
    first = ledger.append(event(0, package="pkg-a"))
    second = ledger.append(event(1, package="pkg-b"))
    third = ledger.append(event(2, package="pkg-a"))
    loose = ledger.append(event(3, package=None))
    assert [r.index for r in (first, second, third, loose)] == [0, 1, 2, 3]
    assert first.entry.prev is None and first.entry.package_prev is None
    assert second.entry.prev == first.leaf_hash.hex() and second.entry.package_prev is None
    assert third.entry.prev == second.leaf_hash.hex()
    assert third.entry.package_prev == first.leaf_hash.hex()
    assert loose.entry.package_prev is None
    assert third.leaf_hash == third.entry.leaf_hash()
    assert third.entry.time.endswith("Z") and len(third.entry.time) == 27
    # What is read back is byte for byte what was hashed.
    stored = ledger.entry(2)
    assert stored.canonical == third.entry.canonical_bytes()
    assert stored.leaf_hash == third.leaf_hash
    assert [s.index for s in ledger.package_entries("pkg-a")] == [0, 2]
    assert ledger.tree_size() == 4
    assert verify(export_bytes(ledger), ledger).entry_count == 4


def test_time_never_goes_backwards(db_url: str, log_key: Ed25519PrivateKey) -> None:
    times = iter([datetime(2030, 1, 1, tzinfo=UTC), datetime(2029, 1, 1, tzinfo=UTC),
                  datetime(2030, 1, 1, 0, 0, 1, 5, tzinfo=UTC)])
    ledger = Ledger(make_engine(db_url), log_key, origin=ORIGIN, clock=lambda: next(times),
                    owns_engine=True)
    try:
        recorded = [ledger.append(event(n)).entry.time for n in range(3)]
    finally:
        ledger.close()
    assert recorded == ["2030-01-01T00:00:00.000000Z", "2030-01-01T00:00:00.000000Z",
                        "2030-01-01T00:00:01.000005Z"]


def test_append_many_is_consecutive_and_updates_heads(ledger: Ledger, db_url: str) -> None:
    ledger.append(event(0, package="pkg-b"))
    batch = ledger.append_many([event(n, package="pkg-b" if n % 2 else "pkg-c")
                                for n in range(1, 8)])
    assert [r.index for r in batch] == list(range(1, 8))
    engine = make_engine(db_url)
    with engine.connect() as conn:
        head = conn.execute(sa.select(tables.head)).one()
        heads = {row.package: row for row in conn.execute(sa.select(tables.package_heads))}
        levels = Counter(level for (level,) in conn.execute(sa.select(tables.nodes.c.level)))
    engine.dispose()
    assert (head.size, head.last_leaf_hash) == (8, batch[-1].leaf_hash)
    assert heads["pkg-b"].count == 5 and heads["pkg-b"].last_index == 7
    assert heads["pkg-c"].count == 3 and heads["pkg-c"].last_leaf_hash == batch[-2].leaf_hash
    assert levels == {0: 8, 1: 4, 2: 2, 3: 1}  # every perfect node of 8 leaves, once


def test_invalid_event_records_nothing(ledger: Ledger) -> None:
    ledger.append(event(0))
    with pytest.raises(InvalidEvent, match="reason is required"):
        ledger.append(event(1, outcome="denied"))
    with pytest.raises(InvalidEvent):
        ledger.append_many([event(2), event(3, outcome="failed")])
    with pytest.raises(InvalidEvent):
        ledger.append(Event(actor=event().actor, action="package.read", outcome="allowed",
                            details={"ratio": 0.5}))  # type: ignore[dict-item]
    assert ledger.tree_size() == 1
    assert ledger.append(event(4)).index == 1


def test_unmigrated_database_fails_closed(tmp_path: Path, log_key: Ed25519PrivateKey) -> None:
    ledger = Ledger(make_engine(f"sqlite:///{tmp_path / 'empty.db'}"), log_key, origin=ORIGIN,
                    owns_engine=True)
    try:
        with pytest.raises(LedgerUnavailable) as caught:
            ledger.append(event())
        assert isinstance(caught.value.__cause__, sa.exc.OperationalError)
    finally:
        ledger.close()
    with pytest.raises(LedgerUnavailable, match="closed"):
        ledger.append(event())


@pytest.mark.postgres
def test_database_gone_fails_closed_then_recovers(postgres_url: str, pg_server_url: str,
                                                  log_key: Ed25519PrivateKey) -> None:
    ledger = Ledger(make_engine(postgres_url, pool_pre_ping=False), log_key, origin=ORIGIN,
                    owns_engine=True)
    try:
        ledger.append(event(0))
        admin = sa.create_engine(pg_server_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:  # kill the ledger's pooled connection under it
            conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = :n"), {"n": sa.make_url(postgres_url).database})
        admin.dispose()
        with pytest.raises(LedgerUnavailable) as caught:
            ledger.append(event(1))
        # The optimistic path speaks to psycopg directly: the driver's own error.
        assert isinstance(caught.value.__cause__, psycopg.OperationalError)
        assert ledger.append(event(2)).index == 1  # nothing half-written, next one continues
        assert ledger.entry(1).entry.details["n"] == 2
    finally:
        ledger.close()


def test_a_batch_that_did_not_commit_leaves_no_package_head_behind(
        sqlite_url: str, log_key: Ed25519PrivateKey) -> None:
    """The writer's package-head cache is updated in place while a batch is sequenced; a batch
    the database refused must not leave its heads there (SQLite has no guard that would catch a
    wrong ``package_prev``)."""
    ledger = Ledger(make_engine(sqlite_url), log_key, origin=ORIGIN, owns_engine=True)
    try:
        first = ledger.append(event(0, package="pkg-a"))
        engine = make_engine(sqlite_url)
        with engine.begin() as conn:  # the database refuses exactly the next entry
            conn.exec_driver_sql(
                "CREATE TRIGGER refuse_one BEFORE INSERT ON ledger_entries "
                "WHEN NEW.canonical LIKE '%\"n\":1}%' BEGIN SELECT RAISE(ABORT, 'refused'); END")
        with pytest.raises(LedgerUnavailable):
            ledger.append(event(1, package="pkg-a"))
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER refuse_one")
        engine.dispose()
        after = ledger.append(event(2, package="pkg-a"))
        assert after.index == 1
        assert after.entry.package_prev == first.leaf_hash.hex()
        assert after.entry.prev == first.leaf_hash.hex()
        assert verify(export_bytes(ledger), ledger).entry_count == 2
    finally:
        ledger.close()


def test_threads_share_group_commits_in_one_linear_log(ledger: Ledger) -> None:
    results: list[int] = []
    lock = threading.Lock()

    def writer(w: int) -> None:
        for n in range(25):
            index = ledger.append(event(w * 100 + n, package=f"pkg-{w % 3}")).index
            with lock:
                results.append(index)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == list(range(200))
    assert verify(export_bytes(ledger), ledger).package_count == 3


def test_reads_refuse_what_is_not_there(ledger: Ledger) -> None:
    ledger.append_many([event(n) for n in range(3)])
    with pytest.raises(EntryNotFound):
        ledger.entry(3)
    for index, size in ((3, 3), (0, 4), (-1, 2)):
        with pytest.raises(InvalidProofRequest):
            ledger.inclusion_proof(index, size)
    for size1, size2 in ((0, 2), (2, 1), (1, 4)):
        with pytest.raises(InvalidProofRequest):
            ledger.consistency_proof(size1, size2)
    with pytest.raises(InvalidProofRequest):
        ledger.root(4)


def test_checkpoints_extend_each_other(ledger: Ledger) -> None:
    assert ledger.latest_checkpoint() is None
    ledger.append_many([event(n) for n in range(5)])
    first = ledger.sign_checkpoint()
    assert ledger.sign_checkpoint() == first  # same tree: no second signature
    ledger.append_many([event(n) for n in range(5, 12)])
    second = ledger.sign_checkpoint()
    assert (first.tree_size, second.tree_size) == (5, 12)
    assert second.root == ledger.root(12)
    trusted = Checkpoint.verify(first.note, ledger.verifier_key)
    proof = ledger.consistency_proof(5, 12)
    assert verify_consistency_from(trusted, second.note, proof, ledger.verifier_key).size == 12
    assert ledger.latest_checkpoint() == second


def test_refuses_to_sign_after_a_checkpoint_by_another_key(
        db_url: str, log_key: Ed25519PrivateKey) -> None:
    impostor = Ledger(make_engine(db_url), Ed25519PrivateKey.generate(), origin=ORIGIN,
                      owns_engine=True)
    impostor.append(event(0))
    impostor.sign_checkpoint()
    impostor.close()
    ledger = Ledger(make_engine(db_url), log_key, origin=ORIGIN, owns_engine=True)
    try:
        ledger.append(event(1))
        with pytest.raises(CheckpointInconsistent, match="does not verify under the log key"):
            ledger.sign_checkpoint()
    finally:
        ledger.close()


def test_open_generates_the_key_file(sqlite_url: str, tmp_path: Path) -> None:
    key_file = tmp_path / "keys" / "log.key"
    ledger = Ledger.open(sqlite_url, key_file, origin=ORIGIN)
    try:
        ledger.append(event())
        verifier = str(ledger.verifier_key)
    finally:
        ledger.close()
    again = Ledger.open(sqlite_url, key_file, origin=ORIGIN)
    try:
        assert str(again.verifier_key) == verifier
        assert verify(export_bytes(again), again).tree_size == 1
    finally:
        again.close()
