"""Issue 9.5: a client that survives the network. Through a real flaky proxy in front of a real
service: 503/429 with Retry-After and dropped connections are tried again; a download whose body
is cut resumes with Range; when the retries run out the partial download is kept, the message
says so, and the same command resumes it."""

from __future__ import annotations

import dataclasses
import json
import types
from pathlib import Path

import pytest

from evx.client.http import backoff_seconds, retry_after_seconds
from tests.client.conftest import World, write_random
from tests.client.flaky import FlakyProxy
from tests.client.harness import RECIPIENT, User

pytestmark = pytest.mark.slow  # real `evx serve` processes and `evx` client processes

SIZE = 3 * 1024 * 1024 + 123



def via(user: User, proxy: FlakyProxy) -> User:
    return dataclasses.replace(user, server=types.SimpleNamespace(url=proxy.url))  # type: ignore[arg-type]


def _shared_package(world: World, tmp_path: Path) -> tuple[str, Path]:
    de = world.investigator
    package = de.json("package", "create", "--case-ref", "BKA-2026-40", "--title", "Image")["id"]
    source = write_random(tmp_path / "src" / "image.E01", SIZE)
    de.run("upload", package, str(source))
    de.run("seal", package)
    de.run("share", package, "--authority", RECIPIENT, "--legal-basis", "EIO 2014/41/EU",
           "--request-ref", "MLA-FR-2026-0101")
    return package, source


def test_retry_after_and_backoff_are_pure_functions() -> None:
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("100000") == 120.0  # bounded
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past
    assert retry_after_seconds("soon") is None and retry_after_seconds(None) is None
    # full jitter under an exponential cap
    assert [backoff_seconds(n, rng=lambda lo, hi: hi) for n in (1, 2, 3, 8)] == \
        [0.5, 1.0, 2.0, 30.0]
    assert backoff_seconds(4, rng=lambda lo, hi: lo) == 0.0


def test_503_429_and_dropped_connections_are_tried_again(embedded: World,
                                                          proxy: FlakyProxy) -> None:
    proxy.fail("/v1/packages", "503:0", "429:1", "drop")
    user = via(embedded.investigator, proxy)
    done = user.run("package", "list", "--json")
    assert json.loads(done.stdout)["ok"] is True
    assert [a for _, _, a, _ in proxy.requests("/v1/packages")] == \
        ["503:0", "429:1", "drop", "forward"]
    assert done.stderr.count("retrying in") == 3


def test_no_retries_when_told_so(embedded: World, proxy: FlakyProxy) -> None:
    proxy.fail("/v1/packages", "503:0")
    failed = via(embedded.investigator, proxy).run("package", "list", "--json", "--retries",
                                                   "0", expect=5)
    assert json.loads(failed.stdout)["exit_code"] == 5
    assert len(proxy.requests("/v1/packages")) == 1


def test_a_download_survives_drops_cuts_and_503(embedded: World, proxy: FlakyProxy,
                                                tmp_path: Path) -> None:
    package, source = _shared_package(embedded, tmp_path)
    proxy.fail("/content", "drop", "cut:1048576", "503:0", "cut:2000000")
    out = tmp_path / "received"
    done = via(embedded.recipient, proxy).run("download", package, "-o", str(out))
    assert (out / "image.E01").read_bytes() == source.read_bytes()
    ranges = [r for _, _, _, r in proxy.requests("/content")]
    assert ranges[0] is None and any(r and r.startswith("bytes=1048576-") for r in ranges)
    assert "resuming in" in done.stderr


def test_when_retries_run_out_the_partial_download_is_kept(embedded: World, proxy: FlakyProxy,
                                                           tmp_path: Path) -> None:
    package, source = _shared_package(embedded, tmp_path)
    proxy.fail("/content", *["cut:700000"] * 3)
    out = tmp_path / "received"
    failed = via(embedded.recipient, proxy).run("download", package, "-o", str(out), "--json",
                                                "--retries", "2", expect=5)
    document = json.loads(failed.stdout)
    assert document["error"] == "transfer-interrupted" and "kept in" in document["hint"]
    (partial,) = (out / ".evx-partial").glob("*.part")  # named by a hash of the item name
    assert partial.stat().st_size >= 3 * 700000 - 3 and not (out / "image.E01").exists()
    assert "Traceback" not in failed.stderr
    # the same command resumes it (the proxy forwards again)
    done = via(embedded.recipient, proxy).run("download", package, "-o", str(out), "--json")
    assert json.loads(done.stdout)["items"][0]["resumed_from"] > 0
    assert (out / "image.E01").read_bytes() == source.read_bytes()
