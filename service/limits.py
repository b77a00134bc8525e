"""Rate limits on the record: no authority or officer can flood the ledger.

Every authenticated request writes a ledger entry (reads included: access is on the record), so
the rate of authenticated requests is the rate at which one caller can grow the ledger. Each
officer and each authority has a token bucket; a request beyond it is refused with 429 and
``Retry-After`` *without* an entry of its own. Refusals are still on the record, in bounded
form: one ``requests.throttled`` entry per officer per window carrying the count
(docs/ledger-format.md, "Throttled requests").

The buckets live in this replica's memory: with N replicas behind a balancer a caller gets up to
N times the rate, which is still bounded (docs/operations.md).
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import anyio
import structlog

from service.identity.caller import Caller

K = TypeVar("K")

#: An officer's bucket and refusal count: (authority, subject, role).
OfficerKey = tuple[str, str, str]

log = structlog.get_logger("evx.limits")

MAX_TRACKED_KEYS = 100_000  # DoS bound on the buckets kept (least recently used go first)


class TokenBuckets(Generic[K]):
    """One token bucket per key: ``burst`` tokens, refilled at ``rate`` per second."""

    def __init__(self, rate: float, burst: int, *, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = MAX_TRACKED_KEYS) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: OrderedDict[K, tuple[float, float]] = OrderedDict()
        self._lock = threading.Lock()

    def take(self, key: K) -> float:
        """Take a token for ``key``: 0.0 if granted, else the seconds until one is available."""
        now = self._clock()
        with self._lock:
            tokens, stamp = self._buckets.pop(key, (float(self.burst), now))
            tokens = min(float(self.burst), tokens + (now - stamp) * self.rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                wait = 0.0
            else:
                self._buckets[key] = (tokens, now)
                wait = (1.0 - tokens) / self.rate
            while len(self._buckets) > self._max_keys:
                self._buckets.popitem(last=False)
        return wait

    def give_back(self, key: K) -> None:
        """Return a token taken by :meth:`take` (the request was refused by another bucket)."""
        with self._lock:
            if key in self._buckets:
                tokens, stamp = self._buckets[key]
                self._buckets[key] = (min(float(self.burst), tokens + 1.0), stamp)


@dataclass(frozen=True)
class Throttled:
    """A request refused by a rate limit; ``retry_after`` in whole seconds (>= 1)."""

    retry_after: int
    scope: str  # "officer" or "authority"


class RequestLimits:
    """The per-officer and per-authority limits, and the bounded record of what they refused."""

    def __init__(self, *, officer_rate: float, officer_burst: int, authority_rate: float,
                 authority_burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._officers: TokenBuckets[OfficerKey] = TokenBuckets(officer_rate, officer_burst,
                                                                clock=clock)
        self._authorities: TokenBuckets[str] = TokenBuckets(authority_rate, authority_burst,
                                                            clock=clock)
        self._lock = threading.Lock()
        self._refused: dict[OfficerKey, tuple[Caller, int]] = {}
        self.window_started = time.time()

    def admit(self, caller: Caller) -> Throttled | None:
        """None if ``caller`` (authority, subject, role) may make a request now."""
        officer = (caller.authority, caller.subject, caller.role)
        wait = self._officers.take(officer)
        scope = "officer"
        if wait == 0.0:
            wait = self._authorities.take(caller.authority)
            scope = "authority"
            if wait > 0.0:
                self._officers.give_back(officer)
        if wait == 0.0:
            return None
        self.count_refused(caller, 1)
        return Throttled(max(1, math.ceil(wait)), scope)

    def count_refused(self, caller: Caller, count: int) -> None:
        """Add ``count`` refusals of ``caller`` to the current window."""
        officer = (caller.authority, caller.subject, caller.role)
        with self._lock:
            _, before = self._refused.get(officer, (caller, 0))
            self._refused[officer] = (caller, before + count)

    def drain(self) -> tuple[float, list[tuple[Caller, int]]]:
        """The refusals counted since the last drain, per officer, and when that window began."""
        with self._lock:
            refused, self._refused = self._refused, {}
            started, self.window_started = self.window_started, time.time()
        return started, list(refused.values())


class ThrottleRecorder(Protocol):
    """Where refusals go on the record (``service.recorder.CustodyRecorder``, a layer above)."""

    def record(self, caller: Caller, action: str, *, outcome: str, reason: str | None,
               details: dict[str, str | int | bool | None] | None) -> int: ...


def record_throttled(limits: RequestLimits, recorder: ThrottleRecorder,
                     window_seconds: float) -> int:
    """Write one ``requests.throttled`` entry per officer refused in the window; return how many.

    An officer's count that cannot be recorded (ledger down) is kept for the next window.
    """
    started, refused = limits.drain()
    written = 0
    for caller, count in refused:
        try:
            recorder.record(caller, "requests.throttled", outcome="denied",
                            reason="rate limit exceeded",
                            details={"count": count, "window_seconds": int(window_seconds),
                                     "window_start": int(started)})
            written += 1
        except Exception as exc:  # noqa: BLE001 - kept for the next window
            log.warning("throttle_record_failed", error=type(exc).__name__)
            limits.count_refused(caller, count)
    return written


def throttle_recorder(limits: RequestLimits, recorder: ThrottleRecorder, window_seconds: float,
                      stop: threading.Event) -> None:
    """Thread body: record the window's refusals every ``window_seconds``, and once at stop."""
    while not stop.wait(window_seconds):
        record_throttled(limits, recorder, window_seconds)
    record_throttled(limits, recorder, window_seconds)


