"""Benchmark: `evx upload` against the tools an examiner would otherwise use, side by side.

    .venv/bin/python -m bench.bench_transfers                 # both parts
    .venv/bin/python -m bench.bench_transfers --files 10000 --size-gib 4

1. Many small files: FILES files of 4 KiB uploaded with `evx upload --parallel 4` to an evx
   server on PostgreSQL + SeaweedFS, and the same folder with `rclone copy --transfers 4` straight
   into a bucket of the same SeaweedFS server. Files/s of each and the ratio (goal >= 0.5x
   rclone). Each of ours is encrypted, digest-checked (RFC 9530 Content-Digest) and an
   `item.uploaded` ledger entry; rclone's are plain objects.
2. One large file read once: a SIZE GiB file uploaded with `evx upload` (resumable protocol,
   hashed while sent) against `sha256sum FILE` followed by `curl -T FILE` with that digest in
   `Content-Digest` (the file read twice), both to an evx server on SQLite + local folder.
   Client CPU (user + system of the client processes, from wait4) and wall time.

Everything runs on this machine (client, server and store share its cores); temporary files are
removed afterwards. A benchmark, not a test: it asserts only that each run succeeded.
"""

from __future__ import annotations

import argparse
import base64
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.bench_api import Server

GIB = 1 << 30
BLOCK = 1 << 20


@dataclass
class Run:
    wall_s: float
    cpu_s: float


def timed(args: list[str], env: dict[str, str] | None = None) -> tuple[Run, str]:
    """Run a command; its wall time, its CPU (user + system, from wait4) and its stdout."""
    started = time.perf_counter()
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    # Drain both pipes together (a thread each) before reaping: reading one to its end first
    # deadlocks a process that fills the other (10,000 per-file lines on stderr did).
    import threading

    chunks: dict[str, bytes] = {}
    readers = [threading.Thread(target=lambda k=k, f=f: chunks.__setitem__(k, f.read()))
               for k, f in (("out", proc.stdout), ("err", proc.stderr))]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join()
    out, err = chunks["out"], chunks["err"]
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code
    if code != 0:
        raise RuntimeError(f"{args[:3]} exited {code}: {err.decode(errors='replace')[-2000:]}")
    return Run(elapsed, usage.ru_utime + usage.ru_stime), out.decode()


def _load() -> str:
    """The machine's load average: on a shared machine, what the figures were measured under."""
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def small_files(folder: Path, count: int) -> None:
    for i in range(count):
        sub = folder / f"d{i // 1000:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"f{i:05d}.bin").write_bytes(os.urandom(4096))


