"""Benchmark: 1 GiB uploads and downloads through evx against nginx serving plain files, same run.

    .venv/bin/python -m bench.bench_nginx --size-gib 1
    .venv/bin/python -m bench.bench_nginx --size-gib 1 --s3     # PostgreSQL + SeaweedFS
    .venv/bin/python -m bench.bench_nginx --size-gib 1 --rss-sizes 1,4 [--s3]

With --s3, evx runs on a fresh PostgreSQL database + SeaweedFS, and the peer is curl with
`--aws-sigv4` straight to the same SeaweedFS S3 server (PUT and GET of a plain object).

Starts `evx serve` on the embedded defaults (SQLite + local folder, fresh data folder) and an
nginx (one worker process, like the one evx process) whose WebDAV module takes `PUT` into a
folder on the same disk and serves it back with a static `GET`. curl is the client of both.
Each round is nginx PUT, evx PUT, nginx GET, evx GET, so load that drifts on a shared machine
hits both; the figures are the sums over ROUNDS.

What each side does with the bytes: evx checks the token, records the upload (a durable ledger
entry) before the first byte is stored, encrypts (AES-256-GCM) and hashes (SHA-256) every
byte, fsyncs the object and records the download before sending it; nginx writes the body to a
temporary file and renames it (no fsync), and `sendfile`s it back.

Then, for each size of --rss-sizes (default: SIZE), the server's RSS above idle while 4 uploads,
then 4 downloads, of that size run at once: evx's (idle measured before its first transfer) and
the peer's (nginx's master and worker, or the SeaweedFS process) during the same four transfers
straight to it. The peer's copies are removed after each size (on S3 its bucket is dropped, so
SeaweedFS frees the volumes); evx's stay until the end, so the disk needs about
4 x (1 + sizes) GiB for evx plus 4 x the largest size for the peer.
This is a benchmark, not a test: it asserts nothing beyond byte counts.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.bench_api import (
    BLOCK,
    GIB,
    RssSampler,
    _curl,
    _free_port,
    _rss,
    clean_up,
    generate,
    http_download,
    http_upload,
    serve_with_officer,
)

NGINX_CONF = """
worker_processes 1;
{user}
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    sendfile on;
    client_max_body_size 0;
    client_body_temp_path {root}/body;
    server {{
        listen 127.0.0.1:{port};
        root {root}/files;
        location / {{
            dav_methods PUT;
            create_full_put_path on;
        }}
    }}
}}
"""


def start_nginx(root: Path, cleanups: list[Callable[[], None]],
                pids: list[int] | None = None) -> str:
    """Start nginx on a free port; its stop goes on ``cleanups``, its master's pid on ``pids``."""
    (root / "files").mkdir(parents=True)
    (root / "body").mkdir()
    port = _free_port()
    user = "user root;" if os.geteuid() == 0 else ""  # workers must write the folder
    conf = root / "nginx.conf"
    conf.write_text(NGINX_CONF.format(root=root, port=port, user=user))
    proc = subprocess.Popen(["nginx", "-p", str(root), "-c", str(conf), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    if pids is not None:
        pids.append(proc.pid)

    def stop() -> None:
        proc.terminate()
        proc.wait(timeout=30)
    cleanups.append(stop)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "/", timeout=2)
            return url
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("nginx did not start")


def nginx_put(url: str, name: str, source: Path) -> float:
    elapsed, _ = _curl(["-T", str(source), "-o", "/dev/null", f"{url}/{name}"])
    return elapsed


def fsync_file(path: Path) -> float:
    """Time to make a file nginx wrote durable (nginx itself never fsyncs a PUT)."""
    started = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return time.perf_counter() - started


def nginx_get(url: str, name: str) -> tuple[float, int]:
    elapsed, written = _curl(["-o", "/dev/null", f"{url}/{name}"])
    return elapsed, int(written.split()[1])


class S3Peer:
    """curl --aws-sigv4 straight to an S3 server: the plain-object peer of evx on S3."""

    def __init__(self, endpoint: str, access_key: str, secret_key: str, bucket: str) -> None:
        self.url = f"http://{endpoint}/{bucket}"
        self.auth = ["--aws-sigv4", "aws:amz:us-east-1:s3", "--user",
                     f"{access_key}:{secret_key}"]
        _curl([*self.auth, "-X", "PUT", "-o", "/dev/null", self.url])

    def put(self, name: str, source: Path) -> float:
        elapsed, _ = _curl([*self.auth, "-T", str(source), "-o", "/dev/null",
                            f"{self.url}/{name}"])
        return elapsed

    def get(self, name: str) -> tuple[float, int]:
        elapsed, written = _curl([*self.auth, "-o", "/dev/null", f"{self.url}/{name}"])
        return elapsed, int(written.split()[1])


def tree_rss(pid: int) -> int:
    """RSS of ``pid`` and its descendants (nginx's master and worker process)."""
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            total += _rss(current)
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:  # gone meanwhile
            continue
        pending.extend(int(child) for child in children)
    return total


@dataclass
class Side:
    """One server of the RSS comparison: how to measure it and move bytes through it."""

    name: str
    pid: int
    measure: Callable[[int], int]
    put: Callable[[str, Path], float]
    get: Callable[[str], int]
    remove_copies: Callable[[], None] | None
    idle: int = 0
    fresh_idle: bool = True  # idle measured again before each size (the peer: on S3 it is
    # also evx's store, so evx's transfers grow it); evx's stays that of the fresh server

    def four_at_once(self, size: int, source: Path) -> tuple[int, int]:
        """Peak RSS above idle with 4 concurrent uploads, then 4 concurrent downloads."""
        if self.fresh_idle:
            self.idle = self.measure(self.pid)
        names = [f"c{size >> 20}m{i}.bin" for i in range(4)]
        with RssSampler(self.pid, self.measure) as up, ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda name: self.put(name, source), names))
        with RssSampler(self.pid, self.measure) as down, ThreadPoolExecutor(4) as pool:
            assert list(pool.map(self.get, names)) == [size] * 4
        if self.remove_copies is not None:
            self.remove_copies()
        return up.peak - self.idle, down.peak - self.idle


