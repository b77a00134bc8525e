"""Scale-out on the loopback cluster: three API replicas behind nginx, PostgreSQL, replicated
SeaweedFS. Clients upload and download through the balancer while an API replica and a volume
server are SIGKILLed; afterwards nothing acknowledged is lost and the ledger is one chain.

Figures (operations, failures seen by clients, recovery times) are printed; run with ``-s``:

    .venv/bin/python -m pytest tests/deploy -s
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import random
import ssl
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.deploy.conftest import OPERATOR, OWNER, ClusterWorld

pytestmark = [pytest.mark.cluster, pytest.mark.postgres, pytest.mark.s3]

RUN_SECONDS = 40.0
KILL_API_AT, RESTART_API_AT, KILL_VOLUME_AT = 12.0, 24.0, 28.0
KILLED_API, KILLED_VOLUME = 1, 0
UPLOAD_WORKERS, DOWNLOAD_WORKERS = 3, 2
MIN_ITEM, MAX_ITEM = 1 << 20, 8 << 20
OP_DEADLINE_S = 45.0  # one operation, all its retries: longer means the cluster did not recover
APPEND_SECONDS = 5.0
TIMEOUT = httpx.Timeout(10.0, read=60.0)


def _digest_header(data: bytes) -> str:
    return f"sha-256=:{base64.b64encode(hashlib.sha256(data).digest()).decode()}:"


@dataclass
class Attempt:
    at: float  # seconds since the run started, when the attempt ended
    op: str
    ok: bool
    detail: str = ""


@dataclass
class Run:
    started: float = field(default_factory=time.monotonic)
    stop: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    attempts: list[Attempt] = field(default_factory=list)
    uploads: dict[tuple[str, str], str] = field(default_factory=dict)  # (package, name) -> sha
    acked_on_conflict: int = 0
    downloads: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    gave_up: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.started

    def note(self, op: str, ok: bool, detail: str = "") -> None:
        with self.lock:
            self.attempts.append(Attempt(self.now(), op, ok, detail))


RETRYABLE_STATUS = {502, 503, 504}


def _retrying(run: Run, op: str, attempt: object) -> object:
    """Call ``attempt()`` until it returns a result (not None); transport errors and 502/503/504
    are retried with backoff. Gives up after OP_DEADLINE_S (recorded, fails the test)."""
    deadline = time.monotonic() + OP_DEADLINE_S
    delay = 0.2
    while True:
        try:
            result = attempt()  # type: ignore[operator]
        except httpx.HTTPError as exc:
            run.note(op, False, type(exc).__name__)
            result = None
        else:
            if result is not None:
                run.note(op, True)
                return result
        if time.monotonic() > deadline:
            run.gave_up.append(op)
            return None
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


def _uploader(run: Run, url: str, ca: ssl.SSLContext, token: str, worker: int) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    rng = random.Random(worker)
    with httpx.Client(base_url=url, verify=ca, timeout=TIMEOUT) as client:

        def create() -> str | None:
            r = client.post("/v1/packages", headers=headers, json={
                "case_reference": f"SCALE-{worker}", "title": "scale-out", "description": ""})
            if r.status_code in RETRYABLE_STATUS:
                run.note("package.create", False, str(r.status_code))
                return None
            assert r.status_code == 201, r.text
            return str(r.json()["id"])

        package = _retrying(run, "package.create", create)
        assert package is not None
        n = 0
        while not run.stop.is_set():
            name = f"w{worker}/item-{n:05d}.bin"
            n += 1
            data = rng.randbytes(rng.randint(MIN_ITEM, MAX_ITEM))
            sha = hashlib.sha256(data).hexdigest()

            def upload() -> str | None:
                r = client.put(f"/v1/packages/{package}/items/{name}", content=data,
                               headers={**headers, "Content-Digest": _digest_header(data)})
                if r.status_code == 201:
                    assert r.json()["sha256"] == sha
                    return "created"
                if r.status_code == 409 and r.json().get("type", "").endswith("item-exists"):
                    # An earlier attempt was stored but its answer was lost: acknowledged if the
                    # stored item is ours, byte for byte.
                    listed = client.get(f"/v1/packages/{package}", headers=headers)
                    if listed.status_code != 200:
                        run.note("upload", False, f"listing {listed.status_code}")
                        return None
                    stored = {i["name"]: i["sha256"] for i in listed.json()["items"]}
                    assert stored[name] == sha, f"{name} exists with another digest"
                    return "conflict-same-digest"
                if r.status_code in RETRYABLE_STATUS:
                    run.note("upload", False, str(r.status_code))
                    return None
                run.unexpected.append(f"upload {name}: {r.status_code} {r.text[:200]}")
                return "unexpected"

            outcome = _retrying(run, "upload", upload)
            with run.lock:
                if outcome in ("created", "conflict-same-digest"):
                    run.uploads[(package, name)] = sha
                    run.bytes_up += len(data)
                    run.acked_on_conflict += outcome == "conflict-same-digest"


def _downloader(run: Run, url: str, ca: ssl.SSLContext, token: str, worker: int) -> None:
    headers = {"Authorization": f"Bearer {token}"}
    rng = random.Random(1000 + worker)
    with httpx.Client(base_url=url, verify=ca, timeout=TIMEOUT) as client:
        while not run.stop.is_set():
            with run.lock:
                acked = list(run.uploads.items())
            if not acked:
                time.sleep(0.2)
                continue
            (package, name), sha = rng.choice(acked)

            def download() -> int | None:
                digest = hashlib.sha256()
                size = 0
                with client.stream("GET", f"/v1/packages/{package}/items/{name}/content",
                                   headers=headers) as r:
                    if r.status_code in RETRYABLE_STATUS:
                        run.note("download", False, str(r.status_code))
                        return None
                    assert r.status_code == 200, r.read()
                    for block in r.iter_bytes():
                        digest.update(block)
                        size += len(block)
                assert digest.hexdigest() == sha, f"{name}: wrong bytes"
                return size

            size = _retrying(run, "download", download)
            if size is not None:
                with run.lock:
                    run.downloads += 1
                    run.bytes_down += int(size)  # type: ignore[call-overload]


def _recovery(run: Run, killed_at: float, until: float) -> tuple[int, float]:
    """Failed attempts in [killed_at, until) and seconds from the kill to the last of them."""
    failed = [a for a in run.attempts if not a.ok and killed_at <= a.at < until]
    return len(failed), (max(a.at for a in failed) - killed_at) if failed else 0.0


def _export(world: ClusterWorld, tmp_path: Path) -> tuple[Path, str, list[dict]]:
    cluster = world.cluster
    token = world.token(OPERATOR, "auditor-scale", role="auditor")
    tls = ssl.create_default_context(cafile=str(cluster.ca_file))
    with httpx.Client(base_url=cluster.url, verify=tls, timeout=120) as client:
        key = client.get("/v1/ledger/key").text.strip()
        r = client.get("/v1/ledger/export", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
    export = tmp_path / "ledger.jsonl"
    export.write_bytes(r.content)
    lines = [json.loads(line) for line in r.content.split(b"\n") if line]
    assert lines[0]["format"] == "evx-ledger-export" and "checkpoint" in lines[-1]
    return export, key, lines[1:-1]


def _assert_one_linear_chain(lines: list[dict]) -> None:
    for position, line in enumerate(lines):
        entry = line["entry"]
        assert entry["index"] == position, f"gap or reorder at {position}: {entry['index']}"
        expected_prev = lines[position - 1]["leaf_hash"] if position else None
        assert entry["prev"] == expected_prev, f"prev link broken at {position}"


def _verify_offline(export: Path, key: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "evx", "ledger", "verify", str(export),
                           "--key", key], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "VERIFIED" in proc.stdout
    return proc.stdout.strip()


def test_appends_from_three_replicas_at_once_stay_ordered(cluster_world: ClusterWorld,
                                                          tmp_path: Path) -> None:
    """Each replica is hit directly (not through nginx) by its own officer, all at once."""
    cluster = cluster_world.cluster
    owner_token = cluster_world.token(OWNER, "setup")
    tls = ssl.create_default_context(cafile=str(cluster.ca_file))
    with httpx.Client(base_url=cluster.url, verify=tls, timeout=30) as client:
        r = client.post("/v1/packages", headers={"Authorization": f"Bearer {owner_token}"},
                        json={"case_reference": "ORDER", "title": "ordering", "description": ""})
        assert r.status_code == 201, r.text
        package = r.json()["id"]
    acked: Counter[str] = Counter()
    barrier = threading.Barrier(3)

    def reader(i: int) -> None:
        subject = f"replica-{i}"
        headers = {"Authorization": f"Bearer {cluster_world.token(OWNER, subject)}"}
        with httpx.Client(base_url=cluster.api_url(i), timeout=30) as client:
            barrier.wait()
            deadline = time.monotonic() + APPEND_SECONDS
            while time.monotonic() < deadline:
                r = client.get(f"/v1/packages/{package}", headers=headers)
                if r.status_code == 429:
                    # The per-officer rate (a burst of 200, then 20/s) ends this reader's run
                    # on a fast machine; a refused read is not on the record as a read.
                    return
                assert r.status_code == 200, r.text
                acked[subject] += 1

    threads = [threading.Thread(target=reader, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    export, key, lines = _export(cluster_world, tmp_path)
    _assert_one_linear_chain(lines)
    mine = [line["entry"]["actor"]["subject"] for line in lines
            if line["entry"]["actor"]["subject"].startswith("replica-")
            and line["entry"]["action"] == "package.read"]
    assert Counter(mine) == acked  # every acknowledged read is on the record exactly once
    switches = sum(1 for a, b in itertools.pairwise(mine) if a != b)
    print(f"\nthree replicas appending at once for {APPEND_SECONDS:.0f}s: "
          f"{dict(sorted(acked.items()))} entries, {switches} switches between replicas in "
          f"index order, ledger size {len(lines)}, indexes 0..{len(lines) - 1} contiguous")
    assert all(acked[f"replica-{i}"] >= 10 for i in range(3)), acked
    assert switches >= 10, "appends from the three replicas did not interleave"
    _verify_offline(export, key)


def test_scale_out_survives_killed_replica_and_volume_server(cluster_world: ClusterWorld,
                                                             tmp_path: Path) -> None:
    cluster = cluster_world.cluster
    url, ca = cluster.url, ssl.create_default_context(cafile=str(cluster.ca_file))
    run = Run()
    errors: list[BaseException] = []

    def guarded(target: object, *args: object) -> threading.Thread:
        def body() -> None:
            try:
                target(*args)  # type: ignore[operator]
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)
                run.stop.set()
        return threading.Thread(target=body)

    threads = [guarded(_uploader, run, url, ca, cluster_world.token(OWNER, f"uploader-{k}"), k)
               for k in range(UPLOAD_WORKERS)]
    threads += [guarded(_downloader, run, url, ca,
                        cluster_world.token(OWNER, f"downloader-{k}"), k)
                for k in range(DOWNLOAD_WORKERS)]
    for t in threads:
        t.start()
    events: dict[str, float] = {}
    for at, what in ((KILL_API_AT, "kill api"), (RESTART_API_AT, "restart api"),
                     (KILL_VOLUME_AT, "kill volume")):
        time.sleep(max(0.0, at - run.now()))
        if run.stop.is_set():
            break
        events[what] = run.now()
        if what == "kill api":
            cluster.kill_api(KILLED_API)
        elif what == "restart api":
            cluster.start_api(KILLED_API, wait=False)
        else:
            volumes_on_killed = cluster.volume_ids(KILLED_VOLUME)
            cluster.kill_volume(KILLED_VOLUME)
    time.sleep(max(0.0, RUN_SECONDS - run.now()))
    run.stop.set()
    for t in threads:
        t.join(timeout=OP_DEADLINE_S + 30)
    elapsed = run.now()
    assert not errors, errors
    assert not run.gave_up, f"operations that never recovered: {run.gave_up}"
    assert not run.unexpected, run.unexpected
    assert len(run.uploads) >= 10 and run.downloads >= 10
    assert volumes_on_killed, "the killed volume server held no volume: nothing was tested"

    cluster.wait_api(KILLED_API)
    served_after_restart = cluster.api_requests_served(KILLED_API)
    nginx_errors = cluster.nginx_errors()
    upstream_failures = nginx_errors.count("upstream")

    # 1. Every acknowledged upload is there with its digest, and nothing else is.
    token = cluster_world.token(OWNER, "checker")
    headers = {"Authorization": f"Bearer {token}"}
    by_package: dict[str, dict[str, str]] = {}
    for (package, name), sha in run.uploads.items():
        by_package.setdefault(package, {})[name] = sha
    with httpx.Client(base_url=url, verify=ca, timeout=TIMEOUT) as client:
        for package, items in by_package.items():
            r = client.get(f"/v1/packages/{package}", headers=headers)
            assert r.status_code == 200, r.text
            assert {i["name"]: i["sha256"] for i in r.json()["items"]} == items
            for name, sha in items.items():
                digest = hashlib.sha256()
                with client.stream("GET", f"/v1/packages/{package}/items/{name}/content",
                                   headers=headers) as resp:
                    assert resp.status_code == 200, resp.read()
                    for block in resp.iter_bytes():
                        digest.update(block)
                assert digest.hexdigest() == sha, f"{package}/{name} lost or changed"

    # 2. The ledger is one linear chain, verified offline, and counts what clients saw.
    export, key, lines = _export(cluster_world, tmp_path)
    _assert_one_linear_chain(lines)
    verdict = _verify_offline(export, key)
    ours = [line["entry"] for line in lines
            if line["entry"]["actor"]["subject"].startswith(("uploader-", "downloader-"))]
    uploaded = [(e["package"], e["item"]) for e in ours
                if e["action"] == "item.uploaded" and e["outcome"] == "allowed"]
    # An allowed entry is written before the item row commits (no entry, no action); a replica
    # killed between the two leaves an entry whose item the client then uploads again.
    assert set(uploaded) == set(run.uploads)
    crash_window_duplicates = len(uploaded) - len(run.uploads)
    assert 0 <= crash_window_duplicates <= 1  # one API kill
    actions = Counter(e["action"] for e in ours if e["outcome"] == "allowed")
    assert actions["download.started"] >= run.downloads
    # A download whose last byte left before the kill may miss its completion entry.
    assert actions["download.completed"] >= run.downloads - DOWNLOAD_WORKERS

    kill_api, kill_volume = events["kill api"], events["kill volume"]
    api_failures, api_recovery = _recovery(run, kill_api, events["restart api"])
    vol_failures, vol_recovery = _recovery(run, kill_volume, elapsed)
    failed_kinds = Counter((a.op, a.detail) for a in run.attempts if not a.ok)
    print(f"\nscale-out over {elapsed:.0f}s through nginx, {UPLOAD_WORKERS} uploaders + "
          f"{DOWNLOAD_WORKERS} downloaders, items {MIN_ITEM >> 20}-{MAX_ITEM >> 20} MiB:\n"
          f"  acknowledged uploads   {len(run.uploads)} ({run.bytes_up / 2**20:.0f} MiB, "
          f"{run.acked_on_conflict} acknowledged on retry as 409 with the same digest)\n"
          f"  acknowledged downloads {run.downloads} ({run.bytes_down / 2**20:.0f} MiB)\n"
          f"  api{KILLED_API} SIGKILL at {kill_api:.1f}s: {api_failures} failed client attempts, "
          f"last {api_recovery:.1f}s after the kill; restarted at "
          f"{events['restart api']:.1f}s, then served {served_after_restart} requests\n"
          f"  nginx logged {upstream_failures} upstream errors (a dead replica's connections; "
          f"reads and unsent writes go to the next one)\n"
          f"  volume{KILLED_VOLUME} SIGKILL at {kill_volume:.1f}s: {vol_failures} failed client "
          f"attempts, last {vol_recovery:.1f}s after the kill (it held a copy of "
          f"{len(volumes_on_killed)} volumes; not restarted)\n"
          f"  failed attempts by kind: {dict(failed_kinds)}\n"
          f"  ledger: {len(lines)} entries, one chain; item.uploaded allowed {len(uploaded)} "
          f"(crash-window duplicates {crash_window_duplicates}), download.started "
          f"{actions['download.started']}, download.completed {actions['download.completed']}\n"
          f"  {verdict.splitlines()[0]}")
