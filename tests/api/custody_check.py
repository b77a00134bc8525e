"""Offline checks the tests run as an auditor would: only the response bytes and the log key."""

from __future__ import annotations

from typing import Any

from custody.entry import Entry
from custody.note import VerifierKey
from custody.verify import ProvenEntry, VerifiedPackage, verify_package


def verify_custody_response(body: dict[str, Any], pinned_key: str,
                            package_id: str) -> VerifiedPackage:
    """Verify a ``GET /v1/packages/{id}/custody`` body against a pinned verifier key."""
    proven = [ProvenEntry(Entry.from_dict(e["entry"]),
                          tuple(bytes.fromhex(h) for h in e["inclusion_proof"]))
              for e in body["entries"]]
    for raw, item in zip(body["entries"], proven, strict=True):
        assert item.entry.leaf_hash().hex() == raw["leaf_hash"]
    return verify_package(proven, body["checkpoint"], VerifierKey.parse(pinned_key), package_id)