def big_file(path: Path, size: int) -> None:
    block = bytearray(os.urandom(BLOCK))
    with path.open("wb") as handle:
        for index in range(size // BLOCK):
            block[:8] = index.to_bytes(8, "big")
            handle.write(block)


def start_server(env: dict[str, str]) -> tuple[Server, str, Callable[[], None]]:
    server = Server(env)
    server.evx("authority", "add", "DE-BKA", "--name", "BKA", "--country", "DE",
               "--roles", "investigator", "--generate-key")
    token = server.evx("token", "DE-BKA", "--sub", "bench", "--role", "investigator",
                       "--ttl", "43200")
    server.start()
    return server, token, server.stop


def client_env(server: Server, token: str, work: Path) -> dict[str, str]:
    return {**os.environ, "EVX_URL": server.url, "EVX_TOKEN": token,
            "EVX_STATE_DIR": str(work / "client-state")}


def part_small_files(work: Path, count: int, parallel: int, cleanups: list) -> None:
    from tests.support.postgres import create_database, drop_database
    from tests.support.seaweed import start_seaweed

    weed = start_seaweed(work)
    cleanups.append(weed.stop)
    admin_url = os.environ.get("EVX_TEST_PG_URL",
                               "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    db_url = create_database(admin_url, "evx_bench_transfers")
    cleanups.append(lambda: drop_database(admin_url, db_url))
    env = {**os.environ, "EVX_DATA_DIR": str(work / "data-s3"),
           "EVX_OPERATOR_AUTHORITY": "EU-OPERATOR",
           "EVX_DATABASE_URL": db_url,
           "EVX_OBJECT_STORE": "s3", "EVX_S3_ENDPOINT": weed.endpoint,
           "EVX_S3_ACCESS_KEY": weed.access_key, "EVX_S3_SECRET_KEY": weed.secret_key,
           "EVX_S3_BUCKET": "evidence", "EVX_LOG_LEVEL": "WARNING",
           # The per-officer request rate (20/s by default) would pace the upload at 20 files/s;
           # this measures what the hub can do, as an operator of a forensic lab would set it.
           "EVX_OFFICER_REQUESTS_PER_SECOND": "10000", "EVX_OFFICER_REQUEST_BURST": "10000",
           "EVX_AUTHORITY_REQUESTS_PER_SECOND": "10000", "EVX_AUTHORITY_REQUEST_BURST": "10000"}
    server, token, stop = start_server(env)
    cleanups.append(stop)
    folder = work / "small"
    small_files(folder, count)
    cenv = client_env(server, token, work)
    package = subprocess.run([sys.executable, "-m", "evx", "package", "create", "--case-ref",
                              "BENCH", "--title", "small files", "-q"], env=cenv, check=True,
                             capture_output=True, text=True).stdout.strip()
    ours, out = timed([sys.executable, "-m", "evx", "upload", package, str(folder),
                       "--parallel", str(parallel)], cenv)
    assert f"{count} uploaded" in out, out
    print(f"   (evx upload done: {ours.wall_s:.1f} s wall, {ours.cpu_s:.1f} s client CPU)",
          flush=True)
    # AWS_CA_BUNDLE (set on some machines) makes rclone's S3 client fail on a plain-HTTP endpoint.
    rclone_env = {**{k: v for k, v in os.environ.items() if k != "AWS_CA_BUNDLE"},
                  "RCLONE_CONFIG_WEED_TYPE": "s3",
                  "RCLONE_CONFIG_WEED_PROVIDER": "SeaweedFS",
                  "RCLONE_CONFIG_WEED_ACCESS_KEY_ID": weed.access_key,
                  "RCLONE_CONFIG_WEED_SECRET_ACCESS_KEY": weed.secret_key,
                  "RCLONE_CONFIG_WEED_ENDPOINT": f"http://{weed.endpoint}"}
    subprocess.run(["rclone", "mkdir", "weed:rclone-bench"], env=rclone_env, check=True)
    peer, _ = timed(["rclone", "copy", str(folder), "weed:rclone-bench/small",
                     "--transfers", str(parallel)], rclone_env)
    listed = subprocess.run(["rclone", "size", "weed:rclone-bench/small", "--json"],
                            env=rclone_env, check=True, capture_output=True, text=True).stdout
    ours_rate, peer_rate = count / ours.wall_s, count / peer.wall_s
    print(f"\n1. {count} files of 4 KiB, {parallel} in parallel, same SeaweedFS server "
          f"(rclone size: {listed.strip()}); per-officer request rate raised to 10,000/s")
    print("                         wall s   files/s   client CPU s")
    print(f"   evx upload        {ours.wall_s:9.1f} {ours_rate:9.0f} {ours.cpu_s:12.1f}"
          "   (encrypted, digest-checked, on the record; PostgreSQL)")
    print(f"   rclone copy       {peer.wall_s:9.1f} {peer_rate:9.0f} {peer.cpu_s:12.1f}")
    print(f"   ratio evx / rclone: {ours_rate / peer_rate:.2f}x (goal >= 0.5x)")
    print(f"   load average at the end (1/5/15 min): {_load()}")


def part_big_file(work: Path, size: int, cleanups: list) -> None:
    env = {**os.environ, "EVX_DATA_DIR": str(work / "data-fs"),
           "EVX_OPERATOR_AUTHORITY": "EU-OPERATOR", "EVX_MAX_ITEM_BYTES": str(2 * size),
           "EVX_LOG_LEVEL": "WARNING"}
    server, token, stop = start_server(env)
    cleanups.append(stop)
    path = work / "image.E01"
    big_file(path, size)
    cenv = client_env(server, token, work)
    package = subprocess.run([sys.executable, "-m", "evx", "package", "create", "--case-ref",
                              "BENCH", "--title", "big file", "-q"], env=cenv, check=True,
                             capture_output=True, text=True).stdout.strip()
    ours, _ = timed([sys.executable, "-m", "evx", "upload", package, str(path)], cenv)
    print(f"   (evx upload done: {ours.wall_s:.1f} s wall, {ours.cpu_s:.1f} s client CPU)",
          flush=True)
    hashed, out = timed(["sha256sum", str(path)])
    digest = base64.b64encode(bytes.fromhex(out.split()[0])).decode()
    sent, _ = timed(["curl", "-sS", "--fail-with-body", "-o", "/dev/null", "-T", str(path),
                     "-H", f"Authorization: Bearer {token}",
                     "-H", f"Content-Digest: sha-256=:{digest}:",
                     f"{server.url}/v1/packages/{package}/items/curl-{path.name}"])
    gib = size / GIB
    print(f"\n2. one file of {gib:.1f} GiB, SQLite + local folder (the server encrypts and "
          "stores in both cases)")
    print("                              wall s   MiB/s   client CPU s   reads of the file")
    print(f"   evx upload            {ours.wall_s:10.1f} {size / BLOCK / ours.wall_s:7.0f} "
          f"{ours.cpu_s:14.1f}   1 (hashed while sent, resumable)")
    peer_wall, peer_cpu = hashed.wall_s + sent.wall_s, hashed.cpu_s + sent.cpu_s
    print(f"   sha256sum + curl -T   {peer_wall:10.1f} {size / BLOCK / peer_wall:7.0f} "
          f"{peer_cpu:14.1f}   2 (sha256sum {hashed.wall_s:.1f} s, curl {sent.wall_s:.1f} s)")
    print(f"   ratio wall evx / peer: {ours.wall_s / peer_wall:.2f}x; "
          f"client CPU evx / peer: {ours.cpu_s / peer_cpu:.2f}x")
    print(f"   load average at the end (1/5/15 min): {_load()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--parallel", type=int, default=4)
    parser.add_argument("--size-gib", type=float, default=4.0)
    parser.add_argument("--only", choices=("small", "big"), default=None)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="evx-bench-transfers-"))
    cleanups: list = []
    print(f"{os.cpu_count()} cores shared by client, server and store", flush=True)
    try:
        if args.only in (None, "small"):
            part_small_files(work, args.files, args.parallel, cleanups)
        if args.only in (None, "big"):
            part_big_file(work, int(args.size_gib * GIB), cleanups)
    finally:
        for cleanup in reversed(cleanups):
            try:
                cleanup()
            except Exception as exc:  # noqa: BLE001 - keep cleaning up
                print(f"cleanup failed: {exc}", file=sys.stderr)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