def rss_table(sizes_gib: list[float], evx: Side, peer: Side, work: Path) -> None:
    """Print evx's and the peer's RSS above idle, 4 concurrent transfers of each size."""
    print(f"server RSS above idle, peak with 4 concurrent transfers of each size "
          f"(goal < 150 MiB for evx, flat across sizes); idle evx {evx.idle / BLOCK:.0f} MiB")
    print(f"  {'size':>8}{peer.name + ' up':>16}{'evx up':>9}{peer.name + ' down':>18}"
          f"{'evx down':>10}   load average")
    source = work / "rss-source.bin"
    for gib in sizes_gib:
        size = int(gib * GIB)
        with open(source, "wb") as handle:
            for piece in generate(size):
                handle.write(piece)
        load = os.getloadavg()[0]
        peer_up, peer_down = peer.four_at_once(size, source)
        evx_up, evx_down = evx.four_at_once(size, source)
        print(f"  {gib:>4g} GiB{peer_up / BLOCK:>16.0f}{evx_up / BLOCK:>9.0f}"
              f"{peer_down / BLOCK:>18.0f}{evx_down / BLOCK:>10.0f}   "
              f"{load:.2f} -> {os.getloadavg()[0]:.2f}", flush=True)
    source.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-rss", action="store_true", help="skip the 4-concurrent RSS part")
    parser.add_argument("--rss-sizes", default="",
                        help="GiB per transfer for the RSS part, comma-separated (e.g. 1,4)")
    parser.add_argument("--s3", action="store_true", help="evx on PostgreSQL + SeaweedFS, "
                        "the peer curl --aws-sigv4 to the same S3 server")
    args = parser.parse_args()
    size = int(args.size_gib * GIB)
    work = Path(tempfile.mkdtemp(prefix="evx-bench-nginx-"))
    cleanups: list[Callable[[], None]] = []
    try:
        env = {**os.environ, "EVX_DATA_DIR": str(work / "data"),
               "EVX_OPERATOR_AUTHORITY": "EU-OPERATOR", "EVX_MAX_ITEM_BYTES": str(8 * size)}
        if args.s3:
            from bench.bench_api import fresh_postgres
            from tests.support.seaweed import start_seaweed

            weed = start_seaweed(work)
            cleanups.append(weed.stop)
            env.update(EVX_DATABASE_URL=fresh_postgres("evx_bench_nginx", cleanups),
                       EVX_OBJECT_STORE="s3", EVX_S3_ENDPOINT=weed.endpoint,
                       EVX_S3_ACCESS_KEY=weed.access_key, EVX_S3_SECRET_KEY=weed.secret_key,
                       EVX_S3_BUCKET="evx")
            s3 = S3Peer(weed.endpoint, weed.access_key, weed.secret_key, "plain")
            peer_name, peer_put, peer_get = "S3 direct", s3.put, s3.get

            rss_peer = S3Peer(weed.endpoint, weed.access_key, weed.secret_key, "plain-rss")

            def drop_rss_bucket() -> None:  # frees SeaweedFS's volumes; a fresh bucket after
                weed.drop_bucket("plain-rss")
                S3Peer(weed.endpoint, weed.access_key, weed.secret_key, "plain-rss")

            peer_side = Side("SeaweedFS", weed.process.pid, tree_rss, rss_peer.put,
                             lambda name: rss_peer.get(name)[1], drop_rss_bucket)
        else:
            nginx_proc: list[int] = []
            nginx = start_nginx(work / "nginx", cleanups, nginx_proc)
            peer_name = "nginx"

            def peer_put(name: str, source: Path) -> float:
                return nginx_put(nginx, name, source)

            def peer_get(name: str) -> tuple[float, int]:
                return nginx_get(nginx, name)

            def remove_nginx_copies() -> None:
                for path in (work / "nginx" / "files").glob("c*.bin"):
                    path.unlink()

            assert nginx_proc
            peer_side = Side("nginx", nginx_proc[0], tree_rss,
                             lambda name, path: nginx_put(nginx, name, path),
                             lambda name: nginx_get(nginx, name)[1], remove_nginx_copies)
        server, token = serve_with_officer(env, cleanups)
        assert server.proc is not None
        source = work / "source.bin"
        with open(source, "wb") as handle:
            for piece in generate(size):
                handle.write(piece)
        package = httpx.post(f"{server.url}/v1/packages", timeout=30,
                             headers={"Authorization": f"Bearer {token}"},
                             json={"case_reference": "BENCH", "title": "bench"}).json()["id"]
        evx = Side("evx", server.proc.pid, _rss,
                   lambda name, path: http_upload(server.url, token, package, name, path),
                   lambda name: http_download(server.url, token, package, name)[1], None)
        evx.idle, evx.fresh_idle = _rss(server.proc.pid), False
        load_before = os.getloadavg()[0]
        seconds = {"nginx put": 0.0, "fsync": 0.0, "evx put": 0.0, "nginx get": 0.0,
                   "evx get": 0.0}
        for n in range(args.rounds):
            seconds["nginx put"] += peer_put(f"r{n}.bin", source)
            if not args.s3:
                seconds["fsync"] += fsync_file(work / "nginx" / "files" / f"r{n}.bin")
            seconds["evx put"] += http_upload(server.url, token, package, f"r{n}.bin", source)
            took, got = peer_get(f"r{n}.bin")
            assert got == size
            seconds["nginx get"] += took
            took, got = http_download(server.url, token, package, f"r{n}.bin")
            assert got == size
            seconds["evx get"] += took
        load_after = os.getloadavg()[0]
        mib = args.rounds * size / BLOCK
        stores = "PostgreSQL + SeaweedFS" if args.s3 else "SQLite + local folder"
        print(f"{args.rounds} x {args.size_gib:g} GiB each way, alternating; curl the client of "
              f"both; evx on {stores}; {os.cpu_count()} cores shared; load average "
              f"{load_before:.2f} before, {load_after:.2f} after")
        print(f"  {'':22}{peer_name + ' MiB/s':>16}{'evx MiB/s':>11}{'evx / peer':>12}"
              "  (goal >= 0.9x)")
        rows = [("upload", mib / seconds["nginx put"], mib / seconds["evx put"]),
                ("download", mib / seconds["nginx get"], mib / seconds["evx get"])]
        if not args.s3:
            rows.insert(1, ("upload, both durable",
                            mib / (seconds["nginx put"] + seconds["fsync"]),
                            mib / seconds["evx put"]))
        for label, peer, ours in rows:
            print(f"  {label:22}{peer:>16.0f}{ours:>11.0f}{ours / peer:>11.2f}x")
        if not args.s3:
            print("  (upload, both durable: nginx's PUT plus an fsync of the file it wrote, as "
                  "evx fsyncs before it answers)")

        if not args.no_rss:
            sizes = [float(x) for x in args.rss_sizes.split(",")] if args.rss_sizes else [
                args.size_gib]
            rss_table(sizes, evx, peer_side, work)
    finally:
        clean_up(cleanups, work)


if __name__ == "__main__":
    main()
