"""Group commit: leaders commit on their own thread, batches fail alone, order is kept."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from service.db import make_engine
from service.ledger import Ledger, LedgerUnavailable
from service.ledger.batching import GroupCommitter
from tests.ledger.helpers import ORIGIN, event, export_bytes, verify

WAIT = 10.0  # seconds before a test that should not block gives up


def _until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


class _GatedCommit:
    """A commit callable that records each batch, holds batches starting with "hold" until
    released, and refuses any batch holding a "bad" item."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.threads: list[int] = []
        self.release = threading.Event()
        self.holding = threading.Event()

    def __call__(self, items: list[str]) -> list[str]:
        self.batches.append(list(items))
        self.threads.append(threading.get_ident())
        if items[0] == "hold":
            self.holding.set()
            assert self.release.wait(WAIT)
        if "bad" in items:
            raise LedgerUnavailable("refused")
        return [f"ok:{item}" for item in items]


def _submit_in_thread(committer: GroupCommitter[str, str], items: list[str],
                      outcomes: dict[str, object]) -> threading.Thread:
    def run() -> None:
        try:
            outcomes[items[0]] = committer.submit(items)
        except Exception as exc:  # noqa: BLE001 - inspected by the test
            outcomes[items[0]] = exc
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_lone_caller_commits_on_its_own_thread() -> None:
    commit = _GatedCommit()
    committer: GroupCommitter[str, str] = GroupCommitter(commit)
    assert committer.submit(["a", "b"]) == ["ok:a", "ok:b"]
    assert committer.submit(["c"]) == ["ok:c"]
    assert commit.threads == [threading.get_ident()] * 2  # no hand-off to another thread
    assert committer.stats == (2, 3)


def test_followers_form_the_next_batch_in_arrival_order() -> None:
    commit = _GatedCommit()
    committer: GroupCommitter[str, str] = GroupCommitter(commit)
    outcomes: dict[str, object] = {}
    leader = _submit_in_thread(committer, ["hold"], outcomes)
    assert commit.holding.wait(WAIT)
    followers = []
    for name in ("f1", "f2", "f3"):
        followers.append(_submit_in_thread(committer, [name, name + "'"], outcomes))
        _until(lambda: len(committer._queue) == len(followers))
    commit.release.set()
    for thread in (leader, *followers):
        thread.join(WAIT)
    assert commit.batches == [["hold"], ["f1", "f1'", "f2", "f2'", "f3", "f3'"]]
    assert outcomes == {"hold": ["ok:hold"], "f1": ["ok:f1", "ok:f1'"],
                        "f2": ["ok:f2", "ok:f2'"], "f3": ["ok:f3", "ok:f3'"]}
    assert committer.stats == (2, 7)


def test_max_batch_splits_the_queue_without_reordering() -> None:
    commit = _GatedCommit()
    committer: GroupCommitter[str, str] = GroupCommitter(commit, max_batch=2)
    outcomes: dict[str, object] = {}
    leader = _submit_in_thread(committer, ["hold"], outcomes)
    assert commit.holding.wait(WAIT)
    followers = []
    for name in ("a", "b", "c"):
        followers.append(_submit_in_thread(committer, [name], outcomes))
        _until(lambda: len(committer._queue) == len(followers))
    commit.release.set()
    for thread in (leader, *followers):
        thread.join(WAIT)
    assert commit.batches == [["hold"], ["a", "b"], ["c"]]
    assert outcomes["c"] == ["ok:c"]


def test_a_failing_batch_fails_exactly_its_callers_and_the_next_leader_proceeds() -> None:
    commit = _GatedCommit()
    committer: GroupCommitter[str, str] = GroupCommitter(commit, max_batch=2)
    outcomes: dict[str, object] = {}
    leader = _submit_in_thread(committer, ["hold"], outcomes)
    assert commit.holding.wait(WAIT)
    followers = []
    for name in ("bad", "mate", "after"):  # batches: [hold], [bad, mate], [after]
        followers.append(_submit_in_thread(committer, [name], outcomes))
        _until(lambda: len(committer._queue) == len(followers))
    commit.release.set()
    for thread in (leader, *followers):
        thread.join(WAIT)
    assert commit.batches == [["hold"], ["bad", "mate"], ["after"]]
    assert outcomes["hold"] == ["ok:hold"]
    assert isinstance(outcomes["bad"], LedgerUnavailable)
    assert outcomes["mate"] is outcomes["bad"]  # the batch's own error, nothing else
    assert outcomes["after"] == ["ok:after"]
    assert committer.submit(["later"]) == ["ok:later"]
    assert committer.stats == (3, 3)


