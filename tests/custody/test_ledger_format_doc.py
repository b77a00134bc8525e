"""docs/ledger-format.md: its test vector is recomputed from the code, so the two cannot drift."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from custody import merkle
from custody.checkpoint import Checkpoint
from custody.entry import Entry
from custody.errors import LeafHashMismatch
from custody.export import read_export, write_export
from custody.note import Signer, VerifierKey
from custody.verify import verify_export_lines

DOC = Path(__file__).resolve().parents[2] / "docs" / "ledger-format.md"
BLOCKS = dict(
    (m.group(1), m.group(2))
    for m in re.finditer(
        r"^```[a-z]* vector:([a-z-]+)\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.M | re.S
    )
)


def _fields(block: str) -> dict[str, str]:
    return dict(line.split(": ", 1) for line in block.splitlines())


KEY = _fields(BLOCKS["key"])
SIGNER = Signer.from_seed(KEY["origin"], bytes.fromhex(KEY["seed"]))
ENTRIES = [Entry.from_json_bytes(line.encode()) for line in BLOCKS["canonical"].splitlines()]
LEAVES = [e.leaf_hash() for e in ENTRIES]


def test_all_vector_blocks_present() -> None:
    assert set(BLOCKS) == {
        "key",
        "canonical",
        "leaf-hashes",
        "roots",
        "proofs",
        "checkpoint",
        "export",
    }


def test_key() -> None:
    assert str(SIGNER.verifier_key) == KEY["verifier"]
    assert VerifierKey.parse(KEY["verifier"]) == SIGNER.verifier_key


def test_canonical_bytes_are_verbatim() -> None:
    assert [e.canonical_bytes().decode() for e in ENTRIES] == BLOCKS["canonical"].splitlines()
    assert [e.index for e in ENTRIES] == [0, 1, 2]


def test_leaf_hashes_and_roots() -> None:
    assert [h.hex() for h in LEAVES] == BLOCKS["leaf-hashes"].split()
    roots = _fields(BLOCKS["roots"])
    assert merkle.root_from_leaf_hashes(LEAVES).hex() == roots["size 3"]
    assert merkle.root_from_leaf_hashes(LEAVES[:2]).hex() == roots["size 2"]


def test_proofs() -> None:
    proofs = {
        k: [bytes.fromhex(h) for h in v.split()] for k, v in _fields(BLOCKS["proofs"]).items()
    }
    nodes = {(0, i): leaf for i, leaf in enumerate(LEAVES)} | {
        (1, 0): merkle.node_hash(LEAVES[0], LEAVES[1])
    }

    def get(keys: set[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        return {k: nodes[k] for k in keys}

    root2, root3 = merkle.root_from_leaf_hashes(LEAVES[:2]), merkle.root_from_leaf_hashes(LEAVES)
    assert merkle.inclusion_proof(1, 3, get) == proofs["inclusion 1 3"]
    merkle.verify_inclusion(LEAVES[1], 1, 3, proofs["inclusion 1 3"], root3)
    assert merkle.consistency_proof(2, 3, get) == proofs["consistency 2 3"]
    merkle.verify_consistency(2, 3, proofs["consistency 2 3"], root2, root3)


def test_checkpoint_is_exact_and_verifies() -> None:
    checkpoint = Checkpoint(KEY["origin"], 3, merkle.root_from_leaf_hashes(LEAVES))
    assert checkpoint.sign(SIGNER) == BLOCKS["checkpoint"]
    assert Checkpoint.verify(BLOCKS["checkpoint"], VerifierKey.parse(KEY["verifier"])) == checkpoint


def test_export_is_exact_and_verifies() -> None:
    out = io.BytesIO()
    write_export(ENTRIES, None, BLOCKS["checkpoint"], out)
    assert out.getvalue().decode() == BLOCKS["export"]
    lines = BLOCKS["export"].encode().splitlines(keepends=True)
    result = verify_export_lines(lines, VerifierKey.parse(KEY["verifier"]))
    assert (result.tree_size, result.origin) == (3, KEY["origin"])
    assert read_export(lines).records[1].entry.item == "disque-\u00e9t\u00e9.img"
    tampered = [lines[0], lines[1], lines[2].replace(b'"size":4096', b'"size":4097'), *lines[3:]]
    with pytest.raises(LeafHashMismatch) as info:
        verify_export_lines(tampered, VerifierKey.parse(KEY["verifier"]))
    assert info.value.index == 1


def test_every_rule_is_specified() -> None:
    from custody.rules import RULES

    section = DOC.read_text(encoding="utf-8").split("## 9. Rules of the exchange", 1)[1]
    section = section.split("\n## ", 1)[0]  # section 9 only: section 10's tables name fields
    documented = set(re.findall(r"^\| `([a-z_.]+)` \|", section, re.M))
    assert documented == set(RULES)


def test_every_request_rule_is_specified() -> None:
    from custody.request_rules import REQUEST_RULES

    section = DOC.read_text(encoding="utf-8").split("### 1.1 Request entries", 1)[1]
    table = section.split("\n## ", 1)[0].split("| rule id |", 1)[1].split("\n\n", 1)[0]
    documented = set(re.findall(r"^\| `(request\.[a-z_]+)` \|", table, re.M))
    assert documented == set(REQUEST_RULES)
