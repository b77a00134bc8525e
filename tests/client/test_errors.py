"""Refusals that need different actions get different messages and exit statuses: an expired
token, a share that expired, a share that was revoked (problem ``type``s, not just statuses)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.client.conftest import World
from tests.client.harness import OWNER, RECIPIENT, User

pytestmark = pytest.mark.slow  # real `evx serve` processes and `evx` client processes

SHARE_SECONDS = 4


def test_refusals_say_what_to_do(embedded: World, tmp_path: Path) -> None:
    world = embedded
    server = world.server
    short = User("brief@DE-BKA", server.admin("token", OWNER, "--sub", "brief", "--role",
                                              "investigator", "--ttl", "1"),
                 tmp_path / "brief" / "state", server)
    de, fr = world.investigator, world.recipient
    package = de.json("package", "create", "--case-ref", "BKA-2026-19", "--title", "Router")["id"]
    evidence = tmp_path / "router-config.txt"
    evidence.write_text("hostname edge-1\n")
    de.run("upload", package, str(evidence))
    de.run("seal", package)
    until = datetime.now(UTC) + timedelta(seconds=SHARE_SECONDS)
    de.run("share", package, "--authority", RECIPIENT, "--legal-basis", "EIO 2014/41/EU",
           "--request-ref", "MLA-FR-2026-0044", "--expires",
           until.strftime("%Y-%m-%dT%H:%M:%S%z"))
    time.sleep(max(0.0, (until - datetime.now(UTC)).total_seconds()) + 1.2)

    expired_token = short.run("package", "list", "--json", expect=3)
    assert "the token has expired" in expired_token.stderr
    assert "Ask your authority for a new one" in expired_token.stderr
    assert json.loads(expired_token.stdout)["reason"] == "expired"

    expired_share = fr.run("download", package, "-o", str(tmp_path / "out"), "--json",
                           expect=4)
    assert json.loads(expired_share.stdout)["error"] == "share-expired"
    assert "ask the owning authority to share the package again" in expired_share.stderr

    de.run("share", package, "--authority", RECIPIENT, "--legal-basis", "EIO 2014/41/EU",
           "--request-ref", "MLA-FR-2026-0044")
    de.run("revoke", package, "--authority", RECIPIENT)
    revoked = fr.run("download", package, "-o", str(tmp_path / "out"), "--json", expect=4)
    assert json.loads(revoked.stdout)["error"] == "share-revoked"
    assert "revoked the share" in revoked.stderr
    assert not (tmp_path / "out" / "router-config.txt").exists()
