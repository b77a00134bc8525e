"""custody/merkle.py: RFC 6962/9162 vectors, proof generation against verification and a
reference."""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from custody import merkle
from custody.errors import ConsistencyProofError, InclusionProofError
from tests.custody.ledgers import VECTORS

RFC6962 = VECTORS / "rfc6962"
INCLUSION = sorted((RFC6962 / "inclusion").rglob("*.json"))
CONSISTENCY = sorted((RFC6962 / "consistency").rglob("*.json"))


def _id(path: Path) -> str:
    return str(path.relative_to(RFC6962))


def _b64(value: str | None) -> bytes:
    return base64.b64decode(value or "")


def _proof(values: list[str] | None) -> list[bytes]:
    return [_b64(v) for v in values or []]


def test_vectors_are_there() -> None:
    assert len(INCLUSION) > 50 and len(CONSISTENCY) > 50


@pytest.mark.parametrize("path", INCLUSION, ids=_id)
def test_inclusion_vector(path: Path) -> None:
    case: dict[str, Any] = json.loads(path.read_text())
    args = (
        _b64(case["leafHash"]),
        case["leafIdx"],
        case["treeSize"],
        _proof(case["proof"]),
        _b64(case["root"]),
    )
    if case["wantErr"]:
        with pytest.raises(InclusionProofError):
            merkle.verify_inclusion(*args)
    else:
        merkle.verify_inclusion(*args)


@pytest.mark.parametrize("path", CONSISTENCY, ids=_id)
def test_consistency_vector(path: Path) -> None:
    case: dict[str, Any] = json.loads(path.read_text())
    args = (
        case["size1"],
        case["size2"],
        _proof(case["proof"]),
        _b64(case["root1"]),
        _b64(case["root2"]),
    )
    if case["wantErr"]:
        with pytest.raises(ConsistencyProofError):
            merkle.verify_consistency(*args)
    else:
        merkle.verify_consistency(*args)


EIGHT_LEAVES = ["", "00", "10", "2021", "3031", "40414243", "5051525354555657",
                "606162636465666768696a6b6c6d6e6f"]


def test_eight_leaf_root_from_readme() -> None:
    leaves = [merkle.leaf_hash(bytes.fromhex(h)) for h in EIGHT_LEAVES]
    assert base64.b64encode(merkle.root_from_leaf_hashes(leaves)).decode() == (
        "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg="
    )


def test_empty_root_is_hash_of_empty_string() -> None:
    assert merkle.root_from_leaf_hashes([]) == hashlib.sha256(b"").digest() == merkle.EMPTY_ROOT


# --- a naive recursive reference, straight from RFC 9162 section 2.1 -----------------------


