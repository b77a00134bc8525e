"""Benchmark: the storage layer against raw I/O on the same backend, side by side.

    .venv/bin/python -m bench.bench_storage --size-gib 1

For each backend (filesystem, and SeaweedFS S3 started here and stopped afterwards) it writes and
reads SIZE GiB four ways -- raw (direct file I/O with fsync / direct minio SDK put and get) and
through ``EvidenceVault`` (encrypt + SHA-256 + atomic put / authenticated decrypt) -- and prints
throughput and the ratio vault/raw. Each phase runs in its own subprocess, and its peak RSS growth
is VmHWM at the end minus VmRSS at the start of the phase (the peak is reset via
/proc/self/clear_refs after imports), so no phase's memory is charged to another. Input is
generated streaming: one random 1 MiB block with a counter stamped into each copy.

Filesystem reads are measured cold (the files are evicted from the page cache with
posix_fadvise first) and then warm; S3 reads go through SeaweedFS either way.

This is a benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

BLOCK = 1 << 20
PHASES = ("raw-write", "raw-read", "raw-read-warm", "vault-write", "vault-read", "vault-read-warm")


def generate(size: int) -> Iterator[bytes]:
    """``size`` bytes of incompressible data in 1 MiB pieces, without holding them all."""
    block = os.urandom(BLOCK)
    for counter, start in enumerate(range(0, size, BLOCK)):
        piece = counter.to_bytes(8, "big") + block[8:]
        yield piece[: min(BLOCK, size - start)]


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


class _Reader:
    """read()-able over a generator (for the raw SDK put), returning exact sizes like S3Store."""

    def __init__(self, source: Iterator[bytes]) -> None:
        self._source = source
        self._buffer = bytearray()

    def read(self, size: int = -1) -> bytes:
        while len(self._buffer) < size:
            try:
                self._buffer += next(self._source)
            except StopIteration:
                break
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out


# One flat branch per phase, each timed between the same two clock readings.
def run_phase(args: argparse.Namespace) -> dict[str, float]:  # noqa: C901
    """Run one phase in this process and return its measurements."""
    from minio import Minio

    from storage.evidence import EvidenceVault, StoredItem
    from storage.filesystem import FileSystemStore
    from storage.keyring import DirectoryKeySource, Keyring
    from storage.objectstore import ObjectStore
    from storage.s3 import DEFAULT_PARALLEL_UPLOADS, DEFAULT_PART_SIZE, S3Store

    size = int(args.size_gib * (1 << 30))
    work = Path(args.work)
    store: ObjectStore
    if args.backend == "fs":
        store = FileSystemStore(work / "objects")
    else:
        store = S3Store(args.endpoint, args.access_key, args.secret_key, "evx-bench")
        store.check()
    client = Minio(args.endpoint, args.access_key, args.secret_key, secure=False) \
        if args.backend == "s3" else None
    vault = EvidenceVault(store, Keyring(DirectoryKeySource(work / "keys", create=True)),
                          chunk_size=args.chunk_size)
    record = work / "stored.json"
    if args.backend == "fs" and args.phase in ("raw-read", "vault-read"):
        _evict(work)  # cold read: the bytes come from the disk, not the page cache
    with contextlib.suppress(OSError):  # reset the peak so imports and setup are not counted
        Path("/proc/self/clear_refs").write_text("5")
    rss_start = _status("VmRSS")
    started = time.perf_counter()
    moved = 0
    if args.phase == "raw-write" and args.backend == "fs":
        fd = os.open(work / "raw.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        for piece in generate(size):
            moved += os.write(fd, piece)
        os.fsync(fd)
        os.close(fd)
    elif args.phase.startswith("raw-read") and args.backend == "fs":
        fd = os.open(work / "raw.bin", os.O_RDONLY)
        while piece := os.read(fd, BLOCK):
            moved += len(piece)
        os.close(fd)
    elif args.phase == "raw-write":
        assert client is not None
        client.put_object("evx-bench", "raw", _Reader(generate(size)), -1,  # type: ignore[arg-type]
                          part_size=DEFAULT_PART_SIZE,
                          num_parallel_uploads=DEFAULT_PARALLEL_UPLOADS)
        moved = size
    elif args.phase.startswith("raw-read"):
        assert client is not None
        response = client.get_object("evx-bench", "raw")
        while piece := response.read(BLOCK):
            moved += len(piece)
        response.close()
        response.release_conn()
    elif args.phase == "vault-write":
        stored = vault.put_item("bench-package", "bench-item", generate(size))
        moved = stored.plaintext_size
        record.write_text(json.dumps(stored.__dict__))
    elif args.phase.startswith("vault-read"):
        fields = json.loads(record.read_text())
        stored = StoredItem(**{**fields, "key_ids": tuple(fields["key_ids"])})
        for piece in vault.open_item(stored, "bench-package", "bench-item"):
            moved += len(piece)
    seconds = time.perf_counter() - started
    if args.phase == "raw-read-warm":  # done with the raw bytes: free the disk for the vault
        if client is not None:
            client.remove_object("evx-bench", "raw")
        else:
            os.unlink(work / "raw.bin")
    if args.phase == "vault-read-warm":
        vault.delete_item(stored)
    if moved != size:
        raise RuntimeError(f"{args.phase} moved {moved} bytes, expected {size}")
    return {"seconds": seconds, "bytes": moved, "rss_growth": _status("VmHWM") - rss_start}


def _evict(work: Path) -> None:
    for directory, _, files in os.walk(work):
        for name in files:
            fd = os.open(os.path.join(directory, name), os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def measure(
    backend: str, size_gib: float, work: Path, extra: list[str]
) -> dict[str, dict[str, float]]:
    results = {}
    for phase in PHASES:
        out = subprocess.run(
            [sys.executable, "-m", "bench.bench_storage", "--phase", phase, "--backend", backend,
             "--size-gib", str(size_gib), "--work", str(work), *extra],
            check=True, capture_output=True, text=True)
        results[phase] = json.loads(out.stdout.strip().splitlines()[-1])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gib", type=float, default=1.0)
    parser.add_argument("--backends", default="fs,s3")
    parser.add_argument("--chunk-size", type=int, default=256 * 1024)
    parser.add_argument("--dir", default=None, help="scratch directory (default: system temp)")
    parser.add_argument("--phase", choices=PHASES, help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--work", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", default="", help=argparse.SUPPRESS)
    parser.add_argument("--access-key", default="", help=argparse.SUPPRESS)
    parser.add_argument("--secret-key", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(run_phase(args)))
        return

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.support.seaweed import start_seaweed

    print(f"storage benchmark: {args.size_gib:g} GiB per phase, chunk {args.chunk_size} B, "
          f"{os.cpu_count()} CPUs, python {sys.version.split()[0]}")
    rows = []
    for backend in args.backends.split(","):
        work = Path(tempfile.mkdtemp(prefix="evx-bench-", dir=args.dir))
        extra = ["--chunk-size", str(args.chunk_size)]
        server = None
        try:
            if backend == "s3":
                server = start_seaweed(work)
                extra += ["--endpoint", server.endpoint, "--access-key", server.access_key,
                          "--secret-key", server.secret_key]
            results = measure(backend, args.size_gib, work, extra)
        finally:
            if server is not None:
                server.stop()
            shutil.rmtree(work, ignore_errors=True)
        for op in ("write", "read", "read-warm"):
            raw, ours = results[f"raw-{op}"], results[f"vault-{op}"]
            raw_rate = raw["bytes"] / raw["seconds"] / (1 << 20)
            our_rate = ours["bytes"] / ours["seconds"] / (1 << 20)
            rows.append((backend, op, raw_rate, our_rate, our_rate / raw_rate,
                         raw["rss_growth"] / (1 << 20), ours["rss_growth"] / (1 << 20)))
    print(f"{'backend':<8}{'op':<11}{'raw MiB/s':>11}{'vault MiB/s':>13}{'ratio':>8}"
          f"{'raw dRSS MiB':>14}{'vault dRSS MiB':>16}")
    for backend, op, raw_rate, our_rate, ratio, raw_rss, our_rss in rows:
        print(f"{backend:<8}{op:<11}{raw_rate:>11.0f}{our_rate:>13.0f}{ratio:>8.2f}"
              f"{raw_rss:>14.1f}{our_rss:>16.1f}")


if __name__ == "__main__":
    main()