def test_close_commits_what_is_queued_then_refuses() -> None:
    commit = _GatedCommit()
    committer: GroupCommitter[str, str] = GroupCommitter(commit)
    outcomes: dict[str, object] = {}
    leader = _submit_in_thread(committer, ["hold"], outcomes)
    assert commit.holding.wait(WAIT)
    follower = _submit_in_thread(committer, ["queued"], outcomes)
    _until(lambda: len(committer._queue) == 1)
    closer = threading.Thread(target=committer.close)
    closer.start()
    _until(lambda: committer._closed)
    with pytest.raises(LedgerUnavailable, match="closed"):
        committer.submit(["refused"])
    assert closer.is_alive()  # still waiting for the queued batch
    commit.release.set()
    for thread in (leader, follower, closer):
        thread.join(WAIT)
    assert not closer.is_alive()
    assert outcomes == {"hold": ["ok:hold"], "queued": ["ok:queued"]}
    assert commit.batches == [["hold"], ["queued"]]


Acknowledged = dict[int, list[tuple[int, int]]]


def _append_from_threads(ledger: Ledger, threads: int, per_thread: int,
                         poison: tuple[int, int] | None = None
                         ) -> tuple[Acknowledged, dict[tuple[int, int], Exception]]:
    """``threads`` threads append ``per_thread`` events each (details n = 1000 * thread + k);
    returns each thread's acknowledged ``(k, index)`` and the failures by ``(thread, k)``."""
    acknowledged: Acknowledged = defaultdict(list)
    failures: dict[tuple[int, int], Exception] = {}
    go = threading.Barrier(threads)

    def run(t: int) -> None:
        go.wait()
        for k in range(per_thread):
            n = 1000 * t + k
            package = "poison" if (t, k) == poison else f"pkg-{n % 3}"
            try:
                acknowledged[t].append((k, ledger.append(event(n, package=package)).index))
            except Exception as exc:  # noqa: BLE001 - inspected by the test
                failures[(t, k)] = exc

    pool = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(60)
    return acknowledged, failures


def _assert_one_ordered_log(ledger: Ledger, acknowledged: Acknowledged) -> None:
    indexes = sorted(index for acks in acknowledged.values() for _, index in acks)
    assert indexes == list(range(len(indexes)))  # contiguous, each acknowledged once
    assert ledger.tree_size() == len(indexes)  # and nothing stored that was not acknowledged
    stored = {s.index: s.entry.details["n"] for s in ledger.entries(0, len(indexes))}
    for t, acks in acknowledged.items():
        assert [index for _, index in acks] == sorted(index for _, index in acks)
        assert all(stored[index] == 1000 * t + k for k, index in acks)
    verify(export_bytes(ledger), ledger)  # chains, Merkle root, signed checkpoint


def test_threads_get_one_contiguous_log_in_their_submission_order(ledger: Ledger) -> None:
    acknowledged, failures = _append_from_threads(ledger, threads=12, per_thread=30)
    assert failures == {}
    assert all(len(acks) == 30 for acks in acknowledged.values())
    _assert_one_ordered_log(ledger, acknowledged)
    transactions, entries = ledger.append_stats
    assert entries == 360 and transactions <= entries


@pytest.mark.postgres
def test_refused_insert_fails_its_batch_only_and_later_appends_succeed(
        postgres_url: str, log_key: Ed25519PrivateKey) -> None:
    admin = make_engine(postgres_url)
    with admin.begin() as conn:  # the database refuses the "poison" package's entry row
        conn.exec_driver_sql("""
            CREATE FUNCTION test_refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF NEW.package = 'poison' THEN RAISE EXCEPTION 'refused by the test'; END IF;
                RETURN NEW;
            END $$""")
        conn.exec_driver_sql("CREATE TRIGGER test_refuse_poison BEFORE INSERT ON ledger_entries "
                             "FOR EACH ROW EXECUTE FUNCTION test_refuse_poison()")
    ledger = Ledger(make_engine(postgres_url), log_key, origin=ORIGIN, owns_engine=True)
    try:
        threads = 6
        acknowledged, failures = _append_from_threads(ledger, threads=threads, per_thread=20,
                                                      poison=(0, 10))
        assert (0, 10) in failures
        # Only the poisoned batch failed: one request per thread at most, each LedgerUnavailable
        # with the database's refusal as its cause.
        assert 1 <= len(failures) <= threads
        for exc in failures.values():
            assert isinstance(exc, LedgerUnavailable)
            assert "refused by the test" in str(exc.__cause__)
        assert sum(len(acks) for acks in acknowledged.values()) == threads * 20 - len(failures)
        _assert_one_ordered_log(ledger, acknowledged)
        size = ledger.tree_size()
        assert ledger.append(event(99_999)).index == size  # the next leader proceeds
        with admin.begin() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM ledger_entries "
                                        "WHERE package = 'poison'")).scalar_one() == 0
    finally:
        ledger.close()
        with admin.begin() as conn:
            conn.exec_driver_sql("DROP TRIGGER test_refuse_poison ON ledger_entries")
        admin.dispose()