def _k(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d: list[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return d[0]
    k = _k(len(d))
    return merkle.node_hash(ref_mth(d[:k]), ref_mth(d[k:]))


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = _k(len(d))
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [ref_mth(d)]
    k = _k(n)
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


MAX_N = 64
LEAVES = [merkle.leaf_hash(i.to_bytes(2, "big")) for i in range(MAX_N)]


def _store(leaves: list[bytes]) -> dict[tuple[int, int], bytes]:
    """Every complete perfect node, as the database stores them."""
    nodes: dict[tuple[int, int], bytes] = {}
    level = 0
    while (1 << level) <= len(leaves):
        for i in range(len(leaves) >> level):
            nodes[(level, i)] = ref_mth(leaves[i << level:(i + 1) << level])
        level += 1
    return nodes


STORE = _store(LEAVES)
ROOTS = [ref_mth(LEAVES[:n]) for n in range(MAX_N + 1)]


def _get_nodes(keys: set[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    return {key: STORE[key] for key in keys}


@pytest.mark.parametrize("size", range(0, MAX_N + 1))
def test_root_matches_reference(size: int) -> None:
    assert merkle.root_from_leaf_hashes(LEAVES[:size]) == ROOTS[size]
    if size:
        assert merkle.range_hash(0, size, STORE) == ROOTS[size]


@pytest.mark.parametrize("size", range(1, MAX_N + 1))
def test_inclusion_proofs_all_indexes(size: int) -> None:
    for index in range(size):
        proof = merkle.inclusion_proof(index, size, _get_nodes)
        assert proof == ref_path(index, LEAVES[:size])
        merkle.verify_inclusion(LEAVES[index], index, size, proof, ROOTS[size])
        # Any other leaf, index or size fails.
        with pytest.raises(InclusionProofError):
            merkle.verify_inclusion(LEAVES[(index + 1) % MAX_N], index, size, proof, ROOTS[size])
        if size > 1:
            with pytest.raises(InclusionProofError):
                merkle.verify_inclusion(LEAVES[index], (index + 1) % size, size, proof, ROOTS[size])
        if size < MAX_N:
            with pytest.raises(InclusionProofError):
                merkle.verify_inclusion(LEAVES[index], index, size + 1, proof, ROOTS[size + 1])


@pytest.mark.parametrize("size2", range(1, MAX_N + 1))
def test_consistency_proofs_all_sizes(size2: int) -> None:
    for size1 in range(1, size2 + 1):
        proof = merkle.consistency_proof(size1, size2, _get_nodes)
        assert proof == ref_subproof(size1, LEAVES[:size2], True)
        merkle.verify_consistency(size1, size2, proof, ROOTS[size1], ROOTS[size2])
        if size1 > 1:
            with pytest.raises(ConsistencyProofError):
                merkle.verify_consistency(size1 - 1, size2, proof, ROOTS[size1 - 1], ROOTS[size2])
        with pytest.raises(ConsistencyProofError):
            merkle.verify_consistency(size1, size2, proof, ROOTS[size1], ROOTS[size2 - 1])


def test_ranges_are_subtrees_and_nodes_are_stored() -> None:
    for size in range(1, MAX_N + 1):
        for index in range(size):
            for start, end in merkle.inclusion_proof_ranges(index, size):
                assert all(key in STORE for key in merkle.perfect_nodes(start, end))


def test_perfect_nodes_examples() -> None:
    assert merkle.perfect_nodes(0, 8) == [(3, 0)]
    assert merkle.perfect_nodes(0, 7) == [(2, 0), (1, 2), (0, 6)]
    assert merkle.perfect_nodes(8, 13) == [(2, 2), (0, 12)]
    assert merkle.inclusion_proof_ranges(2, 7) == [(3, 4), (0, 2), (4, 7)]
    assert merkle.consistency_proof_ranges(3, 7) == [(2, 3), (3, 4), (0, 2), (4, 7)]
    assert merkle.consistency_proof_ranges(4, 8) == [(4, 8)]
    assert merkle.consistency_proof_ranges(5, 5) == []


@pytest.mark.parametrize("start,end", [(1, 3), (2, 5), (0, 0), (3, 2), (-1, 1)])
def test_perfect_nodes_rejects_non_subtrees(start: int, end: int) -> None:
    with pytest.raises(ValueError):
        merkle.perfect_nodes(start, end)


def test_missing_node_is_caller_error() -> None:
    with pytest.raises(ValueError, match="missing"):
        merkle.inclusion_proof(3, 10, lambda keys: {})


@pytest.mark.parametrize("args", [(5, 5), (0, 0), (-1, 3)])
def test_inclusion_ranges_reject_bad_arguments(args: tuple[int, int]) -> None:
    with pytest.raises(ValueError):
        merkle.inclusion_proof_ranges(*args)


@pytest.mark.parametrize("args", [(0, 3), (4, 3)])
def test_consistency_ranges_reject_bad_arguments(args: tuple[int, int]) -> None:
    with pytest.raises(ValueError):
        merkle.consistency_proof_ranges(*args)


def test_proof_longer_than_limit_is_rejected_before_hashing() -> None:
    proof = [bytes(32)] * (merkle.MAX_PROOF_HASHES + 1)
    with pytest.raises(InclusionProofError, match="more than"):
        merkle.verify_inclusion(bytes(32), 0, 2**63, proof, bytes(32))
    with pytest.raises(ConsistencyProofError, match="more than"):
        merkle.verify_consistency(1, 2**63, proof, bytes(32), bytes(32))


@given(st.integers(min_value=1, max_value=2**62), st.data())
def test_proof_ranges_partition_the_tree(size: int, data: st.DataObject) -> None:
    """For any size, the leaf and its proof ranges tile [0, size) and the path is short."""
    index = data.draw(st.integers(min_value=0, max_value=size - 1))
    ranges = merkle.inclusion_proof_ranges(index, size)
    tiles = sorted([(index, index + 1), *ranges])
    assert tiles[0][0] == 0 and tiles[-1][1] == size
    assert all(a[1] == b[0] for a, b in itertools.pairwise(tiles))
    assert len(ranges) <= merkle.MAX_PROOF_HASHES
    for start, end in ranges:
        nodes = merkle.perfect_nodes(start, end)
        assert sum(1 << level for level, _ in nodes) == end - start
    size1 = data.draw(st.integers(min_value=1, max_value=size))
    assert len(merkle.consistency_proof_ranges(size1, size)) <= merkle.MAX_PROOF_HASHES


def test_compact_range_root_at_every_size() -> None:
    compact = merkle.CompactRange()
    assert compact.root() == merkle.EMPTY_ROOT
    for n, leaf in enumerate(LEAVES, start=1):
        compact.append(leaf)
        assert compact.size == n and compact.root() == ROOTS[n]
    with pytest.raises(ValueError):
        compact.append(b"short")
