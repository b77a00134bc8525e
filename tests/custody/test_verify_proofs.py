"""custody/verify.py: per-package verification with inclusion proofs, incremental consistency."""

from __future__ import annotations

import random

import pytest

from custody import merkle
from custody.entry import Entry
from custody.errors import (
    ChainError,
    ConsistencyProofError,
    FormatError,
    InclusionProofError,
    RollbackError,
    SignatureError,
)
from custody.note import Signer
from custody.verify import ProvenEntry, verify_consistency_from, verify_package
from tests.custody.ledgers import ORIGIN, random_ledger

LEDGER = random_ledger(40, random.Random(11), packages=3)
KEY = LEDGER.signer.verifier_key
LEAVES = LEDGER.leaf_hashes


def get_nodes(keys: set[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    return {
        (lvl, i): merkle.root_from_leaf_hashes(LEAVES[i << lvl : (i + 1) << lvl]) for lvl, i in keys
    }


def proven(package: str, size: int = len(LEAVES)) -> list[ProvenEntry]:
    return [ProvenEntry(e, tuple(merkle.inclusion_proof(e.index, size, get_nodes)))
            for e in LEDGER.entries[:size] if e.package == package]


def test_package_verifies() -> None:
    items = proven("pkg-1")
    result = verify_package(items, LEDGER.note(), KEY, "pkg-1")
    assert [e.index for e in result.entries] == [p.entry.index for p in items]
    assert result.checkpoint.size == len(LEAVES)
    # Tuples work as well as ProvenEntry.
    verify_package([(p.entry, p.proof) for p in items], LEDGER.note(), KEY, "pkg-1")


def test_package_against_an_older_checkpoint() -> None:
    verify_package(proven("pkg-0", 25), LEDGER.note(25), KEY, "pkg-0")


def test_gap_in_package_chain() -> None:
    items = proven("pkg-2")
    assert len(items) >= 3
    with pytest.raises(ChainError) as info:
        verify_package(items[:1] + items[2:], LEDGER.note(), KEY, "pkg-2")
    assert info.value.index == items[2].entry.index


def test_chain_must_start_at_the_first_entry() -> None:
    items = proven("pkg-2")
    with pytest.raises(ChainError) as info:
        verify_package(items[1:], LEDGER.note(), KEY, "pkg-2")
    assert info.value.index == items[1].entry.index


def test_a_later_page_continues_from_the_last_entry_verified() -> None:
    items = proven("pkg-2")
    head = items[1].entry.leaf_hash().hex()
    result = verify_package(items[2:], LEDGER.note(), KEY, "pkg-2", after=head)
    assert [e.index for e in result.entries] == [p.entry.index for p in items[2:]]
    # A page that skips an entry, or starts over, does not continue the chain.
    with pytest.raises(ChainError) as info:
        verify_package(items[3:], LEDGER.note(), KEY, "pkg-2", after=head)
    assert info.value.index == items[3].entry.index
    with pytest.raises(ChainError):
        verify_package(items, LEDGER.note(), KEY, "pkg-2", after=head)


def test_entry_of_another_package() -> None:
    items = proven("pkg-1")
    intruder = proven("pkg-0")[0]
    with pytest.raises(ChainError) as info:
        verify_package([*items, intruder], LEDGER.note(), KEY, "pkg-1")
    assert info.value.index == intruder.entry.index


def test_altered_entry_fails_its_inclusion_proof() -> None:
    items = proven("pkg-1")
    victim = items[1]
    altered = Entry.from_dict(dict(victim.entry.to_dict(), time="2031-01-01T00:00:00.000000Z"))
    items[1] = ProvenEntry(altered, victim.proof)
    with pytest.raises(InclusionProofError) as info:
        verify_package(items, LEDGER.note(), KEY, "pkg-1")
    assert info.value.index == victim.entry.index


def test_wrong_proof_fails() -> None:
    items = proven("pkg-1")
    items[0] = ProvenEntry(items[0].entry, items[1].proof)
    with pytest.raises(InclusionProofError) as info:
        verify_package(items, LEDGER.note(), KEY, "pkg-1")
    assert info.value.index == items[0].entry.index


def test_package_needs_entries_and_the_right_key() -> None:
    with pytest.raises(FormatError):
        verify_package([], LEDGER.note(), KEY, "pkg-1")
    with pytest.raises(SignatureError):
        verify_package(
            proven("pkg-1"), LEDGER.note(), Signer.generate(ORIGIN).verifier_key, "pkg-1"
        )


@pytest.mark.parametrize("old", [0, 1, 7, 16, 40])
def test_consistency_from_trusted(old: int) -> None:
    trusted = LEDGER.checkpoint(old)
    proof = merkle.consistency_proof(old, 40, get_nodes) if old else []
    assert verify_consistency_from(trusted, LEDGER.note(), proof, KEY) == LEDGER.checkpoint()


def test_consistency_from_trusted_rejects_bad_proof_rollback_and_foreign_key() -> None:
    trusted = LEDGER.checkpoint(13)
    proof = merkle.consistency_proof(13, 40, get_nodes)
    with pytest.raises(ConsistencyProofError):
        verify_consistency_from(trusted, LEDGER.note(), [proof[0], *proof[2:]], KEY)
    with pytest.raises(ConsistencyProofError):
        verify_consistency_from(LEDGER.checkpoint(12), LEDGER.note(), proof, KEY)
    with pytest.raises(RollbackError) as info:
        verify_consistency_from(LEDGER.checkpoint(), LEDGER.note(13), [], KEY)
    assert info.value.index == 13
    with pytest.raises(SignatureError):
        verify_consistency_from(trusted, LEDGER.note(), proof, Signer.generate(ORIGIN).verifier_key)
    with pytest.raises(ConsistencyProofError):
        verify_consistency_from(LEDGER.checkpoint(0), LEDGER.note(), proof, KEY)
