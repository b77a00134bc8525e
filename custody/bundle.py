"""Custody bundles: one package's chain of custody as a self-contained proof for court
(docs/ledger-format.md section 10).

A bundle is one JSON object (UTF-8)::

    {"format": "evx-custody-bundle", "version": 1,
     "package": "<package id>",
     "policy": "<the C2SP tlog-policy text it was checked with>",
     "proofs": ["<C2SP tlog-proof of entry 1>", ...],     # the package's chain, in log order
     "manifest": {"package": ..., "items": [{"name", "size", "sha256"}, ...]} | null}

Each proof is a C2SP tlog-proof (https://c2sp.org/tlog-proof) whose ``extra`` line is the
entry's canonical bytes (base64) -- the record whose leaf hash the proof includes -- and whose
checkpoint is the same witnessed checkpoint in every proof. :func:`verify_bundle` needs nothing
but the bundle and the verifier's own policy: no network, no hub.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from custody.entry import Action, Entry, Outcome
from custody.errors import FormatError, VerificationError
from custody.merkle import HASH_SIZE, MAX_PROOF_HASHES
from custody.policy import Policy, WitnessedCheckpoint
from custody.rules import RuleViolation, check_package_rules, manifest_sha256
from custody.verify import ProvenEntry, verify_package

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
    "MAX_BUNDLE_BYTES",
    "TLOG_PROOF_HEADER",
    "BundleError",
    "ManifestMismatch",
    "PolicyMismatch",
    "TlogProof",
    "VerifiedBundle",
    "format_tlog_proof",
    "make_bundle",
    "parse_tlog_proof",
    "verify_bundle",
]

BUNDLE_FORMAT = "evx-custody-bundle"
BUNDLE_VERSION = 1
TLOG_PROOF_HEADER = "c2sp.org/tlog-proof@v1"
MAX_BUNDLE_BYTES = 64 * 1024 * 1024  # bound on what a verifier reads (~100k entries)
_INDEX_RE = re.compile(r"\Aindex (0|[1-9][0-9]{0,19})\Z", re.ASCII)


class BundleError(FormatError):
    """The bundle (or a tlog-proof in it) is not in the format of section 10."""


class PolicyMismatch(VerificationError):
    """The bundle was checked with another policy than the verifier's."""


class ManifestMismatch(VerificationError):
    """The bundle's manifest is not the one the package's seal entry commits to."""


@dataclass(frozen=True, slots=True)
class TlogProof:
    """A parsed C2SP tlog-proof (checkpoint not yet verified)."""

    index: int
    hashes: tuple[bytes, ...]
    checkpoint: str
    extra: bytes | None = None


def format_tlog_proof(index: int, hashes: Sequence[bytes], checkpoint: str,
                      extra: bytes | None = None) -> str:
    """A tlog-proof: header, optional ``extra`` line, ``index``, the inclusion proof hashes, an
    empty line, and the checkpoint verbatim."""
    lines = [TLOG_PROOF_HEADER]
    if extra is not None:
        lines.append("extra " + base64.b64encode(extra).decode())
    lines.append(f"index {index}")
    lines += [base64.b64encode(h).decode() for h in hashes]
    return "\n".join(lines) + "\n\n" + checkpoint


def parse_tlog_proof(text: str) -> TlogProof:
    """Parse a tlog-proof.

    Raises:
        BundleError: Not a tlog-proof (header, extra, index or hash lines, the empty line).
    """
    head, sep, checkpoint = text.partition("\n\n")
    if not sep:
        raise BundleError("tlog-proof has no empty line before its checkpoint")
    lines = head.split("\n")
    if lines[0] != TLOG_PROOF_HEADER:
        raise BundleError(f"tlog-proof does not start with {TLOG_PROOF_HEADER!r}")
    position = 1
    extra = None
    if len(lines) > 1 and lines[1].startswith("extra "):
        try:
            extra = base64.b64decode(lines[1][6:], validate=True)
        except binascii.Error:
            raise BundleError("tlog-proof extra line is not base64") from None
        position = 2
    match = _INDEX_RE.match(lines[position]) if len(lines) > position else None
    if match is None:
        raise BundleError("tlog-proof has no 'index N' line")
    hashes = []
    for line in lines[position + 1:]:
        try:
            value = base64.b64decode(line, validate=True)
        except binascii.Error:
            value = b""
        if len(value) != HASH_SIZE:
            raise BundleError("tlog-proof has a proof line that is not a base64 SHA-256 hash")
        hashes.append(value)
    if len(hashes) > MAX_PROOF_HASHES:
        raise BundleError(f"tlog-proof has more than {MAX_PROOF_HASHES} hashes")
    return TlogProof(int(match.group(1)), tuple(hashes), checkpoint, extra)


def make_bundle(package_id: str, policy: Policy, proven: Sequence[ProvenEntry],
                checkpoint: str, manifest: dict[str, Any] | None) -> bytes:
    """The bundle's bytes (verify them with :func:`verify_bundle` before handing them out)."""
    bundle = {
        "format": BUNDLE_FORMAT, "version": BUNDLE_VERSION, "package": package_id,
        "policy": policy.text,
        "proofs": [format_tlog_proof(p.entry.index, p.proof, checkpoint,
                                     p.entry.canonical_bytes()) for p in proven],
        "manifest": manifest,
    }
    return (json.dumps(bundle, indent=1, ensure_ascii=False) + "\n").encode()


