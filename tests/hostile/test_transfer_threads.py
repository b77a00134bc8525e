"""Slow uploads cannot starve the other requests (review H4), against a real `evx serve`.

45 one-request uploads trickling their bodies froze every endpoint, `/healthz` included: each
held a thread of the 40 that every request shares. Now a transfer runs on a thread of the
transfer slots' own pool, as large as the number of transfers a replica runs
(EVX_TRANSFERS_PER_REPLICA); one more transfer is a 503 with Retry-After, never a wait for a
thread with its body unread.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.hostile.conftest import Hub, start_hub

pytestmark = pytest.mark.slow  # a real `evx serve` process and 45 trickling uploads

SLOW_UPLOADS = 45  # more than the 40 threads that ordinary requests share
WAIT_S = 60.0  # a bound on setting up, not a measurement


@pytest.fixture
def busy_hub(tmp_path: Path) -> Iterator[Hub]:
    hub = start_hub(tmp_path, {
        "EVX_TRANSFERS_PER_REPLICA": str(SLOW_UPLOADS),
        "EVX_TRANSFERS_PER_OFFICER": "100", "EVX_TRANSFERS_PER_AUTHORITY": "100",
        "EVX_TRANSFER_MEMORY_BUDGET_MIB": "1024", "EVX_TRANSFER_QUEUE_SECONDS": "0.5",
        "EVX_TRANSFER_STALL_SECONDS": "600"})
    try:
        yield hub
    finally:
        hub.server.stop()


def _running(hub: Hub) -> float:
    text = httpx.get(f"{hub.url}/metrics", timeout=30).text
    found = re.search(r"^evx_transfers_running (\S+)$", text, re.MULTILINE)
    assert found, "evx_transfers_running is not exported"
    return float(found.group(1))


def _open_slow_uploads(hub: Hub, package_id: str) -> list[socket.socket]:
    socks = []
    for i in range(SLOW_UPLOADS):
        s = socket.create_connection(("127.0.0.1", hub.server.port), timeout=30)
        s.sendall((f"PUT /v1/packages/{package_id}/items/slow-{i}.bin HTTP/1.1\r\nHost: x\r\n"
                   f"Authorization: Bearer {hub.tokens['owner']}\r\n"
                   "Content-Length: 10000000\r\n\r\nx").encode())
        socks.append(s)
    return socks


def test_slow_uploads_hold_transfer_threads_only(busy_hub: Hub) -> None:
    hub = busy_hub
    shared = hub.create_package()
    hub.upload(shared, "report.txt", b"evidence\n")
    hub.seal_and_share(shared)
    scratch = hub.create_package()
    own = hub.create_package("recipient")
    socks = _open_slow_uploads(hub, scratch)
    try:
        deadline = time.monotonic() + WAIT_S
        while _running(hub) < SLOW_UPLOADS:
            assert time.monotonic() < deadline, f"only {_running(hub)} uploads started"
            time.sleep(0.2)

        # Every ordinary request is answered (each would have waited for one of the 40 shared
        # threads, all held by the uploads, until they ended).
        auditor = hub.headers("recipient_auditor")
        with httpx.Client(timeout=WAIT_S) as client:
            assert client.get(f"{hub.url}/healthz").status_code == 200
            assert client.get(f"{hub.url}/readyz").status_code == 200
            assert client.get(f"{hub.url}/v1/packages/{shared}", headers=auditor).status_code == 200
            assert client.get(f"{hub.url}/v1/packages", headers=auditor).status_code == 200
            assert client.get(f"{hub.url}/v1/ledger/key").status_code == 200

            # One more transfer, by another authority, up or down: 503 with Retry-After.
            up = client.put(f"{hub.url}/v1/packages/{own}/items/more.bin", content=b"x",
                            headers=hub.headers("recipient"))
            down = client.get(f"{hub.url}/v1/packages/{shared}/items/report.txt/content",
                              headers=hub.headers("recipient"))
        for r in (up, down):
            assert r.status_code == 503, r.text
            assert r.json()["type"].endswith("/service-busy")
            assert int(r.headers["Retry-After"]) >= 1
    finally:
        for s in socks:
            s.close()

    deadline = time.monotonic() + WAIT_S
    while _running(hub) > 0:  # the cut uploads give their slots back
        assert time.monotonic() < deadline, f"{_running(hub)} transfers still hold slots"
        time.sleep(0.2)
    hub.upload(own, "more.bin", b"x", who="recipient")  # 201: a transfer starts again
