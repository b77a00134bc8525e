"""Evidence packages: create, read, list, seal, share, revoke -- each on the custody record.

Every operation passes the :class:`Gate` (access decided and refusals recorded), and records its
outcome durably before it reports success.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from datetime import UTC, datetime

from custody import rules
from service.events import repository as events
from service.packages import repository as repo
from service.packages.errors import (
    AccessDenied,
    InvalidRequest,
    PackageNotFound,
    PackageNotSealed,
    PackageSealed,
)
from service.packages.gate import Gate
from service.packages.policy import Caller, Operation, decide


def new_package_id() -> str:
    # 128 random bits: ids are not secrets, but unguessable ids cost nothing.
    return "pkg_" + secrets.token_hex(16)


class PackageService:
    def __init__(self, gate: Gate, *, known_authority: Callable[[str], bool]) -> None:
        self._gate = gate
        self._known_authority = known_authority

    def now(self) -> datetime:
        return self._gate.now()

    # -- packages -----------------------------------------------------------------------------

    def create(self, caller: Caller, *, case_reference: str, title: str,
               description: str) -> repo.PackageRow:
        if caller.role != "investigator":
            self._gate.recorder.record(caller, "package.created", outcome="denied",
                                  reason="only investigators create packages")
            raise AccessDenied("only investigators create packages")
        package_id = new_package_id()
        now = self._gate.now()
        self._gate.recorder.record(caller, "package.created", package=package_id,
                              details={"case_reference": case_reference})
        with self._gate.engine.begin() as conn:
            repo.insert_package(conn, id=package_id, owner_authority=caller.authority,
                                case_reference=case_reference, title=title,
                                description=description, created_by=caller.subject,
                                created_at=now)
        package = self.read_row(package_id)
        return package

    def read_row(self, package_id: str) -> repo.PackageRow:
        with self._gate.engine.connect() as conn:
            package = repo.get_package(conn, package_id)
        if package is None:
            raise PackageNotFound(f"package {package_id} not found")
        return package

    def read(self, caller: Caller, package_id: str) -> tuple[repo.PackageRow,
                                                              list[repo.ItemRow],
                                                              list[repo.ShareRow]]:
        with self._gate.engine.connect() as conn:
            package = self._gate.authorize(conn, caller, package_id, Operation.READ_METADATA,
                                      "package.read")
            items = repo.package_items(conn, package_id)
            shares = repo.package_shares(conn, package_id)
        self._gate.recorder.record(caller, "package.read", package=package_id)
        if caller.authority != package.owner_authority:
            shares = [s for s in shares if s.authority == caller.authority]
        return package, items, shares

    def list(self, caller: Caller, *, limit: int, offset: int) -> list[tuple[
            repo.PackageRow, list[repo.ItemRow], list[repo.ShareRow]]]:
        everything = caller.role == "auditor" and caller.authority == self._gate.operator
        now = self._gate.now()
        result = []
        with self._gate.engine.connect() as conn:
            for package in repo.visible_packages(conn, caller.authority, all_packages=everything,
                                                 limit=limit, offset=offset):
                shares = repo.package_shares(conn, package.id)
                mine = next((s for s in shares if s.authority == caller.authority), None)
                decision = decide(caller, Operation.READ_METADATA, package.owner_authority,
                                  mine.state() if mine else None, now, self._gate.operator)
                if not decision.allowed:
                    continue  # an ended share: the package drops out of the recipient's list
                if caller.authority != package.owner_authority:
                    shares = [s for s in shares if s.authority == caller.authority]
                result.append((package, repo.package_items(conn, package.id), shares))
        self._gate.recorder.record(caller, "package.listed",
                              details={"count": len(result), "offset": offset})
        return result

    def seal(self, caller: Caller, package_id: str) -> tuple[repo.PackageRow, int]:
        with self._gate.mutating() as conn:
            self._gate.authorize(conn, caller, package_id, Operation.MODIFY, "package.sealed")
            package = repo.lock_package(conn, package_id)
            assert package is not None
            if package.sealed_at is not None:
                raise self._gate.refuse(caller, "package.sealed", package_id,
                                   PackageSealed("the package is already sealed"))
            items = repo.package_items(conn, package_id)
            manifest = manifest_sha256(package_id, items)
            index = self._gate.recorder.record(
                caller, "package.sealed", package=package_id,
                details={"manifest_sha256": manifest, "items": len(items),
                         "bytes": sum(i.size for i in items)})
            self._gate.before_write(conn)
            repo.seal(conn, package_id, sealed_at=self._gate.now(), sealed_by=caller.subject,
                      manifest_sha256=manifest)
        return self.read_row(package_id), index

    def receipt(self, caller: Caller, package_id: str, *, manifest: str, items: int,
                size: int) -> tuple[int, bool]:
        """Record that the recipient verified the items it received (``download.verified``):
        the manifest hash it computed, and whether it equals the one recorded at seal."""
        with self._gate.engine.connect() as conn:
            package = self._gate.authorize(conn, caller, package_id, Operation.DOWNLOAD,
                                           "download.verified")
        matches = package.manifest_sha256 is not None and \
            hmac.compare_digest(package.manifest_sha256, manifest)
        index = self._gate.recorder.record(
            caller, "download.verified", package=package_id,
            details={"manifest_sha256": manifest, "items": items, "bytes": size,
                     "matches_seal": matches})
        return index, matches

    # -- sharing ------------------------------------------------------------------------------

    def share(self, caller: Caller, package_id: str, *, authority: str, legal_basis: str,
              request_reference: str, expires_at: datetime | None) -> repo.ShareRow:
        legal = {"basis": legal_basis, "request_reference": request_reference}
        with self._gate.mutating() as conn:
            package = self._gate.authorize(conn, caller, package_id, Operation.MODIFY,
                                      "share.created")
            repo.lock_package(conn, package_id)
            if package.sealed_at is None:
                raise self._gate.refuse(caller, "share.created", package_id,
                                   PackageNotSealed("seal the package before sharing it"))
            if authority == caller.authority:
                raise self._gate.refuse(caller, "share.created", package_id, InvalidRequest(
                    "a package cannot be shared with its own authority"), outcome="failed")
            if not self._known_authority(authority):
                raise self._gate.refuse(caller, "share.created", package_id, InvalidRequest(
                    f"authority {authority!r} is not in the trust registry"), outcome="failed")
            now = self._gate.now()
            if expires_at is not None:
                if expires_at.tzinfo is None:
                    raise self._gate.refuse(caller, "share.created", package_id, InvalidRequest(
                        "expires_at needs a time zone"), outcome="failed")
                if expires_at <= now:
                    raise self._gate.refuse(caller, "share.created", package_id, InvalidRequest(
                        "expires_at is in the past"), outcome="failed")
                # Stored and recorded in UTC: SQLite keeps no offset, and the ledger and the
                # share row must say the same instant.
                expires_at = expires_at.astimezone(UTC)
            self._gate.recorder.record(
                caller, "share.created", package=package_id, legal=legal,
                details={"authority": authority,
                         "expires_at": expires_at.isoformat() if expires_at else None})
            self._gate.before_write(conn)
            repo.upsert_share(conn, package_id=package_id, authority=authority,
                              legal_basis=legal_basis, request_reference=request_reference,
                              expires_at=expires_at, created_by=caller.subject, created_at=now)
            share = repo.get_share(conn, package_id, authority)
            events.emit(conn, [authority], "share.created", {
                "package": package_id, "owner_authority": package.owner_authority,
                "authority": authority, "legal_basis": legal_basis,
                "request_reference": request_reference,
                "expires_at": expires_at.isoformat() if expires_at else None,
                "manifest_sha256": package.manifest_sha256}, now=now)
        assert share is not None
        return share

    def revoke(self, caller: Caller, package_id: str, authority: str) -> repo.ShareRow:
        with self._gate.mutating() as conn:
            self._gate.authorize(conn, caller, package_id, Operation.MODIFY, "share.revoked")
            repo.lock_package(conn, package_id)
            share = repo.get_share(conn, package_id, authority)
            if share is None or share.revoked_at is not None:
                raise self._gate.refuse(caller, "share.revoked", package_id, InvalidRequest(
                    f"there is no active share with {authority!r}"), outcome="failed")
            self._gate.recorder.record(
                caller, "share.revoked", package=package_id,
                legal={"basis": share.legal_basis, "request_reference": share.request_reference},
                details={"authority": authority})
            self._gate.before_write(conn)
            repo.revoke_share(conn, package_id, authority, revoked_at=self._gate.now(),
                              revoked_by=caller.subject)
            events.emit(conn, [authority], "share.revoked", {
                "package": package_id, "owner_authority": caller.authority,
                "authority": authority, "request_reference": share.request_reference},
                now=self._gate.now())
            share = repo.get_share(conn, package_id, authority)
        assert share is not None
        return share


def manifest_sha256(package_id: str, items: list[repo.ItemRow]) -> str:
    """SHA-256 of the package manifest (docs/api.md, "Transfers").

    One definition with the partners' rules checker (``custody.rules``), which recomputes it
    from the ``item.uploaded`` entries.
    """
    return rules.manifest_sha256(package_id, ((i.name, i.size, i.sha256, i.kind, i.target)
                                              for i in items))
