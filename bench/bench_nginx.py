"""Benchmark: 1 GiB uploads and downloads through evx against nginx serving plain files, same run.

    .venv/bin/python -m bench.bench_nginx --size-gib 1
    .venv/bin/python -m bench.bench_nginx --size-gib 1 --s3     # PostgreSQL + SeaweedFS

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

Then the evx server's RSS above idle while 4 uploads, then 4 downloads, of SIZE run at once.
This is a benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
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


def start_nginx(root: Path, cleanups: list[Callable[[], None]]) -> str:
    (root / "files").mkdir(parents=True)
    (root / "body").mkdir()
    port = _free_port()
    user = "user root;" if os.geteuid() == 0 else ""  # workers must write the folder
    conf = root / "nginx.conf"
    conf.write_text(NGINX_CONF.format(root=root, port=port, user=user))
    proc = subprocess.Popen(["nginx", "-p", str(root), "-c", str(conf), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--no-rss", action="store_true", help="skip the 4-concurrent RSS part")
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
        else:
            nginx = start_nginx(work / "nginx", cleanups)
            peer_name = "nginx"

            def peer_put(name: str, source: Path) -> float:
                return nginx_put(nginx, name, source)

            def peer_get(name: str) -> tuple[float, int]:
                return nginx_get(nginx, name)
        server, token = serve_with_officer(env, cleanups)
        assert server.proc is not None
        source = work / "source.bin"
        with open(source, "wb") as handle:
            for piece in generate(size):
                handle.write(piece)
        package = httpx.post(f"{server.url}/v1/packages", timeout=30,
                             headers={"Authorization": f"Bearer {token}"},
                             json={"case_reference": "BENCH", "title": "bench"}).json()["id"]
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
            pid = server.proc.pid
            idle = _rss(pid)
            with RssSampler(pid) as up, ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda i: http_upload(server.url, token, package, f"c{i}.bin",
                                                    source), range(4)))
            with RssSampler(pid) as down, ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda i: http_download(server.url, token, package,
                                                      f"c{i}.bin"), range(4)))
            print(f"evx server RSS: idle {idle / BLOCK:.0f} MiB; peak above idle with 4 "
                  f"concurrent {args.size_gib:g} GiB uploads {(up.peak - idle) / BLOCK:.0f} MiB, "
                  f"downloads {(down.peak - idle) / BLOCK:.0f} MiB (goal < 150 MiB)")
    finally:
        clean_up(cleanups, work)


if __name__ == "__main__":
    main()
