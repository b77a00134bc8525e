"""Usability review A2: every failure ends in one line, the documented exit status and, with
--json, one JSON document -- never a traceback (exit 1 stays for integrity failures)."""

from __future__ import annotations

import dataclasses
import json
import os
import resource
import signal
import subprocess
import time
import types
from pathlib import Path

import pytest

from evx.cli.exits import EXIT_LOCAL, EXIT_USAGE
from tests.client.conftest import World, write_random
from tests.client.flaky import FlakyProxy
from tests.client.harness import EVX, RECIPIENT

pytestmark = pytest.mark.slow  # real `evx serve` processes and `evx` client processes

BIG = 32 * 1024 * 1024  # more than loopback socket buffers hold, so the file is still being read


def _one_error(proc: subprocess.CompletedProcess[str], code: int) -> dict[str, object]:
    assert proc.returncode == code, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[-2 if len(lines) > 1 and lines[-1].startswith("  ") else -1].startswith("error: ")
    document: dict[str, object] = json.loads(proc.stdout)
    assert document["ok"] is False and document["exit_code"] == code
    return document



def _upload_while(embedded: World, proxy: FlakyProxy, tmp_path: Path, change: str) -> None:
    de = embedded.investigator
    package = de.json("package", "create", "--case-ref", "BKA-2026-50", "--title", change)["id"]
    source = write_random(tmp_path / f"{change}.bin", BIG)
    proxy.fail("/items/" + source.name, "hold")
    user = dataclasses.replace(de, server=types.SimpleNamespace(url=proxy.url))  # type: ignore[arg-type]
    running = user.popen("upload", package, str(source), "--json")
    try:
        assert proxy.held.wait(120), "the upload never reached the proxy"
        if change == "grows":
            with source.open("ab") as handle:
                handle.write(b"x" * 4096)
        else:
            os.truncate(source, BIG // 2)
        proxy.release.set()
        out, err = running.communicate(timeout=120)
    finally:
        if running.poll() is None:
            running.kill()
    document = _one_error(subprocess.CompletedProcess([], running.returncode, out, err),
                          EXIT_USAGE)
    assert document["error"] == "file-changed" and "changed while it was uploaded" in err
    assert de.json("package", "show", package)["items"] == []


@pytest.mark.parametrize("change", ["grows", "shrinks"])
def test_a_file_that_changes_during_the_upload(embedded: World, proxy: FlakyProxy,
                                               tmp_path: Path, change: str) -> None:
    _upload_while(embedded, proxy, tmp_path, change)


def _shared(embedded: World, tmp_path: Path, size: int) -> str:
    de = embedded.investigator
    package = de.json("package", "create", "--case-ref", "BKA-2026-51", "--title", "disk")["id"]
    de.run("upload", package, str(write_random(tmp_path / "src" / "disk.img", size)))
    de.run("seal", package)
    de.run("share", package, "--authority", RECIPIENT, "--legal-basis", "EIO 2014/41/EU",
           "--request-ref", "MLA-FR-2026-0102")
    return package


def _limited_file_size(limit: int) -> None:
    # What a full disk does to a writer (EFBIG instead of ENOSPC): the file cannot grow.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))


def test_a_full_disk_during_a_download(embedded: World, tmp_path: Path) -> None:
    fr = embedded.recipient
    package = _shared(embedded, tmp_path, 3 * 1024 * 1024)
    out = tmp_path / "received"
    proc = subprocess.run([*EVX, "download", package, "-o", str(out), "--json"], env=fr.env(),
                          capture_output=True, text=True, timeout=120,
                          preexec_fn=lambda: _limited_file_size(1024 * 1024))
    document = _one_error(proc, EXIT_LOCAL)
    assert document["error"] == "local-file-error" and document["errno"] == "EFBIG"
    assert "kept" in str(document["hint"])
    partials = list((out / ".evx-partial").glob("*.part"))  # named by a hash of the item name
    assert [p.stat().st_size for p in partials] == [1024 * 1024]
    # with room again, the same command resumes and verifies
    done = fr.json("download", package, "-o", str(out))
    assert done["items"][0]["resumed_from"] == 1024 * 1024


def test_output_that_is_a_file(embedded: World, tmp_path: Path) -> None:
    fr = embedded.recipient
    package = _shared(embedded, tmp_path, 1000)
    a_file = tmp_path / "outside.txt"
    a_file.write_text("not a directory")
    for target in (a_file, a_file / "below"):
        document = _one_error(fr.run("download", package, "-o", str(target), "--json",
                                     expect=None), EXIT_LOCAL)
        assert str(a_file) in str(document["message"])
    assert a_file.read_text() == "not a directory"


def test_bad_settings(embedded: World, tmp_path: Path) -> None:
    fr = embedded.recipient
    for env, needle in ((dict(fr.env(), EVX_RETRIES="many"), "--retries"),
                        (dict(fr.env(), EVX_URL="127.0.0.1:8000"), "not an http(s) URL")):
        proc = subprocess.run([*EVX, "package", "list", "--json"], env=env, capture_output=True,
                              text=True, timeout=60)
        assert needle in str(_one_error(proc, EXIT_USAGE)["message"])
    server_env = embedded.server.env()
    for extra, needle in (({"EVX_LOG_FORMAT": "jsonl"}, "EVX_LOG_FORMAT"),
                          ({"EVX_OBJECT_STORE": "s3"}, "EVX_S3_ENDPOINT")):
        started = time.monotonic()
        proc = subprocess.run([*EVX, "serve", "--port", "1"], env={**server_env, **extra},
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == EXIT_USAGE, (proc.stdout, proc.stderr, started)
        assert "Traceback" not in proc.stderr and needle in proc.stderr
        assert proc.stderr.startswith("error: bad setting")
