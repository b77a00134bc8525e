"""Revocation takes effect now (review M3): a share revoked while its download streams stops
that download at the next block, and the abort is on the record with the reason."""

from __future__ import annotations

import os

import httpx
import pytest

from tests.hostile.conftest import Hub

pytestmark = pytest.mark.slow  # a real server, a 24 MiB item

MIB = 1024 * 1024
ITEM = 24 * MIB  # well beyond what loopback socket buffers hold


def test_a_revoked_share_stops_a_running_download(hub: Hub) -> None:
    package_id = hub.create_package()
    hub.upload(package_id, "big.bin", os.urandom(ITEM))
    hub.seal_and_share(package_id)
    start = len(hub.entries())
    received = 0
    with httpx.stream("GET", f"{hub.url}/v1/packages/{package_id}/items/big.bin/content",
                      headers=hub.headers("recipient"), timeout=30) as response:
        assert response.status_code == 200
        stream = response.iter_raw(64 * 1024)
        while received < MIB:
            received += len(next(stream))
        hub.revoke(package_id)
        with pytest.raises(httpx.HTTPError):
            for piece in stream:
                received += len(piece)
    assert received < ITEM
    entries = hub.entries(start)
    actions = [(e["action"], e["outcome"]) for e in entries]
    assert actions[0] == ("download.started", "allowed")
    assert ("share.revoked", "allowed") in actions
    (aborted,) = [e for e in entries if e["action"] == "download.aborted"]
    assert "revoked" in aborted["reason"]
    assert aborted["details"]["bytes_sent"] < ITEM
    assert not any(e["action"] == "download.completed" for e in entries)
