"""Writes custody events to the ledger on behalf of the HTTP layer; the one place that does.

Every call either returns the durable entry's index or raises ``LedgerUnavailable`` -- callers
refuse the operation (503) in that case: no entry, no action.
"""

from __future__ import annotations

import time

import structlog

from custody.entry import Actor, Legal, Role, TokenRef
from evx.protocol.names import MAX_NAME_TEXT_CHARS
from service.identity.caller import Caller
from service.identity.tokens import Principal
from service.ledger.errors import LedgerUnavailable
from service.ledger.ledger import Ledger
from service.ledger.models import Event
from service.metrics import Metrics

log = structlog.get_logger("evx.custody")

# Bounds on caller-supplied text in an entry (characters; the canonical entry is at most
# custody.entry.MAX_ENTRY_BYTES): longer text is cut and marked with an ellipsis.
MAX_REASON_CHARS = 500
MAX_ITEM_CHARS = MAX_NAME_TEXT_CHARS  # a valid name is never cut
MAX_DETAIL_CHARS = 1000


def _bounded(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[:limit - 1] + "\u2026"


class CustodyRecorder:
    def __init__(self, ledger: Ledger, metrics: Metrics) -> None:
        self._ledger = ledger
        self._metrics = metrics

    def record(self, caller: Caller, action: str, *, package: str | None = None,
               item: str | None = None, outcome: str = "allowed", reason: str | None = None,
               legal: dict[str, str] | None = None,
               details: dict[str, str | int | bool | None] | None = None) -> int:
        """Append one entry and return its index once it is durable.

        Raises:
            LedgerUnavailable: the entry could not be written (the caller must refuse).
        """
        started = time.perf_counter()
        # A caller's text never makes an entry too large to append (review M4: a 65 KB item
        # name in a refusal reason broke the append and left the attempt unrecorded).
        reason = _bounded(reason, MAX_REASON_CHARS)
        item = _bounded(item, MAX_ITEM_CHARS)
        if details:
            details = {k: _bounded(v, MAX_DETAIL_CHARS) if isinstance(v, str) else v
                       for k, v in details.items()}
        try:
            appended = self._ledger.append(Event(
                actor=Actor(caller.authority, caller.subject, Role(caller.role)),
                action=action, outcome=outcome, package=package, item=item, reason=reason,
                legal=Legal(legal["basis"], legal["request_reference"]) if legal else None,
                details=details or {}, token=token_of(caller),
            ))
        except LedgerUnavailable:
            self._metrics.ledger_failures.inc()
            log.error("ledger_append_failed", action=action, package=package)
            raise
        except Exception as exc:  # any other failure is still "could not record": fail closed
            self._metrics.ledger_failures.inc()
            log.error("ledger_append_failed", action=action, package=package,
                      error=type(exc).__name__)
            raise LedgerUnavailable(f"custody entry could not be written: {exc}") from exc
        self._metrics.ledger_append_seconds.observe(time.perf_counter() - started)
        self._metrics.ledger_appends.labels(action, outcome).inc()
        if outcome == "denied":  # labelled by action: a reason may carry names (review L4)
            self._metrics.denied.labels(action).inc()
        return int(appended.index)


def token_of(caller: Caller) -> TokenRef | None:
    """The token behind an officer's action (entry version 2); ``None`` for system actors."""
    if isinstance(caller, Principal) and caller.kid and caller.key_thumbprint:
        return TokenRef(caller.kid, caller.key_thumbprint, caller.token_id)
    return None