# -- transfers -------------------------------------------------------------------------------

class TransferStalled(Exception):
    """The peer moved fewer bytes than the minimum rate over a window."""


class TransferRefused(Exception):
    """A transfer may not start now; ``retry_after`` in seconds. ``busy`` is True when the
    replica's memory budget is spent (a 503), False when the caller is over its own limit
    (a 429)."""

    def __init__(self, message: str, *, retry_after: int, busy: bool) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.busy = busy


DEFAULT_MAX_TRANSFERS = 64


class TransferSlots:
    """Concurrent transfers per officer, per authority and per replica, and the replica's budget
    of bytes buffered by transfers (each transfer reserves its worst case before its first byte).

    ``threads`` is the pool transfers run on, as large as the number of transfers: a one-request
    upload holds one of its threads while the network is slow (the store consumes the body as a
    blocking iterator), a download one per block. A transfer that holds a slot therefore never
    waits for a thread, and no other request ever uses one of these.
    """

    def __init__(self, *, per_officer: int, per_authority: int, budget_bytes: int,
                 max_transfers: int = DEFAULT_MAX_TRANSFERS) -> None:
        if max_transfers < 1:
            raise ValueError("max_transfers must be >= 1")
        self.per_officer = per_officer
        self.per_authority = per_authority
        self.budget_bytes = budget_bytes
        self.max_transfers = max_transfers
        self.threads = anyio.CapacityLimiter(max_transfers)
        self._lock = threading.Lock()
        self._officers: dict[tuple[str, str], int] = {}
        self._authorities: dict[str, int] = {}
        self.reserved = 0
        self.running = 0

    def try_acquire(self, caller: Caller, cost: int) -> None:
        """Reserve a slot and ``cost`` bytes, or raise :class:`TransferRefused`."""
        officer = (caller.authority, caller.subject)
        with self._lock:
            if self._officers.get(officer, 0) >= self.per_officer:
                raise TransferRefused(f"this officer already has {self.per_officer} transfers "
                                      "running", retry_after=5, busy=False)
            if self._authorities.get(caller.authority, 0) >= self.per_authority:
                raise TransferRefused(f"this authority already has {self.per_authority} "
                                      "transfers running", retry_after=5, busy=False)
            if self.running >= self.max_transfers:
                raise TransferRefused(f"the service runs its maximum of {self.max_transfers} "
                                      "transfers", retry_after=5, busy=True)
            if self.reserved + cost > self.budget_bytes:
                raise TransferRefused("the service is at its transfer memory budget",
                                      retry_after=5, busy=True)
            self._officers[officer] = self._officers.get(officer, 0) + 1
            self._authorities[caller.authority] = self._authorities.get(caller.authority, 0) + 1
            self.reserved += cost
            self.running += 1

    def release(self, caller: Caller, cost: int) -> None:
        officer = (caller.authority, caller.subject)
        with self._lock:
            self.reserved -= cost
            self.running -= 1
            _release_one(self._officers, officer)
            _release_one(self._authorities, caller.authority)


def _release_one(table: dict[K, int], key: K) -> None:
    """One running transfer fewer for ``key``; the key goes when it has none left."""
    left = table.get(key, 1) - 1
    if left:
        table[key] = left
    else:
        table.pop(key, None)
