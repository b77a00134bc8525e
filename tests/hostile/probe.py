"""The monitoring side of the hostile-caller suite, run as its own process: it probes
``/healthz`` every 50 ms and, every half second, another authority's metadata read (within the
suite's officer rate limit of 2/s, burst 20), for a given time, and prints the latencies
(seconds) as JSON.

Its own process, as a monitoring system is: in the test's process the probe shared the GIL with
the threads that play the attackers, and measured their scheduling (a 1.4 s first probe while
300 attacking sockets opened) rather than the server's.

    python -m tests.hostile.probe URL SECONDS TOKEN PACKAGE_ID
"""

from __future__ import annotations

import json
import sys
import time

import httpx

PROBE_INTERVAL_S = 0.05
METADATA_INTERVAL_S = 0.5


def probe(url: str, seconds: float, token: str, package_id: str) -> dict[str, list[float]]:
    health: list[float] = []
    metadata: list[float] = []
    with httpx.Client(timeout=30) as client:
        client.get(f"{url}/healthz")  # connected before the clock starts
        print("ready", flush=True)
        deadline = time.monotonic() + seconds
        next_read = time.monotonic()
        while time.monotonic() < deadline:
            started = time.perf_counter()
            r = client.get(f"{url}/healthz")
            assert r.status_code == 200, r.text
            health.append(time.perf_counter() - started)
            if time.monotonic() >= next_read:
                next_read += METADATA_INTERVAL_S
                started = time.perf_counter()
                r = client.get(f"{url}/v1/packages/{package_id}",
                               headers={"Authorization": f"Bearer {token}"})
                assert r.status_code == 200, r.text
                metadata.append(time.perf_counter() - started)
            time.sleep(PROBE_INTERVAL_S)
    return {"health": health, "metadata": metadata}


if __name__ == "__main__":
    url, seconds, token, package_id = sys.argv[1:5]
    print(json.dumps(probe(url, float(seconds), token, package_id)), flush=True)
