"""The server's side of a real client: a caller that disconnects mid-upload is a client abort
(499, no traceback), not a server error."""

from __future__ import annotations

import re
import socket
import time

import pytest

from tests.client.conftest import World

pytestmark = pytest.mark.slow  # real `evx serve` processes and `evx` client processes


def _metric(world: World, status: str) -> float:
    import httpx

    text = httpx.get(world.server.url + "/metrics").text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("evx_http_requests_total{") and 'method="PUT"' in line and \
                f'status="{status}"' in line and "items" in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_client_disconnect_mid_upload_is_a_499(world: World) -> None:
    de = world.investigator
    package = de.json("package", "create", "--case-ref", "ABORT", "--title", "abort")["id"]
    before_499, before_500 = _metric(world, "499"), _metric(world, "500")
    # The session's server is shared: only what this test causes is read from its log.
    marks = world.server.log_marks()
    port = int(world.server.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall((f"PUT /v1/packages/{package}/items/aborted.bin HTTP/1.1\r\n"
                      f"Host: 127.0.0.1\r\nAuthorization: Bearer {de.token}\r\n"
                      "Content-Type: application/octet-stream\r\n"
                      f"Content-Length: {8 * 1024 * 1024}\r\n\r\n").encode())
        conn.sendall(b"x" * (256 * 1024))
        time.sleep(0.5)  # the body is being read and encrypted
    deadline = time.monotonic() + 15
    while _metric(world, "499") == before_499 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _metric(world, "499") == before_499 + 1
    assert _metric(world, "500") == before_500
    log = world.server.log_text(since=marks)
    assert not re.search(r"unhandled_error.*ClientDisconnect", log)
    assert "Traceback" not in log
    custody = de.json("custody", package)
    failed = [e for e in custody["entries"] if e["action"] == "item.uploaded"]
    assert [(e["outcome"], e["reason"]) for e in failed] == [("failed", "client disconnected")]
