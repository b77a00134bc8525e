"""Custody bundles (custody/bundle.py): the committed test vector verifies, every single tamper
is refused with its reason, and the vector cannot drift from the code that makes bundles."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from typing import Any

import pytest

from custody.bundle import (
    BundleError,
    ManifestMismatch,
    PolicyMismatch,
    format_tlog_proof,
    make_bundle,
    parse_tlog_proof,
    verify_bundle,
)
from custody.entry import Entry
from custody.errors import ChainError, FormatError, InclusionProofError, SignatureError
from custody.policy import Policy, QuorumNotMet
from custody.verify import ProvenEntry
from tests.custody.bundle_vector import BUNDLE_FILE, POLICY_FILE

Bundle = dict[str, Any]


def committed() -> Bundle:
    return json.loads(BUNDLE_FILE.read_bytes())


def policy() -> Policy:
    return Policy.parse(POLICY_FILE.read_text())


def test_the_committed_vector_is_what_the_code_makes() -> None:
    """The files are byte for byte what make_bundle writes for their own content (the format
    cannot drift from the code); regenerate with ``python -m tests.custody.bundle_vector``."""
    bundle = committed()
    proofs = [parse_tlog_proof(p) for p in bundle["proofs"]]
    proven = [ProvenEntry(Entry.from_json_bytes(p.extra), p.hashes) for p in proofs]
    remade = make_bundle(bundle["package"], policy(), proven, proofs[0].checkpoint,
                         bundle["manifest"])
    assert remade == BUNDLE_FILE.read_bytes()
    assert Policy.parse(bundle["policy"]).canonical() == policy().canonical()


def test_the_committed_vector_verifies() -> None:
    verified = verify_bundle(BUNDLE_FILE.read_bytes(), policy())
    assert verified.package_id == "pkg-x"
    assert [e.index for e in verified.entries] == [0, 1, 2, 3, 5, 6, 7]
    assert [str(e.action) for e in verified.entries][:4] == [
        "package.created", "item.uploaded", "item.uploaded", "package.sealed"]
    assert dict(verified.witnessed.cosigned) == {"FR-PJ": 1767225600, "DE-BKA": 1767225602}
    assert verified.witnessed.checkpoint.size == 9
    assert verified.violations == ()


def test_tlog_proof_round_trip() -> None:
    text = committed()["proofs"][1]
    proof = parse_tlog_proof(text)
    assert proof.index == 1 and len(proof.hashes) == 4
    assert format_tlog_proof(proof.index, proof.hashes, proof.checkpoint, proof.extra) == text


def _edit_entry(bundle: Bundle) -> None:
    lines = bundle["proofs"][1].split("\n")
    entry = json.loads(base64.b64decode(lines[1][6:]))
    entry["details"]["sha256"] = "0" * 64  # the uploaded item's digest, rewritten
    raw = json.dumps(entry, separators=(",", ":"), sort_keys=True).encode()
    lines[1] = "extra " + base64.b64encode(raw).decode()
    bundle["proofs"][1] = "\n".join(lines)


def _edit_proof_hash(bundle: Bundle) -> None:
    lines = bundle["proofs"][2].split("\n")
    lines[3] = base64.b64encode(bytes(32)).decode()
    bundle["proofs"][2] = "\n".join(lines)


def _flip_cosignature(text: str, signer: str = "witness.de-bka") -> str:
    line = next(ln for ln in text.split("\n") if ln.startswith(f"\u2014 {signer}"))
    blob = bytearray(base64.b64decode(line.split(" ")[2]))
    blob[-5] ^= 0x40
    return text.replace(line, " ".join(line.split(" ")[:2]) + " "
                        + base64.b64encode(bytes(blob)).decode())


def _edit_cosignature(bundle: Bundle) -> None:
    bundle["proofs"] = [_flip_cosignature(p) for p in bundle["proofs"]]


def _edit_one_checkpoint(bundle: Bundle) -> None:
    bundle["proofs"][0] = _flip_cosignature(bundle["proofs"][0])


def _drop_cosignature(bundle: Bundle) -> None:
    bundle["proofs"] = ["\n".join(ln for ln in p.split("\n")
                                  if not ln.startswith("\u2014 witness.de-bka"))
                        for p in bundle["proofs"]]


def _edit_manifest(bundle: Bundle) -> None:
    bundle["manifest"]["items"][0]["sha256"] = "f" * 64


def _edit_policy_quorum(bundle: Bundle) -> None:
    bundle["policy"] = bundle["policy"].replace("group partners 2", "group partners 1")


def _drop_entry(bundle: Bundle) -> None:
    del bundle["proofs"][2]


def _edit_log_signature(bundle: Bundle) -> None:
    bundle["proofs"] = [_flip_cosignature(p, "evx.test/ledger") for p in bundle["proofs"]]


@pytest.mark.parametrize(("tamper", "error", "reason"), [
    (_edit_entry, InclusionProofError, "entry 1: proof does not lead to the root"),
    (_edit_proof_hash, InclusionProofError, "entry 2: proof does not lead to the root"),
    (_edit_cosignature, SignatureError, "invalid cosignature by witness witness.de-bka"),
    (_edit_one_checkpoint, BundleError, "do not all carry the same checkpoint"),
    (_drop_cosignature, QuorumNotMet, "cosigned by FR-PJ; the policy requires 2 of"),
    (_edit_manifest, ManifestMismatch, "the seal entry records"),
    (_edit_policy_quorum, PolicyMismatch, "its quorum: 1 of FR-PJ, NL-OM, DE-BKA; yours: 2 of"),
    (_drop_entry, ChainError, "package_prev"),
    (_edit_log_signature, SignatureError, "invalid signature by evx.test/ledger"),
])
def test_every_tamper_is_refused_with_its_reason(tamper: Callable[[Bundle], None],
                                                 error: type[Exception], reason: str) -> None:
    bundle = committed()
    tamper(bundle)
    with pytest.raises(error) as exc:
        verify_bundle(json.dumps(bundle).encode(), policy())
    assert reason in str(exc.value)


def test_another_verifiers_policy_is_refused() -> None:
    stricter = Policy.parse(POLICY_FILE.read_text().replace("partners 2", "partners all"))
    with pytest.raises(PolicyMismatch):
        verify_bundle(BUNDLE_FILE.read_bytes(), stricter)


@pytest.mark.parametrize("data", [
    b"", b"[]", b"\xff", b'{"format": "other"}',
    json.dumps({**json.loads(BUNDLE_FILE.read_bytes()), "extra": 1}).encode(),
    BUNDLE_FILE.read_bytes().replace(b'"version": 1', b'"version": 1, "version": 1'),
])
def test_malformed_bundles(data: bytes) -> None:
    with pytest.raises(FormatError):
        verify_bundle(data, policy())
