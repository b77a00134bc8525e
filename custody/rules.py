"""The rules of the exchange, checked over one package's proven entries -- pure, no I/O.

Hash chains and inclusion proofs show that entries are the ones the log signed; they say nothing
about whether what the hub *did* was allowed.  :func:`check_package_rules` reads a package's
entries (its complete chain from ``package.created``, in log order, as
:func:`custody.verify.verify_package` returns them) and reports every entry that breaks a rule of
the exchange (docs/ledger-format.md section 9): content read without a live share, uploads after
the seal, a seal whose manifest is not the uploads on the record, shares made by someone other
than the owner's investigators, a download of bytes other than the ones uploaded.

Only entries with outcome ``allowed`` are judged: a refused or failed attempt changes nothing.
Each rule is reported once per offending entry, and the effect of an offending entry is still
applied (a share created by the wrong person still exists), so one broken rule never shows up as
a cascade of others.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from custody import jcs
from custody.entry import Action, Entry, Outcome, Role
from custody.errors import VerificationError
from custody.request_rules import RequestChecker

__all__ = [
    "REQUEST_ID_PREFIX",
    "RULES",
    "RuleViolation",
    "RulesViolated",
    "RulesWalk",
    "check_package_rules",
    "manifest_sha256",
    "require_package_rules",
]

# Rule id -> what it demands; the ids are stable (monitors and tests match on them).
RULES: dict[str, str] = {
    "lifecycle.created": "the package's first entry, and only it, is an allowed package.created",
    "lifecycle.sealed_once": "a package is sealed at most once",
    "lifecycle.upload_after_seal": "no item is uploaded after the package was sealed",
    "lifecycle.upload_once": "an item is uploaded at most once",
    "lifecycle.share_before_seal": "a package is shared only after it was sealed",
    "lifecycle.revoke_without_share": "only a share that exists and is not revoked is revoked",
    "actor.owner": "uploads, seals, shares and revocations are made by the owner's investigators",
    "details": "the details an action's rules need are present and well formed",
    "seal.manifest": "the sealed manifest is exactly the items uploaded before the seal",
    "access.share": "another authority reads content, or its investigators read the package, "
                    "only under a share created for it, not revoked and not expired at that time",
    "access.role": "only investigators download content",
    "content.digest": "a download is of an uploaded item, with the digest of its upload",
    "download.unmatched": "a completed download follows its allowed download.started",
}

# The chains of requests share the ``package`` field (docs/ledger-format.md section 1.1).
REQUEST_ID_PREFIX = "req_"
_HEX64 = re.compile(r"\A[0-9a-f]{64}\Z", re.ASCII)
_OWNER_ACTIONS = frozenset((Action.ITEM_UPLOADED, Action.PACKAGE_SEALED, Action.SHARE_CREATED,
                            Action.SHARE_REVOKED))
_METADATA_READS = frozenset((Action.PACKAGE_READ, Action.CUSTODY_READ))


@dataclass(frozen=True, slots=True)
class RuleViolation:
    """One entry breaking one rule."""

    index: int
    rule: str
    reason: str

    def __str__(self) -> str:
        return f"entry {self.index}: {self.rule}: {self.reason}"


class RulesViolated(VerificationError):
    """A package's proven entries break rules of the exchange (``index`` = the first offender).

    Attributes:
        violations: Every violation found, in log order.
    """

    def __init__(self, violations: Sequence[RuleViolation]) -> None:
        self.violations = tuple(violations)
        first = self.violations[0]
        more = f" (and {len(self.violations) - 1} more)" if len(self.violations) > 1 else ""
        super().__init__(f"{first.rule}: {first.reason}{more}", index=first.index)


@dataclass(slots=True)
class _Share:
    expires_at: datetime | None
    revoked: bool

    def active(self, moment: datetime) -> bool:
        return not self.revoked and (self.expires_at is None or moment < self.expires_at)


@dataclass(frozen=True, slots=True)
class _Upload:
    index: int
    size: int
    sha256: str
    kind: str = "file"
    target: str | None = None


def manifest_sha256(package_id: str,
                    items: Iterable[tuple[str, int, str] | tuple[str, int, str, str, str | None]]
                    ) -> str:
    """SHA-256 (hex) of a package's manifest: the JCS bytes of
    ``{"package": id, "items": [...]}``, items sorted by name (Unicode code point order), each
    ``{"name", "size", "sha256"}`` for a file (``(name, size, sha256)`` or
    ``(name, size, sha256, "file", None)``), with ``"kind": "link", "target"`` added for a link
    and ``"kind": "directory"`` for a directory (docs/api.md, "Transfers").

    Raises:
        ValueError: A value JCS cannot encode.
    """
    listed: list[jcs.JSONValue] = []
    for item in sorted(items, key=lambda item: item[0]):
        name, size, sha256 = item[0], item[1], item[2]
        entry: dict[str, jcs.JSONValue] = {"name": name, "size": size, "sha256": sha256}
        kind = item[3] if len(item) > 3 else "file"
        if kind != "file":
            entry["kind"] = kind
        if kind == "link":
            entry["target"] = item[4]  # type: ignore[misc]
        listed.append(entry)
    return hashlib.sha256(jcs.canonicalize({"package": package_id, "items": listed})).hexdigest()


def _parse_expiry(value: object) -> tuple[bool, datetime | None]:
    if value is None:
        return True, None
    if not isinstance(value, str):
        return False, None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return False, None
    if moment.tzinfo is None:
        return False, None
    return True, moment.astimezone(UTC)


class _Checker:
    """The state of one package walked in log order."""

    def __init__(self, first: Entry, violations: list[RuleViolation]) -> None:
        self.package = first.package or ""
        self.owner = first.actor.authority
        self.sealed = False
        self.uploads: dict[str, _Upload] = {}
        self.shares: dict[str, _Share] = {}
        self.started: set[tuple[str, str, str]] = set()  # (authority, subject, item)
        self.violations = violations

    def report(self, entry: Entry, rule: str, reason: str) -> None:
        self.violations.append(RuleViolation(entry.index, rule, reason))

    def share_live(self, authority: str, moment: datetime) -> bool:
        share = self.shares.get(authority)
        return share is not None and share.active(moment)

    def visit(self, entry: Entry, first: bool) -> None:
        action = entry.action
        if first:
            if action is not Action.PACKAGE_CREATED or entry.outcome is not Outcome.ALLOWED:
                self.report(entry, "lifecycle.created",
                            f"the package's first entry is {action.value} {entry.outcome.value}")
            return
        if entry.outcome is not Outcome.ALLOWED:
            return
        if action is Action.PACKAGE_CREATED:
            self.report(entry, "lifecycle.created", "the package is created a second time")
            return
        actor = entry.actor
        if action in _OWNER_ACTIONS and (actor.authority != self.owner
                                          or actor.role is not Role.INVESTIGATOR):
            self.report(entry, "actor.owner",
                        f"{action.value} by {actor.authority}/{actor.role.value}, "
                        f"not an investigator of the owner {self.owner}")
        handler = _HANDLERS.get(action)
        if handler is not None:
            handler(self, entry)

    def item_uploaded(self, entry: Entry) -> None:
        size, sha256, name = entry.details.get("size"), entry.details.get("sha256"), entry.item
        if name is None or type(size) is not int or size < 0 or not isinstance(sha256, str) \
                or not _HEX64.match(sha256):
            self.report(entry, "details", "item.uploaded needs an item, its size and sha256")
            return
        if self.sealed:
            self.report(
                entry, "lifecycle.upload_after_seal", f"item {name!r} uploaded after the seal"
            )
        if name in self.uploads:
            self.report(entry, "lifecycle.upload_once",
                        f"item {name!r} was already uploaded at entry {self.uploads[name].index}")
            return
        kind, target = entry.details.get("kind", "file"), entry.details.get("target")
        if kind not in ("file", "link", "directory") or (kind == "link") != isinstance(
                target, str):
            self.report(entry, "details", "item.uploaded has an unknown kind, or a link "
                                          "without a target")
            return
        self.uploads[name] = _Upload(entry.index, size, sha256, str(kind),
                                     target if isinstance(target, str) else None)

    def package_sealed(self, entry: Entry) -> None:
        if self.sealed:
            self.report(entry, "lifecycle.sealed_once", "the package was already sealed")
            return
        self.sealed = True
        recorded = entry.details.get("manifest_sha256")
        if not isinstance(recorded, str) or not _HEX64.match(recorded):
            self.report(entry, "details", "package.sealed needs manifest_sha256")
            return
        expected = manifest_sha256(
            self.package, ((name, up.size, up.sha256, up.kind, up.target)
                           for name, up in self.uploads.items()))
        if not hmac.compare_digest(recorded, expected):
            self.report(entry, "seal.manifest",
                        f"manifest_sha256 {recorded} is not {expected}, the manifest of the "
                        f"{len(self.uploads)} item(s) uploaded on the record")

    def share_created(self, entry: Entry) -> None:
        authority = entry.details.get("authority")
        valid, expires_at = _parse_expiry(entry.details.get("expires_at"))
        if not isinstance(authority, str) or not authority or not valid:
            self.report(entry, "details", "share.created needs an authority and expires_at "
                                          "(null or an ISO 8601 time with an offset)")
            return
        if not self.sealed:
            self.report(entry, "lifecycle.share_before_seal",
                        f"shared with {authority} before the package was sealed")
        self.shares[authority] = _Share(expires_at, revoked=False)

    def share_revoked(self, entry: Entry) -> None:
        authority = entry.details.get("authority")
        if not isinstance(authority, str) or not authority:
            self.report(entry, "details", "share.revoked needs an authority")
            return
        share = self.shares.get(authority)
        if share is None or share.revoked:
            self.report(entry, "lifecycle.revoke_without_share",
                        f"no active share with {authority} to revoke")
            return
        share.revoked = True

    def download_started(self, entry: Entry) -> None:
        actor, name = entry.actor, entry.item or ""
        if actor.role is not Role.INVESTIGATOR:
            self.report(entry, "access.role",
                        f"content of {name!r} read by {actor.authority}/{actor.role.value}")
        elif actor.authority != self.owner and not self.share_live(
            actor.authority, entry.timestamp
        ):
            self.report(entry, "access.share",
                        f"{actor.authority} read {name!r} with no live share.created for it")
        self.started.add((actor.authority, actor.subject, name))
        upload = self.uploads.get(name)
        digest = entry.details.get("sha256")
        if upload is None:
            self.report(entry, "content.digest", f"item {name!r} has no upload on the record")
        elif not isinstance(digest, str) or not hmac.compare_digest(digest, upload.sha256):
            self.report(entry, "content.digest",
                        f"item {name!r} served with sha256 {digest}, uploaded (entry "
                        f"{upload.index}) with {upload.sha256}")

    def download_completed(self, entry: Entry) -> None:
        actor = entry.actor
        if (actor.authority, actor.subject, entry.item or "") not in self.started:
            self.report(entry, "download.unmatched",
                        f"download of {entry.item!r} completed but never started")

    def metadata_read(self, entry: Entry) -> None:
        actor = entry.actor
        if actor.role is Role.INVESTIGATOR and actor.authority != self.owner \
                and not self.share_live(actor.authority, entry.timestamp):
            self.report(entry, "access.share",
                        f"{actor.authority} investigator read the package with no live share")


_HANDLERS = {
    Action.ITEM_UPLOADED: _Checker.item_uploaded,
    Action.PACKAGE_SEALED: _Checker.package_sealed,
    Action.SHARE_CREATED: _Checker.share_created,
    Action.SHARE_REVOKED: _Checker.share_revoked,
    Action.DOWNLOAD_STARTED: _Checker.download_started,
    Action.DOWNLOAD_COMPLETED: _Checker.download_completed,
    Action.PACKAGE_READ: _Checker.metadata_read,
    Action.CUSTODY_READ: _Checker.metadata_read,
}


class RulesWalk:
    """The rules applied entry by entry, in log order, to any number of packages at once.

    Feed it every entry of a verified export (or of one package) with :meth:`add`; entries
    without a package are skipped; the chains of mutual legal assistance requests (``req_``
    ids, docs/ledger-format.md section 1.1) get the request rules of
    :mod:`custody.request_rules`.  State is kept per package (its uploads and shares) and per
    request (its state and parties).
    """

    __slots__ = ("_packages", "_requests", "_violations")

    def __init__(self) -> None:
        self._packages: dict[str, _Checker] = {}
        self._requests: dict[str, RequestChecker] = {}
        self._violations: list[RuleViolation] = []

    def _report(self, entry: Entry, rule: str, reason: str) -> None:
        self._violations.append(RuleViolation(entry.index, rule, reason))

    def add(self, entry: Entry) -> None:
        """Apply the rules to the next entry (its package's first entry starts that package)."""
        package = entry.package
        if package is None:
            return
        if package.startswith(REQUEST_ID_PREFIX):
            request = self._requests.get(package)
            if request is None:
                request = self._requests[package] = RequestChecker(entry, self._report)
                request.visit(entry, True)
            else:
                request.visit(entry, False)
            return
        checker = self._packages.get(package)
        first = checker is None
        if checker is None:
            checker = self._packages[package] = _Checker(entry, self._violations)
        checker.visit(entry, first)

    @property
    def violations(self) -> list[RuleViolation]:
        """Every violation so far, in log order."""
        return list(self._violations)


def check_package_rules(entries: Sequence[Entry]) -> list[RuleViolation]:
    """Every rule violation in one package's entries, in log order (empty: all rules hold).

    ``entries`` must be the package's chain from its first entry, in log order (as
    :func:`custody.verify.verify_package` verified it); the caller proves them first.

    Raises:
        ValueError: ``entries`` is empty or mixes packages (caller misuse).
    """
    if not entries:
        raise ValueError("no entries given")
    package = entries[0].package
    if package is None or any(entry.package != package for entry in entries):
        raise ValueError("entries must all belong to one package")
    walk = RulesWalk()
    for entry in entries:
        walk.add(entry)
    return walk.violations


def require_package_rules(entries: Sequence[Entry]) -> None:
    """:func:`check_package_rules`, raising when any rule is broken.

    Raises:
        RulesViolated: At least one violation (all of them in ``violations``).
        ValueError: As :func:`check_package_rules`.
    """
    violations = check_package_rules(entries)
    if violations:
        raise RulesViolated(violations)
