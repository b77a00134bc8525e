"""Benchmark: the HTTP API against the storage layer alone, on the same backend, in one run.

    .venv/bin/python -m bench.bench_api --size-gib 1

Starts a real server process (`evx serve`, embedded defaults: SQLite + local folder, or with
--postgres-s3 a fresh PostgreSQL database + SeaweedFS), registers two authorities, then prints:
  1. upload and download of SIZE GiB through HTTP (httpx streaming client) vs EvidenceVault
     put/get of the same bytes in this process -- as throughput ratios (goal >= 0.7x);
  2. the server's peak RSS above idle while four SIZE GiB uploads, then four downloads, run at
     once (goal < 150 MiB);
  3. metadata read latency (GET /v1/packages/{id}, each one a ledger entry) at 50 concurrent
     clients: p50 and p99.
Client and server share the machine's cores; ratios are measured side by side in the same run.
This is a benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

BLOCK = 1 << 20
GIB = 1 << 30


def generate(size: int) -> Iterator[bytes]:
    block = os.urandom(BLOCK)
    for counter, start in enumerate(range(0, size, BLOCK)):
        yield (counter.to_bytes(8, "big") + block[8:])[: min(BLOCK, size - start)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class Server:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.initialised = False

    def _initialise(self) -> None:
        """``evx init`` once: server-side commands refuse a data folder that does not exist."""
        if not self.initialised:
            subprocess.run([sys.executable, "-m", "evx", "init"], env=self.env, check=True,
                           capture_output=True, timeout=120)
            self.initialised = True

    def evx(self, *args: str) -> str:
        self._initialise()
        out = subprocess.run([sys.executable, "-m", "evx", *args], env=self.env,
                             check=True, capture_output=True, text=True, timeout=120)
        return out.stdout.strip()

    def start(self) -> None:
        self._initialise()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "evx", "serve", "--port", str(self.port)],
            env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("server did not become ready")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)


def serve_with_officer(env: dict[str, str], cleanups: list[Callable[[], None]]
                       ) -> tuple[Server, str]:
    """`evx serve` on ``env`` with authority DE-BKA registered, and a 12-hour investigator
    token of it; the server's stop goes on ``cleanups``."""
    server = Server(env)
    server.evx("authority", "add", "DE-BKA", "--name", "BKA", "--country", "DE",
               "--roles", "investigator,auditor", "--generate-key")
    token = server.evx("token", "DE-BKA", "--sub", "bench", "--role", "investigator",
                       "--ttl", "43200")
    server.start()
    cleanups.append(server.stop)
    return server, token


class RssSampler:
    """Peak of ``measure(pid)`` (the process's RSS by default), sampled every 20 ms."""

    def __init__(self, pid: int, measure: Callable[[int], int] = _rss) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._measure = measure
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._measure(self.pid))
            time.sleep(0.02)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _curl(args: list[str]) -> tuple[float, str]:
    # curl is the client for bulk transfers: C, so the client's CPU cost on these 2 shared cores
    # stays small and the figure is the server's.
    started = time.perf_counter()
    out = subprocess.run(["curl", "-sS", "--fail-with-body", "-w", "%{http_code} %{size_download}",
                          *args], check=True, capture_output=True, text=True)
    return time.perf_counter() - started, out.stdout


def http_upload(url: str, token: str, package: str, name: str, source: Path) -> float:
    elapsed, _ = _curl(["-X", "PUT", "-T", str(source), "-H", f"Authorization: Bearer {token}",
                        "-o", "/dev/null", f"{url}/v1/packages/{package}/items/{name}"])
    return elapsed


def http_download(url: str, token: str, package: str, name: str) -> tuple[float, int]:
    elapsed, written = _curl(["-H", f"Authorization: Bearer {token}", "-o", "/dev/null",
                              f"{url}/v1/packages/{package}/items/{name}/content"])
    return elapsed, int(written.split()[1])


