"""The optimistic append path on PostgreSQL: cached heads, guards, fallback to the head lock."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from service.db import make_engine
from service.ledger import Ledger, tables
from service.ledger.pgpipeline import HeadMoved, commit_on_cached_head
from tests.ledger.helpers import ORIGIN, event, export_bytes, verify

pytestmark = pytest.mark.postgres


@pytest.fixture
def two_ledgers(postgres_url: str, log_key: Ed25519PrivateKey) -> Iterator[tuple[Ledger, Ledger]]:
    """Two writers on one database, as two replicas would be: separate engines and caches."""
    first = Ledger(make_engine(postgres_url), log_key, origin=ORIGIN, owns_engine=True)
    second = Ledger(make_engine(postgres_url), log_key, origin=ORIGIN, owns_engine=True)
    try:
        yield first, second
    finally:
        first.close()
        second.close()


def _heads(url: str) -> tuple[tuple[int, bytes | None], dict[str, tuple[int, int]]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            head = conn.execute(sa.select(tables.head.c.size, tables.head.c.last_leaf_hash)).one()
            packages = {p: (int(i), int(c)) for p, i, c in conn.execute(sa.select(
                tables.package_heads.c.package, tables.package_heads.c.last_index,
                tables.package_heads.c.count))}
    finally:
        engine.dispose()
    return (int(head.size), head.last_leaf_hash), packages


def test_uncontended_writer_never_falls_back(two_ledgers: tuple[Ledger, Ledger]) -> None:
    first, _ = two_ledgers
    for n in range(20):
        assert first.append(event(n, package=f"pkg-{n % 3}")).index == n
    assert first.stale_heads == 0
    assert verify(export_bytes(first), first).entry_count == 20


def test_interleaved_writers_fall_back_and_keep_one_linear_ledger(
        two_ledgers: tuple[Ledger, Ledger]) -> None:
    first, second = two_ledgers
    rounds = 6
    recorded = []
    for n in range(rounds):
        recorded.append(first.append(event(2 * n, package="pkg-shared")))
        recorded.append(second.append(event(2 * n + 1, package=f"pkg-{n % 2}")))

    assert [r.index for r in recorded] == list(range(2 * rounds))
    # Each writer's first batch loads the head under the lock; every later one finds its
    # cached head stale (the other appended in between) and is sequenced again.
    assert (first.stale_heads, second.stale_heads) == (rounds - 1, rounds - 1)
    for previous, current in itertools.pairwise(recorded):
        assert current.entry.prev == previous.leaf_hash.hex()
    verified = verify(export_bytes(first), first)  # global chain, package chains, root
    assert (verified.entry_count, verified.package_count) == (2 * rounds, 3)


def test_stale_cached_head_is_detected_and_recovered(postgres_url: str,
                                                     two_ledgers: tuple[Ledger, Ledger]) -> None:
    first, second = two_ledgers
    first.append(event(0, package=None))
    others = second.append_many([event(n, package=None) for n in (1, 2, 3)])

    recovered = first.append(event(4, package=None))
    assert first.stale_heads == 1
    assert recovered.index == 4
    assert recovered.entry.prev == others[-1].leaf_hash.hex()
    # The refreshed cache is good again: no further fallback while nobody else writes.
    assert first.append(event(5, package=None)).index == 5
    assert first.stale_heads == 1
    assert _heads(postgres_url)[0][0] == 6
    assert verify(export_bytes(first), first).entry_count == 6


def test_package_appended_by_the_other_writer_gets_the_right_package_prev(
        postgres_url: str, two_ledgers: tuple[Ledger, Ledger]) -> None:
    first, second = two_ledgers
    opened = first.append(event(0, package="pkg-x"))       # first caches pkg-x at index 0
    other = second.append(event(1, package="pkg-x"))       # ... which this makes stale
    assert other.entry.package_prev == opened.leaf_hash.hex()

    mine = first.append(event(2, package="pkg-x"))
    assert mine.entry.package_prev == other.leaf_hash.hex()
    assert first.stale_heads == 1
    assert _heads(postgres_url)[1] == {"pkg-x": (2, 3)}
    chain = [s.index for s in first.package_entries("pkg-x")]
    assert chain == [0, 1, 2]
    assert verify(export_bytes(first), first).package_count == 1


def test_package_new_to_this_writer_is_read_before_sequencing(
        two_ledgers: tuple[Ledger, Ledger]) -> None:
    first, second = two_ledgers
    first.append(event(0, package="pkg-a"))
    second.append(event(1, package="pkg-b"))
    first.append(event(2, package="pkg-a"))  # stale: refreshes first's head, not pkg-b
    assert first.stale_heads == 1
    later = first.append(event(3, package="pkg-b"))  # optimistic, pkg-b read unlocked
    assert first.stale_heads == 1
    assert later.entry.package_prev == second.entry(1).leaf_hash.hex()


@pytest.fixture
def writer(postgres_url: str, ledger_at_two: None) -> Iterator[sa.Connection]:
    engine = make_engine(postgres_url)
    try:
        with engine.connect() as conn:
            yield conn
    finally:
        engine.dispose()


@pytest.fixture
def ledger_at_two(postgres_url: str, log_key: Ed25519PrivateKey) -> None:
    ledger = Ledger(make_engine(postgres_url), log_key, origin=ORIGIN, owns_engine=True)
    try:
        ledger.append_many([event(0, package="pkg-a"), event(1, package="pkg-a")])
    finally:
        ledger.close()


def _batch(index: int, package: str | None = None) -> tuple[list[dict[str, object]],
                                                            list[dict[str, object]]]:
    leaf = bytes([index]) * 32
    entries: list[dict[str, object]] = [{
        "idx": index, "leaf_hash": leaf, "canonical": "{}", "time": "2025-01-01T00:00:00Z",
        "package": package, "action": "package.read", "outcome": "allowed", "authority": "X"}]
    return entries, [{"level": 5, "node_index": 10_000 + index, "hash": leaf}]


@pytest.mark.parametrize("expected", [(1, None), (2, b"\x00" * 32), (3, None)])
def test_stale_head_guard_commits_nothing(postgres_url: str, writer: sa.Connection,
                                          expected: tuple[int, bytes | None]) -> None:
    before = _heads(postgres_url)
    entries, nodes = _batch(2)
    with pytest.raises(HeadMoved, match="ledger head is no longer at size"):
        commit_on_cached_head(writer, entries, nodes, [], expected=expected,
                              new=(3, b"\x02" * 32))
    assert _heads(postgres_url) == before
    # Rolled back and idle again: the same connection still works.
    assert writer.exec_driver_sql("SELECT count(*) FROM ledger_entries").scalar() == 2
    writer.rollback()


@pytest.mark.parametrize("expected_last_index", [None, 0])
def test_stale_package_guard_commits_nothing(postgres_url: str, writer: sa.Connection,
                                             expected_last_index: int | None) -> None:
    (size, leaf), _ = before = _heads(postgres_url)
    entries, nodes = _batch(2, "pkg-a")  # pkg-a's head is at index 1, not 0 or absent
    package = {"package": "pkg-a", "expected_last_index": expected_last_index,
               "last_index": 2, "last_leaf_hash": b"\x02" * 32, "count": 1}
    with pytest.raises(HeadMoved, match="package pkg-a head is no longer"):
        commit_on_cached_head(writer, entries, nodes, [package], expected=(size, leaf),
                              new=(3, b"\x02" * 32))
    assert _heads(postgres_url) == before


def test_guard_functions_refuse_directly(postgres_url: str, ledger_at_two: None) -> None:
    with psycopg.connect(sa.make_url(postgres_url).set(drivername="postgresql")
                         .render_as_string(hide_password=False)) as conn:
        with pytest.raises(psycopg.errors.SerializationFailure):
            conn.execute("SELECT ledger_advance_head(1, NULL, 2, %s)", (b"\x01" * 32,))
        conn.rollback()
        with pytest.raises(psycopg.errors.SerializationFailure):
            conn.execute("SELECT ledger_advance_package_head('pkg-a', NULL, 2, %s, 1)",
                         (b"\x01" * 32,))
