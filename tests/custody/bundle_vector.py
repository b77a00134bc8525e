"""The custody bundle test vector of docs/ledger-format.md section 10, built deterministically
(Ed25519 signatures are deterministic; the cosignature timestamps are fixed)."""

from __future__ import annotations

from pathlib import Path

from custody.bundle import make_bundle
from custody.cosignature import Cosigner
from custody.policy import Policy
from custody.verify import ProvenEntry
from tests.custody.ledgers import exchange_ledger
from tests.witness.harness import Tree

VECTORS = Path(__file__).resolve().parents[2] / "docs" / "vectors"
BUNDLE_FILE = VECTORS / "custody-bundle-v1.json"
POLICY_FILE = VECTORS / "custody-bundle-v1.policy"
WITNESSES = [Cosigner.from_seed(f"witness.{name}.example/evx", bytes([i]) * 32)
             for i, name in ((11, "fr-pj"), (12, "nl-om"), (13, "de-bka"))]
TIMESTAMPS = (1767225600, 1767225601, 1767225602)  # 2026-01-01T00:00:00Z and the next seconds
PACKAGE = "pkg-x"


def vector_policy() -> Policy:
    ledger = exchange_ledger()
    return Policy.parse(
        "# Custody bundle test vector: the log and three partner witnesses, 2 of 3.\n"
        f"log {ledger.signer.verifier_key}\n"
        + "".join(f"witness {w.name.split('.')[1].upper()} {w.key}\n" for w in WITNESSES)
        + "group partners 2 FR-PJ NL-OM DE-BKA\nquorum partners\n")


def vector_bundle(cosigners: tuple[int, ...] = (0, 2)) -> bytes:
    """The bundle of package pkg-x of the exchange ledger, cosigned by FR-PJ and DE-BKA."""
    ledger = exchange_ledger()
    checkpoint = ledger.checkpoint()
    note = checkpoint.sign(ledger.signer) + "".join(
        WITNESSES[i].cosign(checkpoint.to_note_body(), TIMESTAMPS[i]) for i in cosigners)
    tree = Tree([e.leaf_hash() for e in ledger.entries], hashed=True)
    proven = [ProvenEntry(e, tuple(tree.inclusion(e.index, checkpoint.size)))
              for e in ledger.entries if e.package == PACKAGE]
    items = [{"name": e.item, "size": e.details["size"], "sha256": e.details["sha256"]}
             for e in ledger.entries if e.package == PACKAGE and e.action == "item.uploaded"]
    manifest = {"package": PACKAGE, "items": sorted(items, key=lambda i: i["name"])}
    return make_bundle(PACKAGE, vector_policy(), proven, note, manifest)


if __name__ == "__main__":  # python -m tests.custody.bundle_vector: rewrite the vector files
    VECTORS.mkdir(parents=True, exist_ok=True)
    BUNDLE_FILE.write_bytes(vector_bundle())
    POLICY_FILE.write_text(vector_policy().text)