@dataclass(frozen=True)
class VerifiedBundle:
    """What :func:`verify_bundle` established."""

    package_id: str
    entries: tuple[Entry, ...]
    witnessed: WitnessedCheckpoint
    manifest: dict[str, Any] | None
    violations: tuple[RuleViolation, ...]


def _load(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_BUNDLE_BYTES:
        raise BundleError(f"bundle exceeds {MAX_BUNDLE_BYTES} bytes")

    def no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in pairs]
        if len(set(keys)) != len(keys):
            raise BundleError("bundle has a duplicate JSON key")
        return dict(pairs)

    try:
        bundle = json.loads(data.decode("utf-8"), object_pairs_hook=no_duplicates)
    except (UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, BundleError):
            raise
        raise BundleError(f"bundle is not UTF-8 JSON: {exc}") from None
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT \
            or bundle.get("version") != BUNDLE_VERSION:
        raise BundleError(f"not a {BUNDLE_FORMAT} version {BUNDLE_VERSION} document")
    expected = {"format", "version", "package", "policy", "proofs", "manifest"}
    if set(bundle) != expected:
        raise BundleError(f"bundle keys must be exactly {sorted(expected)}")
    if not isinstance(bundle["package"], str) or not isinstance(bundle["policy"], str) \
            or not isinstance(bundle["proofs"], list) or not bundle["proofs"] \
            or not all(isinstance(p, str) for p in bundle["proofs"]):
        raise BundleError("package and policy must be strings, proofs a non-empty list of "
                          "strings")
    if bundle["manifest"] is not None and not isinstance(bundle["manifest"], dict):
        raise BundleError("manifest must be an object or null")
    return bundle


def verify_bundle(data: bytes, policy: Policy) -> VerifiedBundle:
    """Verify a custody bundle with nothing but the verifier's own ``policy``.

    Steps (section 10): the bundle's policy is the verifier's; every proof carries the same
    checkpoint, which the policy accepts (log signature, witness quorum); each proof's extra
    data is a valid entry of the package at the proof's index, included in that checkpoint; the
    entries form the package's chain from its first entry; the manifest is the one the seal
    entry commits to. Violations of the exchange's rules (section 9) are reported, not raised.

    Raises:
        BundleError: The bundle or a proof is malformed.
        PolicyMismatch: The bundle names another policy than ``policy``.
        FormatError, SignatureError, QuorumNotMet: The checkpoint is not accepted by the policy.
        InclusionProofError, ChainError: An entry is not in the checkpoint, or the chain breaks.
        ManifestMismatch: The manifest is not the sealed one.
    """
    bundle = _load(data)
    try:
        theirs = Policy.parse(bundle["policy"])
    except FormatError as exc:
        raise PolicyMismatch(f"the bundle's policy is not valid: {exc.reason}") from None
    if theirs.canonical() != policy.canonical():
        raise PolicyMismatch("the bundle was checked with another policy than yours "
                             f"(its quorum: {theirs.describe_quorum()}; yours: "
                             f"{policy.describe_quorum()})")
    proofs = [parse_tlog_proof(text) for text in bundle["proofs"]]
    checkpoint = proofs[0].checkpoint
    if any(p.checkpoint != checkpoint for p in proofs):
        raise BundleError("the proofs do not all carry the same checkpoint")
    witnessed = policy.verify_checkpoint(checkpoint)
    proven = []
    for proof in proofs:
        if proof.extra is None:
            raise BundleError(f"the proof of index {proof.index} has no entry (extra line)")
        entry = Entry.from_json_bytes(proof.extra)
        if entry.index != proof.index:
            raise BundleError(f"entry index {entry.index} is not the proof's index "
                              f"{proof.index}", index=proof.index)
        if entry.canonical_bytes() != proof.extra:
            raise BundleError("entry bytes are not canonical", index=proof.index)
        proven.append(ProvenEntry(entry, proof.hashes))
    package = verify_package(proven, checkpoint, witnessed.log_key, bundle["package"])
    entries = package.entries
    _check_manifest(bundle["package"], bundle["manifest"], entries)
    violations = tuple(check_package_rules(entries))
    return VerifiedBundle(bundle["package"], entries, witnessed, bundle["manifest"], violations)


def _check_manifest(package_id: str, manifest: dict[str, Any] | None,
                    entries: Sequence[Entry]) -> None:
    seals = [e for e in entries if e.action == Action.PACKAGE_SEALED
             and e.outcome == Outcome.ALLOWED]
    if not seals:
        if manifest is not None:
            raise ManifestMismatch("the bundle has a manifest but the package was never sealed")
        return
    if manifest is None:
        raise ManifestMismatch("the package was sealed but the bundle has no manifest",
                               index=seals[0].index)
    try:
        if manifest.get("package") != package_id or set(manifest) != {"package", "items"}:
            raise ValueError("manifest must be {package, items} of this package")
        items = [(i["name"], i["size"], i["sha256"]) for i in manifest["items"]]
        if not all(isinstance(n, str) and type(s) is int and isinstance(d, str)
                   for n, s, d in items):
            raise ValueError("items must have a string name and sha256 and an integer size")
        digest = manifest_sha256(package_id, items)
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ManifestMismatch(f"the manifest is malformed: {exc}", index=seals[0].index) \
            from None
    sealed = seals[0].details.get("manifest_sha256")
    if not isinstance(sealed, str) or not hmac.compare_digest(digest, sealed):
        raise ManifestMismatch(f"the manifest hashes to {digest}, the seal entry records "
                               f"{sealed}", index=seals[0].index)
