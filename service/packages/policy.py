"""Who may do what with a package: pure decisions, no I/O.

The 404-vs-403 policy: an authority that has no relationship with a package (neither owns it nor
was ever sent it) gets "not found" whether or not the id exists, so strangers cannot probe ids.
An authority with a relationship gets "forbidden" with the specific reason (wrong role, share
expired, share revoked), so its officers know what to do.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from service.identity.caller import Caller

__all__ = ["Caller", "Decision", "Operation", "Refusal", "ShareState", "decide"]


class Operation(enum.Enum):
    READ_METADATA = "read metadata"
    MODIFY = "modify"  # upload, seal, share, revoke
    DOWNLOAD = "download content"
    READ_CUSTODY = "read custody"


class Refusal(enum.Enum):
    NOT_FOUND = "not_found"
    FORBIDDEN = "forbidden"
    SHARE_EXPIRED = "share_expired"
    SHARE_REVOKED = "share_revoked"


@dataclass(frozen=True)
class ShareState:
    authority: str
    expires_at: datetime | None
    revoked_at: datetime | None

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    refusal: Refusal | None = None
    reason: str = ""

    @staticmethod
    def allow() -> Decision:
        return Decision(True)

    @staticmethod
    def refuse(refusal: Refusal, reason: str) -> Decision:
        return Decision(False, refusal, reason)


def decide(caller: Caller, op: Operation, owner_authority: str, share: ShareState | None,
           now: datetime, operator_authority: str) -> Decision:
    """Decide whether ``caller`` may perform ``op`` on a package owned by ``owner_authority``.

    ``share`` is the package's share with the caller's authority, if there ever was one.
    """
    is_owner = caller.authority == owner_authority
    is_operator_auditor = caller.role == "auditor" and caller.authority == operator_authority
    investigator = caller.role == "investigator"

    if is_owner:
        if op is Operation.MODIFY and not investigator:
            return Decision.refuse(Refusal.FORBIDDEN, "only investigators can change a package")
        if op is Operation.DOWNLOAD and not investigator:
            return Decision.refuse(Refusal.FORBIDDEN, "auditors never read evidence content")
        return Decision.allow()

    if share is None:
        if is_operator_auditor and op in (Operation.READ_METADATA, Operation.READ_CUSTODY):
            return Decision.allow()
        if is_operator_auditor and op is Operation.DOWNLOAD:
            return Decision.refuse(Refusal.FORBIDDEN, "auditors never read evidence content")
        if is_operator_auditor:
            return Decision.refuse(Refusal.FORBIDDEN,
                                   "only the owning authority can change a package")
        return Decision.refuse(Refusal.NOT_FOUND, "no such package for this authority")

    # A recipient authority: it was sent this package at some point.
    if op is Operation.MODIFY:
        return Decision.refuse(Refusal.FORBIDDEN, "only the owning authority can change a package")
    if op is Operation.DOWNLOAD and not investigator:
        return Decision.refuse(Refusal.FORBIDDEN, "auditors never read evidence content")
    if op in (Operation.READ_CUSTODY, Operation.READ_METADATA) and not investigator:
        # Auditors of a recipient keep seeing the record after the share ends: that is the audit.
        return Decision.allow()
    if share.revoked_at is not None:
        return Decision.refuse(Refusal.SHARE_REVOKED, "the share with this authority was revoked")
    if not share.active(now):
        return Decision.refuse(Refusal.SHARE_EXPIRED, "the share with this authority has expired")
    return Decision.allow()
