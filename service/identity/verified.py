"""Tokens verified a moment ago, so a repeat is not parsed and its signature not checked again.

An officer's client sends the same token with every request until it expires; verifying it
(JSON parsing, the claim rules, an ECDSA or RSA signature, a registry look-up) was a tenth of a
metadata read's CPU. A repeat is served from here, keyed by the SHA-256 of the token (equal
digests mean the same bytes, so the same verdict), only while all of these hold:

* the token has not expired (the same rule, leeway included, as :func:`verify_token`);
* the trust registry has not changed in this process since the token was verified (the
  registrar's ``generation``): a key retired or an issuer changed here is refused at once;
* the verdict is younger than ``recheck_seconds``: a change made by another process (the CLI,
  another replica) is seen when the token is verified again, within the same bound as the
  registry key cache (``KEY_CACHE_SECONDS``) that verification already had.

Refusals are never cached: each is counted and logged.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta

from service.identity.tokens import Principal

MAX_VERIFIED_TOKENS = 10_000  # DoS bound: memory for tokens of distinct callers


class VerifiedTokens:
    """A bounded map from SHA-256(token) to the principal it verified to."""

    def __init__(self, *, recheck_seconds: float, max_entries: int = MAX_VERIFIED_TOKENS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if recheck_seconds < 0 or max_entries < 1:
            raise ValueError("recheck_seconds must be >= 0 and max_entries >= 1")
        self._recheck = recheck_seconds
        self._max = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[bytes, tuple[Principal, int, float]] = OrderedDict()

    def get(self, token: str, *, generation: int, now: datetime,
            leeway: timedelta) -> Principal | None:
        """The principal ``token`` verified to, if that verdict still stands; else None."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        with self._lock:
            entry = self._entries.get(digest)
            if entry is None:
                return None
            principal, verified_generation, verified_at = entry
            if (verified_generation != generation
                    or self._clock() - verified_at >= self._recheck
                    or now.timestamp() >= principal.expires_at.timestamp()
                    + leeway.total_seconds()):
                del self._entries[digest]
                return None
            return principal

    def put(self, token: str, principal: Principal, *, generation: int) -> None:
        """Remember that ``token`` verified to ``principal`` against registry ``generation``
        (read *before* verifying, so a change committed meanwhile invalidates the entry)."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        with self._lock:
            self._entries[digest] = (principal, generation, self._clock())
            self._entries.move_to_end(digest)
            while len(self._entries) > self._max:
                self._entries.popitem(last=False)
