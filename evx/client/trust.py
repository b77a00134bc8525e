"""Trust on first use of the log key, and moving this machine's trusted checkpoint forward only
along consistency proofs. Verification itself is :mod:`custody`'s pure code."""

from __future__ import annotations

import hmac
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from filelock import Timeout

from custody.checkpoint import Checkpoint
from custody.entry import Entry
from custody.errors import FormatError, VerificationError
from custody.note import VerifierKey
from custody.verify import ProvenEntry, verify_consistency_from, verify_package
from evx.client.errors import IntegrityFailure, LedgerInconsistent, LogKeyChanged, UsageError
from evx.client.http import Api
from evx.client.platform import lock
from evx.client.state import TrustState

MAX_KEY_RESPONSE_BYTES = 4096


@dataclass(frozen=True)
class PinnedKey:
    key: VerifierKey
    newly_pinned: bool


def pinned_log_key(api: Api, state: TrustState, *, announced: str | None = None) -> PinnedKey:
    """The log's key: pinned on first use from ``GET /v1/ledger/key``; afterwards the server
    must keep presenting the same one.

    Raises:
        LogKeyChanged: The server presents another key than the pinned one.
        IntegrityFailure: The server's answer is not a verifier key.
    """
    text = announced if announced is not None else \
        api.request("GET", "/v1/ledger/key", auth=False).text[:MAX_KEY_RESPONSE_BYTES]
    try:
        served = VerifierKey.parse(text)
    except VerificationError as exc:
        raise IntegrityFailure(f"the server's log key is not a verifier key: {exc}") from exc
    pinned = state.configured_key or state.pinned_key()
    if pinned is None:
        state.pin_key(served)
        return PinnedKey(served, True)
    if pinned != served:
        raise LogKeyChanged(
            f"THE LOG KEY OF {api.origin} CHANGED. Pinned: {pinned}  Now presented: {served}",
            hint="Nothing from this server can be verified any more. Do not re-pin unless the "
            "operator announced a key change through another channel (then: evx trust "
            f"log --key KEY); the pin is {state.key_path}, or EVX_LOG_KEY when set.",
            details={"pinned": str(pinned), "presented": str(served)},
        )
    return PinnedKey(pinned, False)


@dataclass(frozen=True)
class Advance:
    """How the trusted checkpoint moved: ``previous_size`` is None the first time."""

    previous_size: int | None
    checkpoint: Checkpoint
    proof_hashes: int

    def to_json(self) -> dict[str, Any]:
        import base64

        return {"previous_size": self.previous_size, "tree_size": self.checkpoint.size,
                "root": base64.b64encode(self.checkpoint.root).decode(),
                "origin": self.checkpoint.origin, "consistency_proof_hashes": self.proof_hashes}


@contextmanager
def _locked(state: TrustState) -> Iterator[None]:
    # Two evx processes of one user must not move the checkpoint backwards.
    try:
        with lock(state.directory / ".lock"):
            yield
    except Timeout as exc:
        raise UsageError(f"another evx process holds {state.directory / '.lock'}",
                         hint="Wait for it to finish, then run the command again.",
                         slug="state-locked") from exc


