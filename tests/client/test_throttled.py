"""An officer's folder meets the per-officer request rate: the client keeps pace with the
server's 429s (any method: a 429 is refused before anything is done) instead of giving up, and
nothing is lost or doubled."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.client.harness import OWNER, EvxServer

pytestmark = pytest.mark.slow  # real `evx serve` processes and `evx` client processes

FILES = 60


@pytest.fixture
def slow_server(tmp_path: Path) -> Iterator[EvxServer]:
    # 5 requests/s with a burst of 5: a folder of 60 files with 4 in flight is paced at once.
    server = EvxServer(tmp_path / "srv", extra_env={
        "EVX_OFFICER_REQUESTS_PER_SECOND": "5", "EVX_OFFICER_REQUEST_BURST": "5"})
    server.add_authority(OWNER, "DE", "investigator,auditor")
    try:
        yield server
    finally:
        server.stop()


def test_a_paced_folder_upload_completes(slow_server: EvxServer, tmp_path: Path) -> None:
    user = slow_server.user(OWNER, "investigator", "anna.schmidt")
    slow_server.start()
    folder = tmp_path / "extraction"
    folder.mkdir()
    digests = {}
    for i in range(FILES):
        data = os.urandom(1000 + i)
        (folder / f"chat-{i:03d}.db").write_bytes(data)
        digests[f"extraction/chat-{i:03d}.db"] = hashlib.sha256(data).hexdigest()
    package = user.run("package", "create", "--case-ref", "RATE", "--title", "paced",
                       "-q").stdout.strip()

    done = user.run("upload", package, str(folder), "--parallel", "4")
    assert f"{FILES} uploaded, 0 skipped" in done.stdout
    assert "the server asks to slow down (HTTP 429)" in done.stderr  # it was paced, and said so
    shown = user.json("package", "show", package)
    assert {i["name"]: i["sha256"] for i in shown["items"]} == digests
    # Each item once on the record.
    custody = user.json("custody", package)
    uploaded = [e["item"] for e in custody["entries"] if e["action"] == "item.uploaded"
                and e["outcome"] == "allowed"]
    assert sorted(uploaded) == sorted(digests)
