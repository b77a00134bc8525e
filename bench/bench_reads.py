"""Benchmark: metadata reads against a bare FastAPI app returning the same document, same run.

    .venv/bin/python -m bench.bench_reads                      # SQLite, then PostgreSQL
    .venv/bin/python -m bench.bench_reads --db postgresql --seconds 20 --workers 2

For each database: starts `evx serve` (fresh data directory; on PostgreSQL a fresh database on
the EVX_TEST_PG_URL server), creates and seals a package with one item, fetches its document
once, and starts `uvicorn bench.bare_app:app` (the same document, no auth, no database) with the
same number of worker processes. Then `wrk` at CONNECTIONS connections runs against each in
alternating slices (peer, evx, peer, evx ...), so load drifting on a shared machine hits both.

Each evx read is `GET /v1/packages/{id}` with a real ES256 token: authenticated, authorised,
and recorded as a durable `package.read` ledger entry before the response is sent. After the
runs the bench counts the `package.read` entries in the database and prints them beside the
reads the server answered with 200 (its own request counter) and the responses wrk received
(requests still in flight when wrk closed its connections are answered, and recorded, but not
counted by wrk). The per-officer rate limit is raised for the run (it would answer 429).
This is a benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import sqlalchemy as sa

from bench.bench_api import _free_port, clean_up, fresh_postgres, serve_with_officer

READ_ROUTE = "/v1/packages/{package_id}"
UNLIMITED = "1000000"


@dataclass
class WrkRun:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int  # non-2xx responses and socket errors
    cpu_seconds: float = 0.0  # the server's processes, user + system, during the slice

    @property
    def rate(self) -> float:
        return self.requests / self.seconds


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(url: str, token: str | None, *, connections: int, seconds: int) -> WrkRun:
    args = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    if token:
        args += ["-H", f"Authorization: Bearer {token}"]
    out = subprocess.run([*args, url], check=True, capture_output=True, text=True).stdout
    done = re.search(r"(\d+) requests in ([\d.]+)(ms|s)", out)
    assert done, out
    elapsed = float(done.group(2)) / (1000 if done.group(3) == "ms" else 1)
    p50 = re.search(r"^\s+50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.M)
    assert p50 and p99, out
    errors = sum(int(n) for n in re.findall(r"Non-2xx or 3xx responses: (\d+)", out))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), "
                              r"timeout (\d+)", out)
    if socket_errors:
        errors += sum(int(n) for n in socket_errors.groups())
    return WrkRun(int(done.group(1)), elapsed, _ms(p50.group(1)), _ms(p99.group(1)), errors)


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its descendants (uvicorn's worker processes) so far."""
    tree, parents = {pid}, {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    grew = True
    while grew:
        grew = False
        for child, (parent, _) in parents.items():
            if parent in tree and child not in tree:
                tree.add(child)
                grew = True
    return sum(parents[p][1] for p in tree if p in parents) / os.sysconf("SC_CLK_TCK")


def measured(pid: int, run: Callable[[], WrkRun]) -> WrkRun:
    before = process_cpu_seconds(pid)
    result = run()
    result.cpu_seconds = process_cpu_seconds(pid) - before
    return result


def served_reads(url: str) -> int:
    """The server's own count of 200 answers on the read route (all workers' sum is not
    available from one worker's /metrics, so this is used with one worker only)."""
    text = httpx.get(url + "/metrics", timeout=10).text
    pattern = (r'^evx_http_requests_total\{method="GET",route="' + re.escape(READ_ROUTE)
               + r'",status="200"\} ([\d.e+]+)$')
    found = re.search(pattern, text, re.M)
    return int(float(found.group(1))) if found else 0


def ledger_commits(url: str) -> int:
    """Ledger transactions the (one) server process committed so far: its group commits."""
    found = re.search(r"^evx_ledger_commits ([\d.e+]+)$", httpx.get(url + "/metrics",
                                                                 timeout=10).text, re.M)
    return int(float(found.group(1))) if found else 0


def ledger_reads(database_url: str) -> int:
    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(
                "SELECT count(*) FROM ledger_entries WHERE action = 'package.read'")).scalar_one())
    finally:
        engine.dispose()


