"""The gate every package operation passes: access decisions on the record, and the order of
a mutation's steps (lock, check, record, write).

Refusals are recorded, then raised. If the ledger cannot be written the operation is refused
(``LedgerUnavailable``) and nothing happens.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime

from sqlalchemy.engine import Connection, Engine

from service.packages import repository as repo
from service.packages.errors import AccessDenied, PackageNotFound, ShareExpired, ShareRevoked
from service.packages.policy import Caller, Decision, Operation, Refusal, decide
from service.recorder import CustodyRecorder

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Gate:
    def __init__(self, engine: Engine, recorder: CustodyRecorder, *, operator_authority: str,
                 clock: Clock = utcnow) -> None:
        self.engine = engine
        self.recorder = recorder
        self.operator = operator_authority
        self.clock = clock
        # SQLite has one writer for the whole file and FOR UPDATE is a no-op there: package
        # mutations of this (single, embedded) process take this lock instead of a row lock.
        self._sqlite_lock = threading.Lock() if engine.dialect.name == "sqlite" else None

    def now(self) -> datetime:
        return self.clock()

    @contextmanager
    def mutating(self) -> Iterator[Connection]:
        """A transaction for a package mutation.

        Order inside it, always: lock the package row, check, record the ledger entry, call
        :meth:`before_write`, then write. The entry is written by the ledger's own transaction;
        on SQLite the read snapshot must end before our write (WAL cannot upgrade a snapshot
        older than the ledger's commit) -- the process lock keeps the checks true meanwhile.
        """
        lock = self._sqlite_lock or nullcontext()
        with lock, self.engine.connect() as conn:
            try:
                yield conn
            except BaseException:
                conn.rollback()
                raise
            conn.commit()

    def before_write(self, conn: Connection) -> None:
        if self._sqlite_lock is not None:
            conn.commit()

    def authorize(self, conn: Connection, caller: Caller, package_id: str, op: Operation,
                  action: str, item: str | None = None) -> repo.PackageRow:
        """Return the package if ``caller`` may do ``op``; else record the refusal and raise.

        Raises:
            PackageNotFound, AccessDenied, ShareExpired, ShareRevoked: refused (recorded).
            LedgerUnavailable: the refusal could not be recorded.
        """
        package = repo.get_package(conn, package_id)
        if package is None:
            decision = Decision.refuse(Refusal.NOT_FOUND, "no such package")
        else:
            # The owner's own share never counts (policy.decide): no query for it.
            share = None if caller.authority == package.owner_authority else \
                repo.get_share(conn, package_id, caller.authority)
            decision = decide(caller, op, package.owner_authority,
                              share.state() if share else None, self.clock(), self.operator)
        if decision.allowed:
            assert package is not None
            return package
        # Probes of unknown ids are recorded without the id as package (it names no package).
        self.recorder.record(
            caller, action, package=package_id if package else None, item=item,
            outcome="denied", reason=decision.reason,
            details=None if package else {"requested_package": package_id[:80]},
        )
        if decision.refusal is Refusal.NOT_FOUND:
            raise PackageNotFound(f"package {package_id} not found")
        if decision.refusal is Refusal.SHARE_EXPIRED:
            raise ShareExpired(decision.reason)
        if decision.refusal is Refusal.SHARE_REVOKED:
            raise ShareRevoked(decision.reason)
        raise AccessDenied(decision.reason)

    def still_allowed(self, caller: Caller, package: repo.PackageRow, op: Operation) -> None:
        """Raise ShareRevoked/ShareExpired/AccessDenied if ``caller`` may no longer do ``op``
        (checked again during a long operation; nothing is recorded here)."""
        if caller.authority == package.owner_authority:
            return
        with self.engine.connect() as conn:
            share = repo.get_share(conn, package.id, caller.authority)
        decision = decide(caller, op, package.owner_authority,
                          share.state() if share else None, self.clock(), self.operator)
        if decision.allowed:
            return
        if decision.refusal is Refusal.SHARE_EXPIRED:
            raise ShareExpired(decision.reason)
        if decision.refusal is Refusal.SHARE_REVOKED:
            raise ShareRevoked(decision.reason)
        raise AccessDenied(decision.reason)

    def refuse(self, caller: Caller, action: str, package: str, error: Exception, *,
               item: str | None = None, outcome: str = "denied") -> Exception:
        """Record ``error`` as a refused (``denied``) or bad (``failed``) attempt; return it."""
        self.recorder.record(caller, action, package=package, item=item, outcome=outcome,
                             reason=str(error))
        return error
