"""Proofs served from stored perfect nodes verify with custody's verifiers and match a full
recomputation from the leaves, for every (index, size) and (size1, size2) up to 40 entries."""

from __future__ import annotations

import pytest

from custody import merkle
from custody.checkpoint import Checkpoint
from service.ledger import Ledger
from service.ledger.errors import InvalidProofRequest
from tests.ledger.helpers import event

SIZE = 40


def _full_root(leaves: list[bytes]) -> bytes:
    """MTH by the RFC 9162 recursion itself, independent of any stored node."""
    if not leaves:
        return merkle.EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return merkle.node_hash(_full_root(leaves[:k]), _full_root(leaves[k:]))


def _full_path(index: int, leaves: list[bytes]) -> list[bytes]:
    if len(leaves) == 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if index < k:
        return [*_full_path(index, leaves[:k]), _full_root(leaves[k:])]
    return [*_full_path(index - k, leaves[k:]), _full_root(leaves[:k])]


def _full_subproof(m: int, leaves: list[bytes], whole: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if whole else [_full_root(leaves)]
    k = 1 << ((n - 1).bit_length() - 1)
    if m <= k:
        return [*_full_subproof(m, leaves[:k], whole), _full_root(leaves[k:])]
    return [*_full_subproof(m - k, leaves[k:], False), _full_root(leaves[:k])]


@pytest.fixture
def filled(ledger: Ledger) -> tuple[Ledger, list[bytes], dict[int, bytes]]:
    """A ledger of SIZE entries appended in uneven batches, its leaves, and its root per size."""
    leaves: list[bytes] = []
    roots: dict[int, bytes] = {}
    n = 0
    for batch in (1, 2, 3, 5, 8, 1, 7, 13):
        leaves += [r.leaf_hash for r in ledger.append_many([event(n + i) for i in range(batch)])]
        n += batch
    assert n == SIZE
    for size in range(SIZE + 1):
        roots[size] = ledger.root(size)
    return ledger, leaves, roots


def test_roots_match_recomputation(filled: tuple[Ledger, list[bytes], dict[int, bytes]]) -> None:
    ledger, leaves, roots = filled
    for size, root in roots.items():
        assert root == _full_root(leaves[:size])
    checkpoint = Checkpoint.verify(ledger.sign_checkpoint().note, ledger.verifier_key)
    assert (checkpoint.size, checkpoint.root) == (SIZE, roots[SIZE])


def test_every_inclusion_proof(filled: tuple[Ledger, list[bytes], dict[int, bytes]]) -> None:
    ledger, leaves, roots = filled
    for size in range(1, SIZE + 1):
        for index in range(size):
            proof = ledger.inclusion_proof(index, size)
            assert proof == _full_path(index, leaves[:size])
            merkle.verify_inclusion(leaves[index], index, size, proof, roots[size])


def test_every_consistency_proof(filled: tuple[Ledger, list[bytes], dict[int, bytes]]) -> None:
    ledger, leaves, roots = filled
    for size2 in range(1, SIZE + 1):
        for size1 in range(1, size2 + 1):
            proof = ledger.consistency_proof(size1, size2)
            assert proof == _full_subproof(size1, leaves[:size2], True)
            merkle.verify_consistency(size1, size2, proof, roots[size1], roots[size2])


def test_batched_inclusion_proofs_equal_single_ones(
        filled: tuple[Ledger, list[bytes], dict[int, bytes]]) -> None:
    """One node query for many proofs gives exactly the proofs fetched one by one."""
    ledger, leaves, _ = filled
    for size in (1, 7, SIZE):
        indexes = list(range(size))
        batched = ledger.inclusion_proofs(indexes, size)
        assert batched == [ledger.inclusion_proof(i, size) for i in indexes]
        assert batched == [_full_path(i, leaves[:size]) for i in indexes]
    assert ledger.inclusion_proofs([], SIZE) == []
    with pytest.raises(InvalidProofRequest):
        ledger.inclusion_proofs([0, SIZE], SIZE)