def advance_checkpoint(api: Api, state: TrustState, key: VerifierKey, note: str) -> Advance:
    """Verify ``note`` (a signed checkpoint from the server) and that it extends the checkpoint
    saved here (consistency proof from the server); then save it.

    Raises:
        IntegrityFailure: The note does not verify under the pinned key.
        LedgerInconsistent: It is smaller than, or not an extension of, the saved checkpoint
            (the ledger was rewritten, truncated or forked).
    """
    try:
        new = Checkpoint.verify(note, key)
    except VerificationError as exc:
        raise IntegrityFailure(f"the server's checkpoint does not verify under the pinned log "
                               f"key: {exc}", slug="bad-checkpoint") from exc
    with _locked(state):
        saved = state.saved_checkpoint(key)
        if saved is None:
            state.save_checkpoint(note)
            return Advance(None, new, 0)
        old = saved.checkpoint
        proof: list[bytes] = []
        if new.size < old.size:
            raise LedgerInconsistent(
                f"ROLLBACK: the server's ledger has {new.size} entries; this machine verified "
                f"{old.size} before. Entries were removed.", hint=_REPORT,
                details={"saved_size": old.size, "tree_size": new.size})
        if new.size == old.size:
            if not hmac.compare_digest(new.root, old.root):
                raise LedgerInconsistent(
                    f"FORK: the server's ledger of {new.size} entries has another root than "
                    "the one verified here before: history was rewritten.", hint=_REPORT,
                    details={"saved_size": old.size, "tree_size": new.size})
        elif old.size > 0:
            body = api.json("GET", "/v1/ledger/proofs/consistency",
                            params={"from": old.size, "to": new.size})
            try:
                proof = [bytes.fromhex(h) for h in body["proof"]]
            except (KeyError, TypeError, ValueError) as exc:
                raise LedgerInconsistent("the server's consistency proof is malformed",
                                         hint=_REPORT) from exc
        if new.size > old.size:
            try:
                verify_consistency_from(old, note, proof, key)
            except VerificationError as exc:
                raise LedgerInconsistent(
                    f"INCONSISTENT: the server's ledger of {new.size} entries does not extend "
                    f"the {old.size} entries verified here before ({exc.reason}): history was "
                    "rewritten.", hint=_REPORT,
                    details={"saved_size": old.size, "tree_size": new.size}) from exc
            state.save_checkpoint(note)
        return Advance(old.size, new, len(proof))


_REPORT = ("Keep the saved checkpoint as evidence (it is signed by the log's key) and report "
           "this to the operator and your authority's auditors.")


def verify_custody(body: dict[str, Any], key: VerifierKey, package_id: str, *,
                   after: str | None = None) -> list[Entry]:
    """Verify a custody page (``GET /v1/packages/{id}/custody``) offline: every entry of the
    package with its inclusion proof against the page's signed checkpoint, and the package chain
    unbroken from its first entry -- or, with ``after``, from the leaf hash of the last entry of
    the page before.

    Raises:
        IntegrityFailure: Anything does not verify (the reason names the entry).
    """
    try:
        if str(body.get("verifier_key", "")).strip() not in ("", str(key)):
            raise LogKeyChanged("the custody record is signed for another log key than the "
                                "pinned one", hint="Do not trust this record.")
        proven = []
        for raw in body["entries"]:
            entry = Entry.from_dict(raw["entry"])
            if entry.leaf_hash().hex() != raw["leaf_hash"] or entry.index != raw["index"]:
                raise FormatError("leaf hash or index sent with the entry is not the entry's",
                                  index=entry.index)
            proven.append(ProvenEntry(entry, tuple(bytes.fromhex(h)
                                                   for h in raw["inclusion_proof"])))
        return list(verify_package(proven, body["checkpoint"], key, package_id,
                                   after=after).entries)
    except VerificationError as exc:
        raise IntegrityFailure(f"the custody record of {package_id} does NOT verify: {exc}",
                               slug="custody-not-verified", hint=_REPORT) from exc
    except (KeyError, TypeError, ValueError) as exc:
        raise IntegrityFailure(f"the custody record of {package_id} is malformed: {exc}",
                               slug="custody-not-verified") from exc


def verify_custody_pages(pages: Sequence[dict[str, Any]], key: VerifierKey,
                         package_id: str) -> list[Entry]:
    """:func:`verify_custody` over every page of a package's record, each page's chain
    continuing from the last entry of the page before.

    Raises:
        IntegrityFailure: Anything does not verify, or there is no page.
    """
    if not pages:
        raise IntegrityFailure(f"the custody record of {package_id} has no page",
                               slug="custody-not-verified")
    entries: list[Entry] = []
    for page in pages:
        entries += verify_custody(page, key, package_id,
                                  after=entries[-1].leaf_hash().hex() if entries else None)
    return entries