def _wait_ready(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not become ready")


def run_database(db: str, args: argparse.Namespace, work: Path,
                 cleanups: list[Callable[[], None]]) -> None:
    data = work / db
    # The production log format (deploy/ sets json): the access line of every request stays on.
    env = {**os.environ, "EVX_DATA_DIR": str(data), "EVX_OPERATOR_AUTHORITY": "EU-OPERATOR",
           "EVX_LOG_FORMAT": "json",
           "EVX_OFFICER_REQUESTS_PER_SECOND": UNLIMITED, "EVX_OFFICER_REQUEST_BURST": UNLIMITED,
           "EVX_AUTHORITY_REQUESTS_PER_SECOND": UNLIMITED,
           "EVX_AUTHORITY_REQUEST_BURST": UNLIMITED}
    if args.workers > 1:
        env["EVX_WORKERS"] = str(args.workers)
    database_url = f"sqlite:///{(data / 'evidence.db').resolve()}"
    if db == "postgresql":
        database_url = fresh_postgres("evx_bench_reads", cleanups)
        env["EVX_DATABASE_URL"] = database_url
    server, token = serve_with_officer(env, cleanups)
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=30) as client:
        package = client.post("/v1/packages", json={"case_reference": "BENCH",
                                                   "title": "bench"}).json()["id"]
        client.put(f"/v1/packages/{package}/items/report.pdf",
                   content=b"%PDF-1.7 bench\n" * 1000).raise_for_status()
        client.post(f"/v1/packages/{package}/seal").raise_for_status()
        document = client.get(f"/v1/packages/{package}")
        document.raise_for_status()
    doc_path = work / f"{db}-document.json"
    doc_path.write_bytes(document.content)

    peer_port = _free_port()
    peer = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.bare_app:app", "--port", str(peer_port),
         "--log-level", "warning", "--no-access-log", "--workers", str(args.workers)],
        env={**os.environ, "EVX_BENCH_DOCUMENT": str(doc_path)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    cleanups.append(lambda: (peer.terminate(), peer.wait(timeout=30)))
    peer_url = f"http://127.0.0.1:{peer_port}/v1/packages/{package}"
    _wait_ready(peer_url)

    evx_url = f"{server.url}/v1/packages/{package}"
    wrk(evx_url, token, connections=args.connections, seconds=2)  # warm-up, both sides
    wrk(peer_url, None, connections=args.connections, seconds=2)
    time.sleep(1)
    ledger_before = ledger_reads(database_url)
    served_before = served_reads(server.url) if args.workers == 1 else 0
    commits_before = ledger_commits(server.url) if args.workers == 1 else 0
    load_before = os.getloadavg()[0]
    slices: dict[str, list[WrkRun]] = {"evx": [], "peer": []}
    for _ in range(args.slices):
        slices["peer"].append(measured(peer.pid, lambda: wrk(
            peer_url, None, connections=args.connections, seconds=args.seconds)))
        slices["evx"].append(measured(server.proc.pid, lambda: wrk(
            evx_url, token, connections=args.connections, seconds=args.seconds)))
    load_after = os.getloadavg()[0]
    time.sleep(2)  # requests in flight when wrk closed its connections finish and are recorded
    grew = ledger_reads(database_url) - ledger_before
    served = served_reads(server.url) - served_before if args.workers == 1 else None
    commits = ledger_commits(server.url) - commits_before if args.workers == 1 else 0

    def total(runs: list[WrkRun]) -> tuple[int, float, float, float, int, float]:
        requests = sum(r.requests for r in runs)
        seconds = sum(r.seconds for r in runs)
        return (requests, requests / seconds, max(r.p50_ms for r in runs),
                max(r.p99_ms for r in runs), sum(r.errors for r in runs),
                sum(r.cpu_seconds for r in runs) * 1000 / max(1, requests))

    evx_n, evx_rate, evx_p50, evx_p99, evx_err, evx_cpu = total(slices["evx"])
    peer_n, peer_rate, peer_p50, peer_p99, peer_err, peer_cpu = total(slices["peer"])
    print(f"\n{db}: wrk -t2 -c{args.connections}, {args.slices} x {args.seconds} s slices each, "
          f"alternating; {args.workers} worker process(es) each; load average "
          f"{load_before:.2f} before, {load_after:.2f} after")
    print(f"  {'':<28}{'requests':>10}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}"
          f"{'CPU ms/req':>12}")
    print(f"  {'bare FastAPI (peer)':<28}{peer_n:>10}{peer_rate:>10.0f}{peer_p50:>9.1f}"
          f"{peer_p99:>9.1f}{peer_err:>8}{peer_cpu:>12.2f}")
    print(f"  {'evx GET /v1/packages/{id}':<28}{evx_n:>10}{evx_rate:>10.0f}{evx_p50:>9.1f}"
          f"{evx_p99:>9.1f}{evx_err:>8}{evx_cpu:>12.2f}")
    print(f"  ratio evx / peer: {evx_rate / peer_rate:.2f}x (goal >= 0.5x), evx p99 "
          f"{evx_p99:.0f} ms (goal < 100 ms); per-slice ratios: "
          + ", ".join(f"{e.rate / p.rate:.2f}"
                      for e, p in zip(slices["evx"], slices["peer"], strict=True)))
    print(f"  ledger: package.read entries grew by {grew}; server answered "
          f"{served if served is not None else 'n/a (several workers)'} reads with 200; "
          f"wrk received {evx_n} responses"
          + (f"; {commits} commits, {grew / commits:.1f} entries per commit" if commits else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=int, default=10, help="length of one wrk slice")
    parser.add_argument("--slices", type=int, default=2, help="slices per side, alternating")
    parser.add_argument("--workers", type=int, default=1,
                        help="worker processes of evx serve and of the peer alike")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores shared by wrk, the servers and the database")
    for db in (["sqlite", "postgresql"] if args.db == "both" else [args.db]):
        work = Path(tempfile.mkdtemp(prefix="evx-bench-reads-"))
        cleanups: list[Callable[[], None]] = []
        try:
            run_database(db, args, work, cleanups)
        finally:
            clean_up(cleanups, work)


if __name__ == "__main__":
    main()
