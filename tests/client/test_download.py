"""Downloads that break: a real interruption resumed to a correct file, and a tampered stored
object refused with nothing left that looks like a good file."""

from __future__ import annotations

import hashlib
import json
import signal
import time
from pathlib import Path

import pytest

from evx.client.outdir import OutputFolder
from tests.client.conftest import World, write_random
from tests.client.harness import RECIPIENT, User

pytestmark = pytest.mark.slow  # real `evx serve` processes and `evx` client processes

BIG = 24 * 1024 * 1024 + 123  # not a multiple of the 1 MiB blocks or 64 KiB chunks
SLOW_RATE = 6 * 1024 * 1024  # bytes/s for the run that gets killed: ~4 s for the whole item


def _shared_package(world: World, files: list[Path]) -> str:
    de = world.investigator
    package = de.json("package", "create", "--case-ref", "BKA-2026-18",
                      "--title", "Disk image")["id"]
    de.run("upload", package, *map(str, files))
    de.run("seal", package)
    de.run("share", package, "--authority", RECIPIENT, "--legal-basis", "EIO 2014/41/EU",
           "--request-ref", "MLA-FR-2026-0043")
    return package


def _kill_when_past_half(fr: User, package: str, out: Path, partial: Path, size: int) -> None:
    """Start a rate-limited download and SIGKILL it once its partial file holds > half."""
    proc = fr.popen("download", package, "-o", str(out), "--limit-rate", str(SLOW_RATE))
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if partial.exists() and partial.stat().st_size > size // 2:
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.01)
        else:
            pytest.fail("the download never got past half")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def test_interrupted_download_resumes_to_a_correct_file(world: World, tmp_path: Path) -> None:
    image = write_random(tmp_path / "disk.img", BIG)
    package = _shared_package(world, [image])
    fr = world.recipient
    out = tmp_path / "received"
    partial = out / ".evx-partial" / OutputFolder.partial_key("disk.img").decode()

    _kill_when_past_half(fr, package, out, partial, BIG)
    cut = partial.stat().st_size
    assert BIG // 2 < cut < BIG
    assert not (out / "disk.img").exists()  # nothing at the final name until verified

    resumed = fr.json("download", package, "-o", str(out))
    item = resumed["items"][0]
    assert item["status"] == "downloaded" and item["resumed_from"] == cut
    data = (out / "disk.img").read_bytes()
    assert len(data) == BIG and data == image.read_bytes()
    assert item["sha256"] == hashlib.sha256(data).hexdigest()
    assert not partial.exists()

    # The custody record shows the killed transfer and the ranged resume that completed it.
    record = world.recipient_auditor.json("custody", package)
    downloads = [e for e in record["entries"] if e["item"] == "disk.img"
                 and e["action"].startswith("download.")]
    assert [e["action"] for e in downloads] == ["download.started", "download.aborted",
                                                "download.started", "download.completed"]
    assert downloads[0]["details"]["offset"] == 0
    assert downloads[2]["details"]["offset"] == cut
    assert downloads[2]["details"]["length"] == BIG - cut
    assert downloads[3]["details"]["bytes_sent"] == BIG - cut


def _object_files(world: World) -> set[Path]:
    root = world.server.data_dir / "objects" / "items"
    return {p for p in root.rglob("*") if p.is_file() and not p.name.endswith(".keys")}


def test_tampered_object_is_refused_and_nothing_is_left_in_place(embedded: World,
                                                                 tmp_path: Path) -> None:
    world = embedded
    before = _object_files(world)
    evidence = write_random(tmp_path / "chat-export.zip", 3 * 1024 * 1024 + 5)
    package = _shared_package(world, [evidence])
    (stored,) = _object_files(world) - before
    # A byte flipped in the encrypted object on disk, behind the service's back.
    with stored.open("r+b") as handle:
        handle.seek(stored.stat().st_size // 2)
        byte = handle.read(1)
        handle.seek(-1, 1)
        handle.write(bytes([byte[0] ^ 0x01]))

    out = tmp_path / "received"
    marks = world.server.log_marks()
    refused = world.recipient.run("download", package, "-o", str(out), expect=None)
    assert refused.returncode != 0, refused.stdout + refused.stderr
    assert refused.returncode == 1, refused.stderr
    assert "the stored item is probably damaged" in refused.stderr
    assert not (out / "chat-export.zip").exists()
    leftovers = [p for p in out.rglob("*") if p.is_file()]
    # At most a partial file under .evx-partial, never complete.
    for path in leftovers:
        assert path.parent == out / ".evx-partial" and path.name.endswith(".part")
        assert path.stat().st_size < evidence.stat().st_size
    # Trying again does not produce a file either.
    again = world.recipient.run("download", package, "-o", str(out), expect=None)
    assert again.returncode in (1, 5), again.stderr
    assert not (out / "chat-export.zip").exists()
    # The server cut the stream and said why, as an alarm, not as a crash with a traceback.
    log = world.server.log_text(since=marks)
    assert "transfer_cut" in log and "AuthenticationFailed" in log
    assert "Traceback" not in log
    # And the service put the failed transfer on the record.
    record = world.recipient_auditor.json("custody", package)
    assert any(e["action"] == "download.aborted" and e["outcome"] == "failed"
               for e in record["entries"])


def test_a_bad_partial_is_caught_deleted_and_the_next_run_is_clean(embedded: World,
                                                                  tmp_path: Path) -> None:
    world = embedded
    evidence = write_random(tmp_path / "memory.dmp", 2 * 1024 * 1024 + 1)
    package = _shared_package(world, [evidence])
    out = tmp_path / "received"
    partial = out / ".evx-partial" / OutputFolder.partial_key("memory.dmp").decode()
    partial.parent.mkdir(parents=True)
    data = evidence.read_bytes()
    # A partial file whose bytes are not the item's (a disk error, a tampered copy).
    partial.write_bytes(bytes([data[0] ^ 0xFF]) + data[1:1024 * 1024])

    refused = world.recipient.run("download", package, "-o", str(out), "--json", expect=1)
    assert json.loads(refused.stdout)["error"] == "digest-mismatch"
    assert "does NOT match its recorded digest" in refused.stderr
    assert not partial.exists() and not (out / "memory.dmp").exists()

    fresh = world.recipient.json("download", package, "-o", str(out))
    assert fresh["items"][0]["resumed_from"] == 0
    assert (out / "memory.dmp").read_bytes() == data
