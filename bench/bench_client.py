"""Benchmark: `evx upload` / `evx download` peak memory and throughput, big file vs small file.

    .venv/bin/python -m bench.bench_client --size-gib 2

Starts `evx serve` (embedded defaults: SQLite + local folder) in a temporary directory,
registers two authorities, then uploads and downloads a SIZE GiB file and a 1 MiB file through
the real CLI in subprocesses. Each subprocess's peak RSS is its ``ru_maxrss`` from ``wait4`` (the
kernel's high-water mark for exactly that process). The client streams and hashes in 1 MiB
blocks, so its peak memory must not grow with the file: the ratio column should stay ~1.0.
The big file is generated streaming into a temporary file; everything is removed afterwards.

This is a benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.support.evx_server import EVX, OWNER, RECIPIENT, EvxServer, User

BLOCK = 1 << 20


def generate(path: Path, size: int) -> str:
    """``size`` incompressible bytes streamed to ``path``; returns their SHA-256."""
    digest = hashlib.sha256()
    block = os.urandom(BLOCK)
    with path.open("wb") as handle:
        for counter, start in enumerate(range(0, size, BLOCK)):
            piece = (counter.to_bytes(8, "big") + block[8:])[:min(BLOCK, size - start)]
            handle.write(piece)
            digest.update(piece)
    return digest.hexdigest()


@dataclass
class Run:
    seconds: float
    peak_rss_mib: float


def timed(user: User, *args: str) -> Run:
    """Run ``evx ARGS`` as ``user``; its wall time and its own peak RSS (wait4 rusage)."""
    started = time.perf_counter()
    proc = subprocess.Popen([*EVX, *args], env=user.env(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"evx {' '.join(args)} failed: {proc.stderr.read().decode()}"
                           if proc.stderr else "failed")
    return Run(elapsed, usage.ru_maxrss / 1024)  # Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-gib", type=float, default=2.0)
    parser.add_argument("--small-mib", type=float, default=1.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="evx-bench-client-"))
    server = EvxServer(root, extra_env={"EVX_CHUNK_SIZE": str(BLOCK)})
    try:
        server.add_authority(OWNER, "DE", "investigator")
        server.add_authority(RECIPIENT, "FR", "investigator")
        owner, recipient = server.users([(OWNER, "investigator", "bench-owner"),
                                         (RECIPIENT, "investigator", "bench-recipient")])
        server.start()
        sizes = {"small": int(args.small_mib * BLOCK), "big": int(args.size_gib * (1 << 30))}
        rows = {}
        for label, size in sizes.items():
            source = root / f"{label}.bin"
            want = generate(source, size)
            package = owner.json("package", "create", "--case-ref", "BENCH",
                                 "--title", label)["id"]
            up = timed(owner, "upload", package, str(source))
            owner.run("seal", package)
            owner.run("share", package, "--authority", RECIPIENT, "--legal-basis", "bench",
                      "--request-ref", "BENCH-1")
            out = root / f"out-{label}"
            down = timed(recipient, "download", package, "-o", str(out))
            got = hashlib.sha256()
            with (out / source.name).open("rb") as handle:
                while block := handle.read(BLOCK):
                    got.update(block)
            assert got.hexdigest() == want, "downloaded bytes differ"
            source.unlink()
            shutil.rmtree(out)
            rows[label] = (size, up, down)
        print(f"{'file':>10} {'upload s':>9} {'MiB/s':>7} {'peak RSS':>10} "
              f"{'download s':>11} {'MiB/s':>7} {'peak RSS':>10}")
        for size, up, down in rows.values():
            mib = size / BLOCK
            print(f"{_human(size):>10} {up.seconds:9.2f} {mib / up.seconds:7.0f} "
                  f"{up.peak_rss_mib:7.1f} MiB {down.seconds:11.2f} {mib / down.seconds:7.0f} "
                  f"{down.peak_rss_mib:7.1f} MiB")
        (_, up_s, down_s), (_, up_b, down_b) = rows["small"], rows["big"]
        print(f"peak RSS big/small: upload {up_b.peak_rss_mib / up_s.peak_rss_mib:.2f}x, "
              f"download {down_b.peak_rss_mib / down_s.peak_rss_mib:.2f}x "
              "(flat = ~1.0; the file is "
              f"{sizes['big'] / sizes['small']:.0f}x larger)")
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


def _human(size: int) -> str:
    return f"{size / (1 << 30):.1f} GiB" if size >= 1 << 30 else f"{size / BLOCK:.1f} MiB"


if __name__ == "__main__":
    main()
