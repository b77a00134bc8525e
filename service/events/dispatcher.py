"""Webhook delivery from the durable outbox, and the events that time raises.

Delivery follows the Standard Webhooks specification (https://www.standardwebhooks.com/): a POST
of ``{"type", "timestamp", "data"}`` with ``webhook-id`` (the event id: the same on every retry,
so receivers deduplicate), ``webhook-timestamp`` (this attempt, Unix seconds) and
``webhook-signature`` (``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` with the endpoint's
``whsec_`` secret), signed by the ``standardwebhooks`` library. Any 2xx is success; anything else,
a timeout or a refused connection is retried on the schedule; a delivery is leased while it is
being sent, so a crash (or a second replica) only ever causes a repeat with the same id --
at-least-once.

The scanner raises, once each, ``request.deadline_approaching`` / ``request.deadline_passed``
for a request's next deadline and ``share.expiring`` / ``share.expired`` for shares, to both
authorities concerned.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import structlog
from sqlalchemy.engine import Engine
from standardwebhooks import Webhook

from service.events import repository as repo
from service.packages import repository as packages
from service.requests import repository as requests
from service.requests.service import event_data

log = structlog.get_logger("evx.webhooks")

SCAN_SECONDS = 30.0  # deadlines and expiries are looked at this often (minutes matter, not ms)
BATCH = 50  # deliveries claimed per round; the rest wait for the next
# A delivery being sent is hidden this long past its timeout; if its sender died, it is sent
# again after that (same id): the price of never losing one.
LEASE_MARGIN_SECONDS = 5
MAX_RESPONSE_BYTES = 64 * 1024  # a receiver's answer is never needed beyond its status


def payload(event_type: str, occurred_at: datetime, data: dict[str, Any]) -> bytes:
    """The delivered body: fixed per event, so a repeat is byte-identical."""
    return json.dumps({"type": event_type, "timestamp": occurred_at.astimezone(
        UTC).isoformat().replace("+00:00", "Z"), "data": data},
        separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode()


def parse_schedule(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


class Notifier:
    """Delivers due webhooks and raises time-driven events; one background thread per replica."""

    def __init__(self, engine: Engine, *, retry_schedule: list[float], timeout: float,
                 poll_seconds: float, warning: timedelta,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self._engine = engine
        self._schedule = retry_schedule
        self._timeout = timeout
        self._poll = poll_seconds
        self._warning = warning
        self._clock = clock
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._http = httpx.Client(timeout=timeout, follow_redirects=False)

    # -- the loop -----------------------------------------------------------------------------

    def wake(self) -> None:
        """Something was committed to the outbox: deliver now rather than at the next poll."""
        self._wake.set()

    @property
    def woken(self) -> bool:
        """A commit asked for a round before the next poll (read by tests)."""
        return self._wake.is_set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True, name="webhooks")
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=self._timeout + 5)
        self._http.close()

    def _run(self) -> None:
        last_scan = float("-inf")
        while not self._stop.is_set():
            try:
                if time.monotonic() - last_scan >= max(self._poll, SCAN_SECONDS):
                    last_scan = time.monotonic()
                    self.scan()
                while self.deliver_due() and not self._stop.is_set():
                    pass
            except Exception as exc:  # noqa: BLE001 - the outbox keeps everything; try again
                log.warning("webhook_round_failed", error=type(exc).__name__, detail=str(exc))
            self._wake.wait(self._poll)
            self._wake.clear()

    # -- delivery -----------------------------------------------------------------------------

    def deliver_due(self) -> int:
        """Send every delivery due now (one batch); return how many were attempted."""
        now = self._clock()
        lease = now + timedelta(seconds=self._timeout + LEASE_MARGIN_SECONDS)
        with self._engine.begin() as conn:
            due = repo.claim_due(conn, now, BATCH, lease)
        for delivery in due:
            self._attempt(delivery)
        return len(due)

    def _attempt(self, d: repo.DueDelivery) -> None:
        body = payload(d.event_type, d.occurred_at, d.data)
        sent_at = self._clock()
        signature = Webhook(d.secret).sign(d.event_id, sent_at, body.decode())
        headers = {"content-type": "application/json", "webhook-id": d.event_id,
                   "webhook-timestamp": str(int(sent_at.timestamp())),
                   "webhook-signature": signature, "user-agent": "evidence-exchange-webhooks"}
        status: int | None = None
        error: str | None = None
        started = time.perf_counter()
        try:
            with self._http.stream("POST", d.url, content=body, headers=headers) as response:
                status = response.status_code
                for _ in response.iter_bytes(MAX_RESPONSE_BYTES):
                    break
            if not 200 <= status < 300:
                error = f"HTTP {status}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        ms = int((time.perf_counter() - started) * 1000)
        attempt = d.attempts + 1
        delivered = error is None
        next_at = None
        if not delivered and attempt <= len(self._schedule):
            next_at = self._clock() + timedelta(seconds=self._schedule[attempt - 1])
        with self._engine.begin() as conn:
            repo.record_attempt(conn, d.id, attempt, at=sent_at, status_code=status,
                                error=error, ms=ms, delivered=delivered, next_attempt_at=next_at)
        log.info("webhook_attempt", event_id=d.event_id, type=d.event_type, attempt=attempt,
                 status=status, error=error, ms=ms)

    # -- events raised by time ----------------------------------------------------------------

    def scan(self) -> int:
        """Raise the deadline and expiry events that are due; return how many were raised."""
        now = self._clock()
        horizon = now + self._warning
        raised = 0
        with self._engine.begin() as conn:
            for r in requests.open_with_deadline_before(conn, horizon):
                assert r.next_due_at is not None
                passed = now >= r.next_due_at
                kind = "request.deadline_passed" if passed else "request.deadline_approaching"
                key = f"{kind}:{r.id}:{r.next_milestone}:{r.next_due_at.isoformat()}"
                raised += len(repo.emit(conn, (r.requesting_authority, r.executing_authority),
                                        kind, event_data(r), now=now, once_key=key))
            for s in packages.active_shares_expiring_before(conn, horizon):
                assert s.expires_at is not None
                package = packages.get_package(conn, s.package_id)
                assert package is not None
                kind = "share.expired" if now >= s.expires_at else "share.expiring"
                key = f"{kind}:{s.package_id}:{s.authority}:{s.expires_at.isoformat()}"
                data = {"package": s.package_id, "owner_authority": package.owner_authority,
                        "authority": s.authority, "expires_at": s.expires_at.isoformat(),
                        "request_reference": s.request_reference}
                raised += len(repo.emit(conn, (package.owner_authority, s.authority), kind,
                                        data, now=now, once_key=key))
        if raised:
            self.wake()
        return raised
