"""No caller can starve the others (review H4, M5): transfer slots per officer and authority, a
memory budget, and a minimum rate. The end-to-end version runs against a real server in
tests/hostile/."""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import SimpleNamespace

import anyio
import pytest

from service.limits import TransferRefused, TransferSlots, TransferStalled
from service.problems import Problem
from service.transfer_limits import PacedStream, acquire


def _officer(authority: str, subject: str) -> SimpleNamespace:
    return SimpleNamespace(authority=authority, subject=subject, role="investigator")


def test_slots_per_officer_per_authority_and_budget() -> None:
    slots = TransferSlots(per_officer=2, per_authority=3, budget_bytes=100)
    anna, ben, carl = (_officer("DE-BKA", s) for s in ("anna", "ben", "carl"))
    slots.try_acquire(anna, 10)
    slots.try_acquire(anna, 10)
    with pytest.raises(TransferRefused) as officer_full:
        slots.try_acquire(anna, 10)
    assert officer_full.value.busy is False
    slots.try_acquire(ben, 10)
    with pytest.raises(TransferRefused) as authority_full:
        slots.try_acquire(carl, 10)
    assert authority_full.value.busy is False
    other = _officer("FR-OCRTEH", "luc")
    slots.try_acquire(other, 60)
    with pytest.raises(TransferRefused) as budget_spent:
        slots.try_acquire(_officer("NL", "x"), 11)
    assert budget_spent.value.busy is True
    slots.release(anna, 10)
    slots.try_acquire(carl, 10)  # the authority has room again
    assert slots.reserved == 90


def test_a_spent_budget_waits_then_is_a_503_with_retry_after() -> None:
    slots = TransferSlots(per_officer=5, per_authority=5, budget_bytes=10)
    slots.try_acquire(_officer("A", "a"), 10)

    async def main() -> Problem:
        with pytest.raises(Problem) as refused:
            await acquire(slots, _officer("B", "b"), 5, queue_seconds=0.2)
        return refused.value

    problem = anyio.run(main)
    assert problem.kind.status == 503 and problem.kind.slug == "service-busy"
    assert problem.headers == {"Retry-After": "5"}


def test_an_officer_over_its_slots_gets_429_at_once() -> None:
    slots = TransferSlots(per_officer=1, per_authority=5, budget_bytes=100)
    slots.try_acquire(_officer("A", "a"), 1)

    async def main() -> Problem:
        with pytest.raises(Problem) as refused:
            await acquire(slots, _officer("A", "a"), 1, queue_seconds=30)
        return refused.value

    assert anyio.run(main).kind.status == 429


def test_a_stalled_body_is_cut() -> None:
    # H4: a body trickling one byte every 2 s held its worker for as long as the peer liked.
    async def trickle() -> AsyncIterator[bytes]:
        yield b"x" * 100
        await anyio.sleep(3600)
        yield b"never"

    async def main() -> int:
        seen = 0
        with pytest.raises(TransferStalled):
            async for piece in PacedStream(trickle().__aiter__(), min_rate=1000, window=0.2):
                seen += len(piece)
        return seen

    assert anyio.run(main) == 100


def test_a_steady_body_passes() -> None:
    async def steady() -> AsyncIterator[bytes]:
        for _ in range(5):
            await anyio.sleep(0.01)
            yield b"x" * 1000

    async def main() -> int:
        return sum([len(p) async for p in PacedStream(steady().__aiter__(), min_rate=1000,
                                                      window=0.5)])

    assert anyio.run(main) == 5000


def test_a_replica_runs_at_most_its_transfers_on_a_pool_of_that_size() -> None:
    slots = TransferSlots(per_officer=5, per_authority=5, budget_bytes=1000, max_transfers=2)
    assert slots.threads.total_tokens == 2  # a slot holder never waits for a thread
    slots.try_acquire(_officer("A", "a"), 1)
    slots.try_acquire(_officer("B", "b"), 1)
    with pytest.raises(TransferRefused) as full:
        slots.try_acquire(_officer("C", "c"), 1)
    assert full.value.busy is True and slots.running == 2  # a 503, not the caller's fault
    slots.release(_officer("A", "a"), 1)
    slots.try_acquire(_officer("C", "c"), 1)
    assert slots.running == 2
