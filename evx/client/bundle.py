"""Making a custody bundle from the hub (custody/bundle.py defines and verifies the format):
every entry of the package proven in one witnessed checkpoint, the manifest the seal committed
to, the policy it was checked with -- verified here before it is written."""

from __future__ import annotations

from collections.abc import Sequence

from custody.bundle import VerifiedBundle, make_bundle, verify_bundle
from custody.entry import Action, Entry, Outcome
from custody.errors import VerificationError
from custody.policy import Policy, WitnessedCheckpoint
from custody.verify import ProvenEntry
from evx.client.errors import IntegrityFailure
from evx.client.http import Api


def sealed_manifest(package_id: str, entries: Sequence[Entry]) -> dict[str, object] | None:
    """The manifest of the items uploaded before the package's seal, as the hub hashed it when
    sealing (None if the package was never sealed)."""
    items: dict[str, dict[str, object]] = {}
    for entry in entries:
        if entry.outcome != Outcome.ALLOWED:
            continue
        if entry.action == Action.PACKAGE_SEALED:
            listed = sorted(items.values(), key=lambda item: str(item["name"]))
            return {"package": package_id, "items": listed}
        if entry.action == Action.ITEM_UPLOADED and entry.item is not None \
                and entry.item not in items:
            items[entry.item] = {"name": entry.item, "size": entry.details.get("size"),
                                 "sha256": entry.details.get("sha256")}
    return None


def build_bundle(api: Api, package_id: str, entries: Sequence[Entry], policy: Policy,
                 witnessed: WitnessedCheckpoint) -> tuple[bytes, VerifiedBundle]:
    """The bundle of ``entries`` (the package's verified chain) proven in ``witnessed``, and
    its verification under ``policy``.

    Raises:
        IntegrityFailure: A proof from the hub, or the bundle as a whole, does not verify.
    """
    size = witnessed.checkpoint.size
    proven = []
    for entry in entries:
        body = api.json("GET", "/v1/ledger/proofs/inclusion",
                        params={"index": entry.index, "tree_size": size})
        try:
            proven.append(ProvenEntry(entry, tuple(bytes.fromhex(h) for h in body["proof"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityFailure(f"the hub's inclusion proof of entry {entry.index} is "
                                   f"malformed: {exc}") from exc
    data = make_bundle(package_id, policy, proven, witnessed.note,
                       sealed_manifest(package_id, entries))
    try:
        return data, verify_bundle(data, policy)
    except VerificationError as exc:
        raise IntegrityFailure(f"the custody bundle of {package_id} does NOT verify: {exc}",
                               slug="bundle-not-verified") from exc
