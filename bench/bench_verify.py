"""Offline verification speed: ``custody.verify_export_lines`` over a synthetic export file.

Generates a realistic export (varied actions and outcomes, many packages with their own chains,
legal contexts, typical details, some non-ASCII text; a checkpoint signed with a fresh key) into
a temporary file with custody's own writer, then verifies it from disk with the canonical-line
fast path and with the reference path (every entry through the ``Entry`` model) and prints
entries/s side by side and peak RSS.  Asserts nothing about time.

    .venv/bin/python -m bench.bench_verify [--entries 1000000] [--reference-entries N]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import resource
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import IO

from custody.checkpoint import Checkpoint
from custody.cli import available_cpus, verify_file
from custody.entry import Action, Actor, Entry, Legal, Outcome, Role
from custody.export import write_export
from custody.merkle import CompactRange
from custody.note import Signer, VerifierKey
from custody.verify import VerifiedLedger, verify_export_lines

ORIGIN = "evidence-exchange.bench/log"
AUTHORITIES = ("DE-BKA", "FR-PJ", "NL-OM", "ES-GC", "IT-PS", "PL-CBZC")
ITEMS = ("disk-image.e01", "phone-dump.ufdr", "cctv-0412.mp4", "mails.pst", "photo-été.jpg")
BASES = ("EIO 2014/41/EU", "MLA FR-DE 1959", "Regulation (EU) 2023/1543")
REASONS = ("no active share for the caller's authority", "package is sealed", "upload interrupted",
           "legal basis expired", "size limit exceeded")


def _entries(count: int, seed: int, packages: int) -> Iterator[Entry]:
    """A plausible mix of custody events, chained as the log chains them."""
    rng = random.Random(seed)
    actions = list(Action)
    heads: dict[str, str] = {}
    prev: str | None = None
    for index in range(count):
        action = rng.choice(actions)
        roll = rng.random()
        outcome = (
            Outcome.ALLOWED if roll < 0.85 else Outcome.DENIED if roll < 0.95 else Outcome.FAILED
        )
        package = None if action.value.startswith(("ledger.", "key.", "authority.")) else \
            f"pkg-{rng.randrange(packages):06d}"
        details: dict[str, str | int | bool | None] = {}
        if action.value.startswith("download."):
            details = {
                "offset": 0,
                "length": rng.randrange(1, 10**10),
                "sha256": f"{rng.getrandbits(256):064x}",
            }
        elif action.value.startswith("item."):
            details = {"size": rng.randrange(1, 10**11), "sha256": f"{rng.getrandbits(256):064x}",
                       "encrypted": True}
        elif action is Action.PACKAGE_CREATED:
            details = {
                "case_reference": f"AZ {rng.randrange(10**5)}/{rng.randrange(20, 26)} — Ermittlung"
            }
        elif action is Action.PACKAGE_LISTED or action is Action.LEDGER_READ:
            details = {"count": rng.randrange(100), "offset": rng.randrange(10**4)}
        elif action.value.startswith("share."):
            details = {"authority": rng.choice(AUTHORITIES), "expires": None}
        moment = 1_735_689_600 + index // 3
        entry = Entry(
            index=index,
            time=time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(moment)) + f".{index % 10**6:06d}Z",
            actor=Actor(
                rng.choice(AUTHORITIES),
                f"officer-{rng.randrange(5000)}",
                rng.choice((Role.INVESTIGATOR, Role.INVESTIGATOR, Role.AUDITOR, Role.OPERATOR)),
            ),
            action=action,
            outcome=outcome,
            package=package,
            item=rng.choice(ITEMS) if package is not None and rng.random() < 0.5 else None,
            reason=None if outcome is Outcome.ALLOWED else rng.choice(REASONS),
            legal=Legal(rng.choice(BASES), f"REQ-{rng.randrange(10**6):06d}")
            if rng.random() < 0.4
            else None,
            details=details,
            prev=prev,
            package_prev=heads.get(package) if package is not None else None,
        )
        prev = entry.leaf_hash().hex()
        if package is not None:
            heads[package] = prev
        yield entry


def write_synthetic_export(
    count: int, out: IO[bytes], *, seed: int = 7, packages: int = 20_000
) -> Signer:
    """Write a valid export of ``count`` entries to ``out``; return the (fresh) signing key.

    Holds all entries in memory: run it in another process when measuring the verifier's RSS.
    """
    signer = Signer.generate(ORIGIN)
    entries = list(_entries(count, seed, packages))
    compact = CompactRange()
    for entry in entries:
        compact.append(entry.leaf_hash())
    note = Checkpoint(ORIGIN, count, compact.root()).sign(signer)
    write_export(entries, None, note, out)
    return signer


def _generate(count: int, path: str) -> str:
    with open(path, "wb") as out:
        return str(write_synthetic_export(count, out).verifier_key)


def generate_file(count: int, path: str) -> VerifierKey:
    """:func:`write_synthetic_export` to ``path`` in a child process (keeps this process's RSS)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork")) as pool:
        return VerifierKey.parse(pool.submit(_generate, count, path).result())


def _timed(
    path: str, key: VerifierKey, *, fast_path: bool, workers: int = 1
) -> tuple[VerifiedLedger, float]:
    start = time.perf_counter()
    if fast_path:
        result = verify_file(path, key, workers=workers)
    else:
        with open(path, "rb") as handle:
            result = verify_export_lines(handle, key, fast_path=False)
    return result, time.perf_counter() - start


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--reference-entries", type=int, default=None,
                        help="entries for the (slow) reference path run; default: --entries")
    args = parser.parse_args()
    reference_count = args.reference_entries or args.entries

    with tempfile.TemporaryDirectory() as tmp:
        path, reference_path = (
            os.path.join(tmp, "export.jsonl"),
            os.path.join(tmp, "reference.jsonl"),
        )
        start = time.perf_counter()
        key = generate_file(args.entries, path)
        size = os.path.getsize(path)
        print(f"generated {args.entries:,} entries ({size / max(1, args.entries):.0f} bytes/line, "
              f"{size / 2**20:.0f} MiB) in {time.perf_counter() - start:.1f}s")
        fast, fast_s = _timed(path, key, fast_path=True)
        fast_rss = _peak_rss_mib()
        cpus = available_cpus()
        parallel, parallel_s = _timed(path, key, fast_path=True, workers=cpus)
        if reference_count == args.entries:
            reference_path, reference_key = path, key
        else:
            reference_key = generate_file(reference_count, reference_path)
        slow, slow_s = _timed(reference_path, reference_key, fast_path=False)
        if (fast.tree_size, parallel.tree_size, slow.tree_size) != (
            args.entries,
            args.entries,
            reference_count,
        ):
            raise SystemExit("verification returned the wrong size")  # pragma: no cover
        fast_rate, slow_rate = args.entries / fast_s, reference_count / slow_s
        print(f"{'path':<44} {'entries':>10} {'seconds':>8} {'entries/s':>10}")
        print(
            f"{'fast path, one process':<44} {args.entries:>10,} {fast_s:>8.2f} {fast_rate:>10,.0f}"
        )
        print(
            f"{f'fast path, {cpus} worker processes (CLI default)':<44} {args.entries:>10,} "
            f"{parallel_s:>8.2f} "
            f"{args.entries / parallel_s:>10,.0f}"
        )
        print(
            f"{'reference (fast_path=False: every Entry)':<44} {reference_count:>10,} "
            f"{slow_s:>8.2f} "
            f"{slow_rate:>10,.0f}"
        )
        print(
            f"fast / reference: {fast_rate / slow_rate:.1f}x one process, "
            f"{args.entries / parallel_s / slow_rate:.1f}x with workers; "
            f"{fast.package_count:,} packages; "
            f"peak RSS {fast_rss:.0f} MiB after the fast run, {_peak_rss_mib():.0f} MiB after both"
        )


if __name__ == "__main__":
    main()
