"""A package's verified record, and what the partner's machine demands of it.

Proofs (:mod:`evx.client.trust`) show the entries are the ones the log signed.  Here the
client also demands, on its own machine:

* the rules of the exchange hold (:mod:`custody.rules`): no content read without a live share,
  no upload after the seal, a seal whose manifest is the uploads on the record, ...;
* nothing it verified before has vanished: the package's last entry verified here (its index
  and leaf hash, saved per package) is still in the chain at its index;
* no officer acted for an authority under a signing key that authority did not declare here
  (``evx trust keys``);
* and, for a download, that every item's bytes are the ones its ``item.uploaded`` entry records.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Any

from custody.checkpoint import Checkpoint
from custody.entry import Action, Entry, Outcome, Role
from custody.errors import VerificationError
from custody.merkle import verify_inclusion
from custody.rules import check_package_rules
from evx.client.errors import IntegrityFailure
from evx.client.http import Api, package_path
from evx.client.state import PackagePin, TrustState
from evx.client.trust import (
    Advance,
    PinnedKey,
    advance_checkpoint,
    pinned_log_key,
    verify_custody_pages,
)

_REPORT = ("Keep this output and the saved state as evidence, and report it to your authority's "
           "auditors: the hub's record contradicts what it did or what this machine saw.")
_OFFICERS = (Role.INVESTIGATOR, Role.AUDITOR)


@dataclass(frozen=True)
class Upload:
    """What the record says an item is: its ``item.uploaded`` entry."""

    index: int
    size: int
    sha256: str


@dataclass(frozen=True)
class VerifiedRecord:
    package_id: str
    pinned: PinnedKey
    advance: Advance
    entries: list[Entry]
    raw_entries: list[dict[str, Any]]
    previous_pin: PackagePin | None

    def uploads(self) -> dict[str, Upload]:
        """Item name -> its allowed ``item.uploaded`` entry (the rules made each unique)."""
        found: dict[str, Upload] = {}
        for entry in self.entries:
            if entry.action is Action.ITEM_UPLOADED and entry.outcome is Outcome.ALLOWED \
                    and entry.item is not None and entry.item not in found:
                found[entry.item] = Upload(entry.index, int(entry.details["size"]),  # type: ignore[arg-type]
                                           str(entry.details["sha256"]))
        return found

    def sealed_at(self) -> int | None:
        """Index of the allowed ``package.sealed`` entry, or ``None``."""
        return next((e.index for e in self.entries if e.action is Action.PACKAGE_SEALED
                     and e.outcome is Outcome.ALLOWED), None)


def fetch_custody_pages(api: Api, package_id: str) -> list[dict[str, Any]]:
    """Every page of ``GET /v1/packages/{id}/custody`` (unverified)."""
    pages = []
    start = 0
    while True:
        body = api.json("GET", package_path(package_id) + "/custody", params={"start": start})
        pages.append(body)
        if body["complete"] or not body["entries"]:
            return pages
        start = body["entries"][-1]["index"] + 1


def verified_record(api: Api, state: TrustState, package_id: str) -> VerifiedRecord:
    """Fetch a package's custody record and verify it on this machine: proofs and chain against
    the pinned log key, consistency with the checkpoint saved here, the rules of the exchange,
    the package pin, the authorities' declared keys.  Then save the newer checkpoint and pin.

    Raises:
        IntegrityFailure: Anything does not hold; the message names the entry index.
        LogKeyChanged, LedgerInconsistent: As :mod:`evx.client.trust`.
    """
    pages = fetch_custody_pages(api, package_id)
    pinned = pinned_log_key(api, state)
    entries = verify_custody_pages(pages, pinned.key, package_id)
    advance = None
    for page in pages:
        advance = advance_checkpoint(api, state, pinned.key, page["checkpoint"])
    assert advance is not None
    previous = hold_record(state, package_id, entries)
    raw = [e["entry"] for page in pages for e in page["entries"]]
    return VerifiedRecord(package_id, pinned, advance, entries, raw, previous)


def hold_record(state: TrustState, package_id: str, entries: list[Entry]) -> PackagePin | None:
    """Demand of a package's proven chain what this machine demands (:func:`check_record`), then
    pin its last entry.  Returns the pin saved before (``None`` the first time).

    Raises:
        IntegrityFailure: A rule, the pin or a declared key does not hold (``violations``).
    """
    previous = state.package_pin(package_id)
    problems = check_record(entries, previous, state.authority_keys())
    if problems:
        raise IntegrityFailure(
            f"the custody record of {package_id} does NOT hold on this machine: "
            + "; ".join(problems), slug="custody-rules-broken", hint=_REPORT,
            details={"package": package_id, "violations": problems})
    last = entries[-1]
    state.pin_package(package_id, PackagePin(last.index, last.leaf_hash().hex()))
    return previous


def check_record(entries: list[Entry], pin: PackagePin | None,
                 declared: dict[str, frozenset[str]]) -> list[str]:
    """Every way a proven package chain contradicts the rules, the pin or the declared keys,
    each as ``"entry N: ..."`` (empty: all hold).  Pure."""
    problems = [str(v) for v in check_package_rules(entries)]
    if pin is not None:
        at = next((e for e in entries if e.index == pin.index), None)
        if at is None or not hmac.compare_digest(at.leaf_hash().hex(), pin.leaf_hash):
            problems.append(f"entry {pin.index}: verified here before (leaf hash "
                            f"{pin.leaf_hash}) and no longer in the package's record: entries "
                            "were removed or rewritten")
    for entry in entries:
        problem = undeclared_key(entry, declared)
        if problem:
            problems.append(problem)
    return problems


def undeclared_key(entry: Entry, declared: dict[str, frozenset[str]]) -> str | None:
    """Why ``entry`` acts for an authority under a key it did not declare here, or ``None``."""
    authority = entry.actor.authority
    keys = declared.get(authority)
    if keys is None or entry.actor.role not in _OFFICERS or entry.v < 2:
        return None  # no declaration for it, a system actor, or written before keys were recorded
    token = entry.token
    if token is None:
        return f"entry {entry.index}: acts for {authority} with no token on the record"
    if token.jkt not in keys:
        return (f"entry {entry.index}: acts for {authority} under key {token.kid!r} (thumbprint "
                f"{token.jkt}), which {authority} did not declare")
    return None


def check_item(record: VerifiedRecord, item: dict[str, Any]) -> Upload:
    """The record's upload of ``item`` (the service's metadata), which must agree with it.

    Raises:
        IntegrityFailure: The item has no upload on the record, or another size or digest.
    """
    name = item["name"]
    upload = record.uploads().get(name)
    if upload is None:
        raise IntegrityFailure(
            f"item {name!r} of {record.package_id} has no item.uploaded entry on the verified "
            "record: nothing was saved", slug="not-on-record", hint=_REPORT,
            details={"item": name})
    sha256 = str(item["sha256"]).lower()
    if not hmac.compare_digest(sha256, upload.sha256) or int(item["size"]) != upload.size:
        raise IntegrityFailure(
            f"item {name!r}: the service offers sha256 {sha256} ({item['size']} bytes) but entry "
            f"{upload.index} (item.uploaded) records sha256 {upload.sha256} ({upload.size} "
            "bytes): the content was substituted; nothing was saved", slug="not-on-record",
            hint=_REPORT, details={"item": name, "index": upload.index, "offered": sha256,
                                   "recorded": upload.sha256})
    return upload


# -- ledger sync: the entries appended since the last sync, not only the tree heads ----------------

ENTRIES_PAGE = 1000  # the service's largest page of /v1/ledger/entries


def _inclusion(api: Api, index: int, checkpoint: Checkpoint, leaf: bytes) -> None:
    body = api.json("GET", "/v1/ledger/proofs/inclusion",
                    params={"index": index, "tree_size": checkpoint.size})
    try:
        proof = [bytes.fromhex(h) for h in body["proof"]]
        verify_inclusion(leaf, index, checkpoint.size, proof, checkpoint.root)
    except (KeyError, TypeError, ValueError, VerificationError) as exc:
        raise IntegrityFailure(f"entry {index}: not in the signed tree of {checkpoint.size} "
                               f"entries as served: {exc}", slug="entry-not-proven",
                               hint=_REPORT, details={"index": index}) from exc


def verify_appended(api: Api, old: Checkpoint | None, new: Checkpoint,
                    declared: dict[str, frozenset[str]]) -> int:
    """Verify every entry appended between two verified checkpoints, as the service serves them
    (``/v1/ledger/entries``): each entry's leaf hash is recomputed from its text and chains to
    the one before (``prev``), the entry before the first is proven in ``old``'s tree and the
    last in ``new``'s -- so every served entry is the signed one.  Also: no officer acted for
    an authority under a key it did not declare, and no key was added for it that it did not
    declare.  Returns how many entries were checked.

    Raises:
        IntegrityFailure: An entry is not the signed one, or breaks a declared key (its index).
        DeniedError: The caller may not read the whole ledger.
    """
    if old is None:
        return 0  # the first sync: trust starts here (the export verifies what came before)
    start = old.size
    if new.size <= start:
        return 0
    first = max(start - 1, 0)  # the anchor: the last entry of the old tree
    previous: bytes | None = None
    checked = 0
    position = first
    while position < new.size:
        body = api.json("GET", "/v1/ledger/entries",
                        params={"start": position, "limit": min(ENTRIES_PAGE, new.size - position)})
        rows = body.get("entries") or []
        if not rows:
            raise IntegrityFailure(f"entry {position}: the service serves no entry where the "
                                   f"signed tree of {new.size} has one", hint=_REPORT,
                                   details={"index": position})
        for raw in rows:
            try:
                entry = Entry.from_dict(raw["entry"])
            except (KeyError, VerificationError) as exc:
                raise IntegrityFailure(f"entry {position}: malformed as served: {exc}",
                                       hint=_REPORT, details={"index": position}) from exc
            leaf = entry.leaf_hash()
            if entry.index != position:
                raise IntegrityFailure(f"entry {position}: served with index {entry.index}",
                                       hint=_REPORT, details={"index": position})
            if previous is None:
                if start > 0:
                    _inclusion(api, position, old, leaf)
            elif entry.prev is None or not hmac.compare_digest(bytes.fromhex(entry.prev), previous):
                raise IntegrityFailure(
                    f"entry {position - 1}: its text as served is not what the log signed (entry "
                    f"{position}'s prev is {entry.prev}, the served entry hashes to "
                    f"{previous.hex()})", slug="entry-edited", hint=_REPORT,
                    details={"index": position - 1})
            if position >= start:
                problem = undeclared_key(entry, declared) or _undeclared_key_added(entry, declared)
                if problem:
                    raise IntegrityFailure(problem, slug="undeclared-key", hint=_REPORT,
                                           details={"index": position})
                checked += 1
            previous = leaf
            position += 1
    _inclusion(api, new.size - 1, new, previous)  # type: ignore[arg-type]
    return checked


def _undeclared_key_added(entry: Entry, declared: dict[str, frozenset[str]]) -> str | None:
    if entry.action is not Action.AUTHORITY_KEY_ADDED or entry.outcome is not Outcome.ALLOWED:
        return None
    authority = entry.details.get("authority")
    keys = declared.get(authority) if isinstance(authority, str) else None
    thumbprint = entry.details.get("thumbprint")
    if keys is None or thumbprint in keys:
        return None
    return (f"entry {entry.index}: a key (kid {entry.details.get('kid')!r}, thumbprint "
            f"{thumbprint}) was added for {authority}, which {authority} did not declare")


def verify_package_pins(api: Api, state: TrustState) -> int:
    """For a caller who may not read the whole ledger: every package pinned here still holds
    the entry verified before (and keeps the rules).  Returns how many packages were checked.

    Raises:
        IntegrityFailure: As :func:`verified_record`.
    """
    pins = state.package_pins()
    for package_id in pins:
        verified_record(api, state, package_id)
    return len(pins)
