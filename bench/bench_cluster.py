"""Benchmark: aggregate throughput through nginx with 1 API replica vs 3, side by side.

    .venv/bin/python -m bench.bench_cluster [--seconds 15] [--clients 6] [--item-mib 4]

One loopback cluster (deploy/loopback_cluster.py: SeaweedFS with two copies of every object,
a PostgreSQL database, 3 API replicas, nginx with TLS). For each upstream set -- nginx balancing
across replica 0 only, then across all three (config rewritten and reloaded; same cluster, same
data) -- CLIENTS threads upload items of ITEM MiB for SECONDS, then download random items of that
phase for SECONDS. Prints MiB/s and requests/s per phase and the ratio 3 replicas / 1 replica.

Everything -- clients, nginx, three uvicorn processes, SeaweedFS, PostgreSQL -- shares this
machine's cores, so the ratio says how much the API tier was the bottleneck *here*, not how a
hub with one node per replica scales. This is a benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import random
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import timedelta

import httpx

from deploy.loopback_cluster import LoopbackCluster

OWNER, AUDIENCE = "DE-BKA", "evidence-exchange"


@dataclass
class Result:
    requests: int = 0
    errors: int = 0
    bytes: int = 0
    seconds: float = 0.0

    @property
    def mib_s(self) -> float:
        return self.bytes / 2**20 / self.seconds if self.seconds else 0.0

    @property
    def req_s(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def _token(cluster: LoopbackCluster, subject: str) -> str:
    import sqlalchemy as sa

    from service.identity.issuer import mint_token

    engine = sa.create_engine(cluster.database_url)
    try:
        with engine.begin() as conn:
            return mint_token(conn, cluster.data_dir, OWNER, subject=subject,
                              role="investigator", audience=AUDIENCE, ttl=timedelta(hours=1))
    finally:
        engine.dispose()


def _phase(url: str, tls: ssl.SSLContext, token: str, clients: int, seconds: float,
           work: object) -> Result:
    result, lock = Result(), threading.Lock()
    stop = threading.Event()

    def client(k: int) -> None:
        with httpx.Client(base_url=url, verify=tls, timeout=120,
                          headers={"Authorization": f"Bearer {token}"}) as http:
            while not stop.is_set():
                size = work(http, k)  # type: ignore[operator]
                with lock:
                    result.requests += size is not None
                    result.errors += size is None
                    result.bytes += size or 0

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    started = time.monotonic()
    for t in threads:
        t.start()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    result.seconds = time.monotonic() - started
    return result


def run(cluster: LoopbackCluster, replicas: list[int], args: argparse.Namespace,
        tls: ssl.SSLContext, token: str) -> tuple[Result, Result]:
    cluster.set_upstreams(replicas)
    url = cluster.url
    with httpx.Client(base_url=url, verify=tls, timeout=30,
                      headers={"Authorization": f"Bearer {token}"}) as http:
        r = http.post("/v1/packages", json={"case_reference": "BENCH", "title": "cluster bench",
                                            "description": f"{len(replicas)} replicas"})
        r.raise_for_status()
        package = r.json()["id"]
    block = os.urandom(args.item_mib << 20)
    uploaded: list[str] = []
    counter = iter(range(10**9))
    counter_lock = threading.Lock()

    def upload(http: httpx.Client, k: int) -> int | None:
        with counter_lock:
            n = next(counter)
        data = n.to_bytes(8, "big") + block[8:]  # unique content, no per-item random generation
        digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
        name = f"c{k}/item-{n:06d}"
        r = http.put(f"/v1/packages/{package}/items/{name}", content=data,
                     headers={"Content-Digest": f"sha-256=:{digest}:"})
        if r.status_code != 201:
            return None
        with counter_lock:
            uploaded.append(name)
        return len(data)

    rng = random.Random(len(replicas))

    def download(http: httpx.Client, k: int) -> int | None:
        with counter_lock:
            name = rng.choice(uploaded)
        size = 0
        with http.stream("GET", f"/v1/packages/{package}/items/{name}/content") as r:
            if r.status_code != 200:
                return None
            for piece in r.iter_bytes():
                size += len(piece)
        return size

    up = _phase(url, tls, token, args.clients, args.seconds, upload)
    down = _phase(url, tls, token, args.clients, args.seconds, download)
    return up, down


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=15.0, help="per phase (default 15)")
    parser.add_argument("--clients", type=int, default=6, help="client threads (default 6)")
    parser.add_argument("--item-mib", type=int, default=4, help="item size (default 4 MiB)")
    args = parser.parse_args()
    print(f"starting the loopback cluster ({os.cpu_count()} cores) ...", flush=True)
    with LoopbackCluster(replicas=3) as cluster:
        import sqlalchemy as sa

        from service.identity.issuer import create_authority

        engine = sa.create_engine(cluster.database_url)
        with engine.begin() as conn:
            create_authority(conn, OWNER, name="Bundeskriminalamt", country="DE",
                             roles=("investigator",), data_dir=cluster.data_dir)
        engine.dispose()
        tls = ssl.create_default_context(cafile=str(cluster.ca_file))
        token = _token(cluster, "bench")
        results = {}
        for label, replicas in (("1 replica", [0]), ("3 replicas", [0, 1, 2])):
            print(f"  {label}: {args.clients} clients x {args.item_mib} MiB items, "
                  f"{args.seconds:.0f}s upload + {args.seconds:.0f}s download", flush=True)
            results[label] = run(cluster, replicas, args, tls, token)
    one, three = results["1 replica"], results["3 replicas"]
    print(f"\n{'through nginx (TLS)':28} {'1 replica':>16} {'3 replicas':>16} {'3 / 1':>7}")
    for i, phase in enumerate(("upload", "download")):
        a, b = one[i], three[i]
        print(f"{phase + ' MiB/s':28} {a.mib_s:16.1f} {b.mib_s:16.1f} "
              f"{b.mib_s / a.mib_s if a.mib_s else float('nan'):7.2f}")
        print(f"{phase + ' requests/s':28} {a.req_s:16.2f} {b.req_s:16.2f} "
              f"{b.req_s / a.req_s if a.req_s else float('nan'):7.2f}")
        print(f"{phase + ' errors':28} {a.errors:16d} {b.errors:16d}")


if __name__ == "__main__":
    main()
