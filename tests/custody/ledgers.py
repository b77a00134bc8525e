"""Building valid synthetic ledgers for tests (pure, in memory)."""

from __future__ import annotations

import base64
import io
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from custody.checkpoint import Checkpoint
from custody.entry import Action, Actor, Entry, Legal, Outcome, Role, TokenRef
from custody.export import write_export
from custody.merkle import root_from_leaf_hashes
from custody.note import Signer

# ../shared/vectors beside the repository (as CI has it); EVX_SHARED_VECTORS for a checkout
# elsewhere (a git worktree).
VECTORS = Path(os.environ.get("EVX_SHARED_VECTORS")
               or Path(__file__).resolve().parents[2].parent / "shared" / "vectors")
ORIGIN = "evx.test/ledger"
SEED = bytes(range(32))


def signer(name: str = ORIGIN, seed: bytes = SEED) -> Signer:
    return Signer.from_seed(name, seed)


@dataclass
class Ledger:
    entries: list[Entry]
    signer: Signer

    @property
    def leaf_hashes(self) -> list[bytes]:
        return [e.leaf_hash() for e in self.entries]

    def checkpoint(self, size: int | None = None) -> Checkpoint:
        size = len(self.entries) if size is None else size
        return Checkpoint(self.signer.name, size, root_from_leaf_hashes(self.leaf_hashes[:size]))

    def note(self, size: int | None = None) -> str:
        return self.checkpoint(size).sign(self.signer)

    def export_bytes(self, size: int | None = None) -> bytes:
        size = len(self.entries) if size is None else size
        out = io.BytesIO()
        write_export(self.entries[:size], None, self.note(size), out)
        return out.getvalue()

    def export_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.export_bytes().splitlines()]


def chain(specs: list[dict[str, Any]]) -> list[Entry]:
    """Entries from partial specs, with index/prev/package_prev filled in as the log would."""
    entries: list[Entry] = []
    heads: dict[str, str] = {}
    for i, spec in enumerate(specs):
        fields: dict[str, Any] = {
            "time": f"2025-03-01T12:00:{i % 60:02d}.{i:06d}Z",
            "actor": Actor("fr-pj", "alice", Role.INVESTIGATOR),
            "action": Action.PACKAGE_READ,
            "outcome": Outcome.ALLOWED,
        }
        fields.update(spec)
        package = fields.get("package")
        entry = Entry(
            index=i,
            prev=entries[-1].leaf_hash().hex() if entries else None,
            package_prev=heads.get(package) if package is not None else None,
            **fields,
        )
        if package is not None:
            heads[package] = entry.leaf_hash().hex()
        entries.append(entry)
    return entries


def random_ledger(n: int, rng: random.Random, packages: int = 3, name: str = ORIGIN) -> Ledger:
    specs: list[dict[str, Any]] = []
    actions = list(Action)
    for i in range(n):
        outcome = rng.choice([Outcome.ALLOWED, Outcome.ALLOWED, Outcome.DENIED, Outcome.FAILED])
        package = rng.choice([None, *[f"pkg-{p}" for p in range(packages)]])
        specs.append(
            {
                "actor": Actor(
                    rng.choice(["fr-pj", "de-bka", "nl-om"]),
                    f"user{rng.randrange(5)}",
                    rng.choice(list(Role)),
                ),
                "action": rng.choice(actions),
                "outcome": outcome,
                "package": package,
                "item": rng.choice([None, "disk.img", "photo-\u00e9t\u00e9.jpg"])
                if package
                else None,
                "reason": None
                if outcome is Outcome.ALLOWED
                else rng.choice(["no share", "timeout"]),
                "legal": rng.choice([None, Legal("EIO 2014/41/EU", f"REQ-{i}")]),
                "details": {
                    "size": rng.randrange(10**9),
                    "sha256": f"{rng.getrandbits(256):064x}",
                    "note": rng.choice(["", "ok", "\u2028\x01"]),
                    "flag": rng.choice([True, False, None]),
                },
                # every third entry of version 1 (written before tokens were recorded), the rest v2
                "v": 1 if i % 3 == 0 else 2,
                "token": None
                if i % 3 == 0 or rng.random() < 0.3
                else TokenRef(
                    rng.choice(["kid-1", "2026-de"]),
                    base64.urlsafe_b64encode(rng.randbytes(32)).decode().rstrip("="),
                    f"jti-{i}-\u00e9",
                ),
            }
        )
    return Ledger(chain(specs), signer(name))


def exchange_ledger(name: str = ORIGIN) -> Ledger:
    """Nine entries of a legitimate exchange that keeps every rule of custody.rules: one package
    created, two items uploaded, sealed, shared with nl-om, downloaded by it, plus entries
    without a package."""
    from custody.rules import manifest_sha256

    pkg = "pkg-x"
    owner = Actor("fr-pj", "alice", Role.INVESTIGATOR)
    items = [
        ("disk.img", 4096, "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"),
        (
            "photo-\u00e9t\u00e9.jpg",
            12,
            "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752",
        ),
    ]
    partner = Actor("nl-om", "bram", Role.INVESTIGATOR)
    legal = Legal("EIO 2014/41/EU", "NL-2025-7")
    specs: list[dict[str, Any]] = [
        {"action": Action.PACKAGE_CREATED, "package": pkg, "actor": owner},
        *(
            {
                "action": Action.ITEM_UPLOADED,
                "package": pkg,
                "actor": owner,
                "item": n,
                "details": {"size": s, "sha256": h},
            }
            for n, s, h in items
        ),
        {
            "action": Action.PACKAGE_SEALED,
            "package": pkg,
            "actor": owner,
            "details": {"manifest_sha256": manifest_sha256(pkg, items), "items": 2, "bytes": 4108},
        },
        {"action": Action.PACKAGE_LISTED, "actor": partner, "details": {"count": 0}},
        {
            "action": Action.SHARE_CREATED,
            "package": pkg,
            "actor": owner,
            "legal": legal,
            "details": {"authority": "nl-om", "expires_at": None},
        },
        {
            "action": Action.DOWNLOAD_STARTED,
            "package": pkg,
            "actor": partner,
            "item": items[0][0],
            "legal": legal,
            "details": {"offset": 0, "length": 4096, "sha256": items[0][2]},
        },
        {
            "action": Action.DOWNLOAD_COMPLETED,
            "package": pkg,
            "actor": partner,
            "item": items[0][0],
            "details": {"bytes_sent": 4096},
        },
        {
            "action": Action.LEDGER_READ,
            "actor": Actor("eu", "olga", Role.AUDITOR),
            "details": {"start": 0},
        },
    ]
    return Ledger(chain(specs), signer(name))
