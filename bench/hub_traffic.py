"""A plausible stream of custody events as a hub of many authorities would record them.

Packages go through their life interleaved -- created, items uploaded, sealed, shared with one
or two other authorities, read, downloaded item by item, verified by the recipient, their record
read -- with officers' tokens on every entry (entry version 2), legal grounds on cross-border
steps, refused attempts, and listings and ledger reads that belong to no package. The details are
those the service writes for each action (``service/packages``, ``service/ledger/endpoints.py``).
Requests (``req_`` chains) are left out. Deterministic for a seed.
"""

from __future__ import annotations

import base64
import hashlib
import random
from collections.abc import Iterator

from custody.entry import Actor, Legal, TokenRef
from service.ledger import Event

#: EU member states, two agencies each: the authorities of "a continent".
COUNTRIES = ("AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU",
             "IE", "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK")
AUTHORITIES = tuple(f"{c}-{agency}" for c in COUNTRIES for agency in ("POL", "PROS"))
BASES = ("EIO 2014/41/EU", "Regulation (EU) 2023/1543", "MLA Convention 2000")
ITEM_NAMES = ("disk-{n:03d}.E01", "phone-{n:03d}.ufdr", "IMG_{n:04d}.jpg", "mails-{n:02d}.pst",
              "cctv/cam{n:02d}/2026-03-14.mp4", "Beschlagnahme-Übersicht-{n}.pdf")
#: Packages with events still to come, picked at random: their entries interleave.
ACTIVE_PACKAGES = 2_000
#: Officers per authority (subjects on the record).
OFFICERS = 2_000
#: Share of entries about no package (listings, ledger reads).
UNATTACHED = 0.04


class HubTraffic:
    """Events in the order a busy hub records them. Iterate for an endless stream."""

    def __init__(self, seed: int = 7) -> None:
        self._rng = random.Random(seed)
        self._active: list[Iterator[Event]] = []
        self._tokens: dict[str, list[TokenRef]] = {}

    def __iter__(self) -> Iterator[Event]:
        rng = self._rng
        while True:
            if rng.random() < UNATTACHED:
                yield self._unattached()
                continue
            while len(self._active) < ACTIVE_PACKAGES:
                self._active.append(self._package_life())
            slot = rng.randrange(len(self._active))
            event = next(self._active[slot], None)
            if event is None:
                self._active[slot] = self._active[-1]
                self._active.pop()
                continue
            yield event

    def read(self, package: str) -> Event:
        """A ``package.read`` by an investigator of some authority (what every metadata read
        records): the append measured on a grown ledger."""
        authority = self._rng.choice(AUTHORITIES)
        return Event(actor=self._officer(authority), action="package.read", outcome="allowed",
                     package=package, legal=self._legal(), token=self._token(authority))

    def _officer(self, authority: str, role: str = "investigator") -> Actor:
        return Actor(authority, f"{authority.lower()}-{self._rng.randrange(OFFICERS):05d}", role)

    def _token(self, authority: str) -> TokenRef:
        # An officer's token serves many requests: a pool of live tokens per authority.
        pool = self._tokens.get(authority)
        if pool is None:
            pool = self._tokens[authority] = [self._new_token(authority) for _ in range(64)]
        return pool[self._rng.randrange(len(pool))]

    def _new_token(self, authority: str) -> TokenRef:
        key = self._rng.randrange(3)
        thumbprint = hashlib.sha256(f"{authority}/{key}".encode()).digest()
        jti = f"{self._rng.getrandbits(128):032x}"
        return TokenRef(f"{authority.lower()}-2026-{key}",
                        base64.urlsafe_b64encode(thumbprint).rstrip(b"=").decode(),
                        f"{jti[:8]}-{jti[8:12]}-{jti[12:16]}-{jti[16:20]}-{jti[20:]}")

    def _legal(self) -> Legal:
        rng = self._rng
        return Legal(rng.choice(BASES), f"{rng.choice(COUNTRIES)}-2026-{rng.randrange(10**5):05d}")

    def _hex(self) -> str:
        return f"{self._rng.getrandbits(256):064x}"

    def _unattached(self) -> Event:
        rng = self._rng
        authority = rng.choice(AUTHORITIES)
        if rng.random() < 0.7:
            return Event(actor=self._officer(authority), action="package.listed",
                         outcome="allowed", token=self._token(authority),
                         details={"count": rng.randrange(50), "offset": 50 * rng.randrange(4)})
        return Event(actor=self._officer(authority, "auditor"), action="ledger.read",
                     outcome="allowed", token=self._token(authority),
                     details={"start": rng.randrange(10**7), "limit": 1000})

    def _package_life(self) -> Iterator[Event]:
        rng = self._rng
        package = f"pkg_{rng.getrandbits(128):032x}"
        owner = rng.choice(AUTHORITIES)
        officer = self._officer(owner)

        def by_owner(action: str, outcome: str = "allowed", **fields: object) -> Event:
            return Event(actor=officer, action=action, outcome=outcome, package=package,
                         token=self._token(owner), **fields)  # type: ignore[arg-type]

        yield by_owner("package.created", details={
            "case_reference": f"{owner} {rng.randrange(10**5)}/26 — Ermittlungsverfahren"})
        items: dict[str, tuple[int, str]] = {}
        for n in range(1 + min(int(rng.expovariate(0.4)), 11)):
            name = rng.choice(ITEM_NAMES).format(n=n)
            if name in items:
                continue
            if rng.random() < 0.03:
                yield by_owner("item.upload_failed", item=name, outcome="failed",
                               reason="upload interrupted",
                               details={"bytes_received": rng.randrange(10**9)})
            items[name] = (rng.randrange(10**4, 10**11), self._hex())
            yield by_owner("item.uploaded", item=name,
                           details={"size": items[name][0], "sha256": items[name][1]})
        manifest, total = self._hex(), sum(size for size, _ in items.values())
        yield by_owner("package.sealed", details={"manifest_sha256": manifest,
                                                   "items": len(items), "bytes": total})
        for recipient in rng.sample([a for a in AUTHORITIES if a != owner], rng.choice((1, 1, 2))):
            legal = self._legal()
            yield by_owner("share.created", legal=legal, details={
                "authority": recipient, "expires_at": "2027-06-30T00:00:00Z"})
            reader = self._officer(recipient)

            def by_recipient(action: str, *, who: Actor = reader, recipient: str = recipient,
                             legal: Legal = legal, **fields: object) -> Event:
                return Event(actor=who, action=action, outcome="allowed", package=package,
                             legal=legal, token=self._token(recipient),
                             **fields)  # type: ignore[arg-type]

            yield by_recipient("package.read")
            for name, (size, digest) in items.items():
                yield by_recipient("download.started", item=name,
                                   details={"offset": 0, "length": size, "sha256": digest})
                yield by_recipient("download.completed", item=name, details={"bytes_sent": size})
            yield by_recipient("download.verified", details={
                "manifest_sha256": manifest, "items": len(items), "bytes": total,
                "matches_seal": True})
            yield by_recipient("custody.read", who=self._officer(recipient, "auditor"))
        for _ in range(rng.randrange(4)):
            yield by_owner("package.read")
        if rng.random() < 0.1:
            stranger = rng.choice(AUTHORITIES)
            yield Event(actor=self._officer(stranger), action="package.read", outcome="denied",
                        package=package, reason="no active share for the caller's authority",
                        token=self._token(stranger))
        yield by_owner("custody.read")