def fresh_postgres(prefix: str, cleanups: list[Callable[[], None]]) -> str:
    """A new, empty database on the ``EVX_TEST_PG_URL`` server; its drop goes on ``cleanups``."""
    from tests.support.postgres import create_database, drop_database

    admin_url = os.environ.get("EVX_TEST_PG_URL",
                               "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    url = create_database(admin_url, prefix)
    cleanups.append(lambda: drop_database(admin_url, url))
    return url


def clean_up(cleanups: list[Callable[[], None]], work: Path) -> None:
    """Run ``cleanups`` last first (reporting, not raising, what fails), then remove ``work``."""
    for cleanup in reversed(cleanups):
        try:
            cleanup()
        except Exception as exc:  # noqa: BLE001 - report and continue cleaning
            print(f"cleanup failed: {exc!r}", file=sys.stderr)
    shutil.rmtree(work, ignore_errors=True)


def storage_alone(settings_env: dict[str, str], size: int, work: Path) -> tuple[float, float]:
    """EvidenceVault put/get of the same bytes on the same backend, in this process."""
    from service.runtime import build_store
    from service.settings import Settings
    from storage.evidence import EvidenceVault
    from storage.keyring import DirectoryKeySource, Keyring

    env_settings = {k[4:].lower(): v for k, v in settings_env.items()
                    if k.startswith("EVX_") and k != "EVX_DATA_DIR"}
    settings = Settings(data_dir=work / "alone", **env_settings)
    if settings.object_store == "s3":
        settings = settings.model_copy(update={"s3_bucket": settings.s3_bucket + "-alone"})
    vault = EvidenceVault(build_store(settings),
                          Keyring(DirectoryKeySource(work / "alone-keys", create=True)),
                          chunk_size=settings.chunk_size)
    started = time.perf_counter()
    stored = vault.put_item("pkg_bench", "big.bin", generate(size))
    put_s = time.perf_counter() - started
    started = time.perf_counter()
    for _ in vault.open_item(stored, "pkg_bench", "big.bin"):
        pass
    get_s = time.perf_counter() - started
    vault.delete_item(stored)
    return put_s, get_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-gib", type=float, default=1.0)
    parser.add_argument("--postgres-s3", action="store_true",
                        help="PostgreSQL (EVX_TEST_PG_URL server) + SeaweedFS instead of "
                             "SQLite + local folder")
    parser.add_argument("--latency-requests", type=int, default=2000)
    args = parser.parse_args()
    size = int(args.size_gib * GIB)
    work = Path(tempfile.mkdtemp(prefix="evx-bench-api-"))
    env = {**os.environ, "EVX_DATA_DIR": str(work / "data"),
           "EVX_OPERATOR_AUTHORITY": "EU-OPERATOR", "EVX_MAX_ITEM_BYTES": str(8 * size)}
    cleanups: list[Callable[[], None]] = []
    try:
        if args.postgres_s3:
            from tests.support.seaweed import start_seaweed

            weed = start_seaweed(work)
            cleanups.append(weed.stop)
            env.update(EVX_DATABASE_URL=fresh_postgres("evx_bench_api", cleanups),
                       EVX_OBJECT_STORE="s3", EVX_S3_ENDPOINT=weed.endpoint,
                       EVX_S3_ACCESS_KEY=weed.access_key, EVX_S3_SECRET_KEY=weed.secret_key,
                       EVX_S3_BUCKET="bench")
        server, token = serve_with_officer(env, cleanups)
        assert server.proc is not None
        backend = "PostgreSQL + SeaweedFS" if args.postgres_s3 else "SQLite + local folder"
        print(f"backend: {backend}; size {args.size_gib} GiB; {os.cpu_count()} cores "
              f"shared by client and server")
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.url, headers=headers) as client:
            package = client.post("/v1/packages", json={"case_reference": "BENCH",
                                                       "title": "bench"}).json()["id"]
            idle = _rss(server.proc.pid)

            # 1. throughput, HTTP vs storage layer alone.
            source = work / "source.bin"
            with open(source, "wb") as handle:
                for piece in generate(size):
                    handle.write(piece)
            up_s = http_upload(server.url, token, package, "big.bin", source)
            down_s, got = http_download(server.url, token, package, "big.bin")
            assert got == size
            alone_put, alone_get = storage_alone(env, size, work)
            mib = size / BLOCK
            print("\n1. throughput (MiB/s)         HTTP   storage alone   ratio (goal >= 0.7x)")
            print(f"   upload   {mib / up_s:18.0f} {mib / alone_put:15.0f} "
                  f"{alone_put / up_s:10.2f}x")
            print(f"   download {mib / down_s:18.0f} {mib / alone_get:15.0f} "
                  f"{alone_get / down_s:10.2f}x")

            # 2. server RSS during four concurrent transfers each way.
            with RssSampler(server.proc.pid) as up_rss, ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda i: http_upload(server.url, token, package, f"c{i}.bin",
                                                    source), range(4)))
            with RssSampler(server.proc.pid) as down_rss, ThreadPoolExecutor(4) as pool:
                list(pool.map(lambda i: http_download(server.url, token, package, f"c{i}.bin"),
                              range(4)))
            print(f"\n2. server RSS: idle {idle / BLOCK:.0f} MiB; peak above idle during 4 "
                  f"concurrent uploads {(up_rss.peak - idle) / BLOCK:.0f} MiB, downloads "
                  f"{(down_rss.peak - idle) / BLOCK:.0f} MiB (goal < 150 MiB)")

            # 3. metadata latency at 50 concurrent clients.
            client.post(f"/v1/packages/{package}/seal").raise_for_status()
            latencies: list[float] = []
            lock = threading.Lock()

            def reader(n: int) -> None:
                with httpx.Client(base_url=server.url, headers=headers) as c:
                    for _ in range(n):
                        t = time.perf_counter()
                        c.get(f"/v1/packages/{package}").raise_for_status()
                        with lock:
                            latencies.append(time.perf_counter() - t)

            per_client = max(1, args.latency_requests // 50)
            started = time.perf_counter()
            with ThreadPoolExecutor(50) as pool:
                list(pool.map(reader, [per_client] * 50))
            elapsed = time.perf_counter() - started
            q = statistics.quantiles(latencies, n=100)
            print(f"\n3. metadata reads, 50 concurrent clients, {len(latencies)} requests "
                  f"(each appends a ledger entry): p50 {q[49] * 1000:.1f} ms, "
                  f"p99 {q[98] * 1000:.1f} ms, {len(latencies) / elapsed:.0f} req/s")
    finally:
        clean_up(cleanups, work)


if __name__ == "__main__":
    main()
