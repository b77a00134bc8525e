"""Accepting checkpoints under a C2SP tlog-policy: the log's signature *and* a quorum of witness
cosignatures (custody.policy decides; this module fetches and reports).

The policy comes from ``--policy FILE``, else ``EVX_POLICY``, else ``policy`` in this server's
trust state directory; without one the client trusts the pinned log key alone, as before.
"""

from __future__ import annotations

import hmac
import os
import time
from pathlib import Path
from typing import Any

from custody.checkpoint import Checkpoint
from custody.errors import VerificationError
from custody.merkle import verify_consistency
from custody.note import VerifierKey
from custody.policy import MAX_POLICY_BYTES, Policy, QuorumNotMet, WitnessedCheckpoint
from evx.client.errors import IntegrityFailure, LedgerInconsistent, LogKeyChanged, UsageError
from evx.client.http import Api
from evx.client.state import TrustState
from evx.client.trust import Advance, advance_checkpoint, pinned_log_key

POLICY_ENV = "EVX_POLICY"
POLICY_FILE_NAME = "policy"
#: How long a client waits for the witnesses to cosign a checkpoint covering what it verified.
WITNESS_WAIT_SECONDS = 30.0
_POLL_SECONDS = 0.5


def load_policy(path: Path) -> Policy:
    """Read a policy file.

    Raises:
        UsageError: Unreadable, too large, or not a valid tlog-policy.
    """
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_POLICY_BYTES + 1)
    except OSError as exc:
        raise UsageError(f"cannot read the policy {path}: {exc.strerror}") from None
    try:
        return Policy.parse(data)
    except VerificationError as exc:
        raise UsageError(f"{path} is not a valid tlog-policy: {exc.reason}",
                         slug="bad-policy") from None


def configured_policy(explicit: Path | None, state: TrustState | None) -> Policy | None:
    """The policy this command applies: ``explicit``, else ``EVX_POLICY``, else the trust
    state's ``policy`` file; None when there is none."""
    if explicit is not None:
        return load_policy(explicit)
    from_env = os.environ.get(POLICY_ENV)
    if from_env:
        return load_policy(Path(from_env))
    if state is not None and (state.directory / POLICY_FILE_NAME).is_file():
        return load_policy(state.directory / POLICY_FILE_NAME)
    return None


def require_log_key(policy: Policy, key: VerifierKey) -> None:
    """The pinned log key must be one of the policy's logs.

    Raises:
        LogKeyChanged: It is not.
    """
    if key not in {log.key for log in policy.logs}:
        raise LogKeyChanged(f"the server's log key {key} is not a log of your policy",
                            hint="The policy your authority distributed names other logs; do "
                                 "not trust this server's records.")


def describe(witnessed: WitnessedCheckpoint, policy: Policy) -> str:
    """``cosigned by W1, W2 (policy: 2 of W1, W2, W3)``."""
    names = ", ".join(sorted(witnessed.cosigned)) or "no witness"
    return f"cosigned by {names} (policy: {policy.describe_quorum()})"


def to_json(witnessed: WitnessedCheckpoint, policy: Policy) -> dict[str, Any]:
    return {"tree_size": witnessed.checkpoint.size, "cosigned_by": sorted(witnessed.cosigned),
            "cosignature_times": dict(sorted(witnessed.cosigned.items())),
            "quorum": policy.describe_quorum()}


def witnessed_checkpoint(api: Api, policy: Policy, *, covering: Checkpoint | None = None,
                         wait: float = WITNESS_WAIT_SECONDS) -> WitnessedCheckpoint:
    """The server's checkpoint, accepted by ``policy``; with ``covering`` (a checkpoint the
    caller verified entries against), one at least as large that provably extends it. The
    witnesses cosign in the background, so this waits up to ``wait`` seconds for them.

    Raises:
        IntegrityFailure: The checkpoint does not verify under the policy, or the quorum was
            not reached in time (the message names the witnesses that cosigned).
        LedgerInconsistent: The witnessed checkpoint does not extend ``covering``.
    """
    deadline = time.monotonic() + wait
    last: QuorumNotMet | None = None
    while True:
        note = api.request("GET", "/v1/ledger/checkpoint").text
        try:
            witnessed = policy.verify_checkpoint(note)
        except QuorumNotMet as exc:
            last = exc
        except VerificationError as exc:
            raise IntegrityFailure(f"the server's checkpoint is not valid under your policy: "
                                   f"{exc}", slug="bad-checkpoint") from exc
        else:
            if covering is None or witnessed.checkpoint.size >= covering.size:
                if covering is not None:
                    _check_extends(api, covering, witnessed.checkpoint)
                return witnessed
        if time.monotonic() >= deadline:
            break
        time.sleep(_POLL_SECONDS)
    reason = last.reason if last is not None else (
        f"no witnessed checkpoint covers the {covering.size if covering else 0} entries verified")
    raise IntegrityFailure(f"NOT WITNESSED: {reason}", slug="quorum-not-met",
                           hint="Without the quorum of witnesses your policy requires, the "
                                "server could be showing you a history others do not see.",
                           details={"cosigned_by": list(last.cosigned) if last else []})


def _check_extends(api: Api, old: Checkpoint, new: Checkpoint) -> None:
    if old.size == new.size:
        if not hmac.compare_digest(old.root, new.root):
            raise LedgerInconsistent(f"FORK: the witnessed checkpoint of {new.size} entries has "
                                     "another root than the one the records were proven in")
        return
    if old.size == 0:
        return
    body = api.json("GET", "/v1/ledger/proofs/consistency",
                    params={"from": old.size, "to": new.size})
    try:
        proof = [bytes.fromhex(h) for h in body["proof"]]
        verify_consistency(old.size, new.size, proof, old.root, new.root)
    except (KeyError, TypeError, ValueError, VerificationError) as exc:
        raise LedgerInconsistent(
            f"INCONSISTENT: the witnessed checkpoint of {new.size} entries does not extend the "
            f"one of {old.size} the records were proven in: {exc}") from exc


def sync_witnessed(api: Api, state: TrustState, policy: Policy,
                   wait: float = WITNESS_WAIT_SECONDS) -> tuple[Advance, WitnessedCheckpoint]:
    """Accept the server's witnessed checkpoint under ``policy`` and move this machine's saved
    checkpoint to it (consistency proof from the saved one).

    Raises:
        LogKeyChanged, IntegrityFailure, LedgerInconsistent: as :func:`require_log_key`,
            :func:`witnessed_checkpoint` and :func:`evx.client.trust.advance_checkpoint`.
    """
    pinned = pinned_log_key(api, state)
    require_log_key(policy, pinned.key)
    # The witnesses cosign behind the log: this machine may have verified newer entries (without
    # the policy, or just now) than the newest witnessed checkpoint. Wait for one that covers
    # them, rather than mistaking the lag for a rollback; a real rollback still fails below.
    saved = state.saved_checkpoint(pinned.key)
    witnessed = witnessed_checkpoint(api, policy, wait=wait,
                                     covering=saved.checkpoint if saved else None)
    return advance_checkpoint(api, state, pinned.key, witnessed.note), witnessed
