"""A 1 GiB upload survives SIGKILL of the client and, separately, of the server, at a random
offset: the re-run (or the client's own reconnection) continues from the service's durable
offset, the stored item is byte-exact, and the bytes sent in total stay under 1.1x the file
size -- measured by a TCP proxy between client and server that counts every byte the client
sent (headers included), across both processes' lifetimes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.client.conftest import World, build_world
from tests.client.harness import EVX, EvxServer, User

pytestmark = pytest.mark.slow  # real `evx serve` processes and `evx` client processes

GIB = 1024 * 1024 * 1024
BLOCK = 1024 * 1024
BUDGET = 1.1  # bytes on the wire / file size
UPLOAD_TIMEOUT_S = 600.0


class CountingProxy:
    """Forwards 127.0.0.1:<port> to the server's port and counts the bytes sent towards it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.sent = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()  # server down: the client sees a refused/reset connection
                continue
            threading.Thread(target=self._pump, args=(client, upstream, True),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False),
                             daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, counted: bool) -> None:
        try:
            while data := source.recv(256 * 1024):
                if counted:
                    with self._lock:
                        self.sent += len(data)
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._stop = True
        self._listener.close()


def _evidence_file(path: Path, size: int, seed: int) -> str:
    """``size`` bytes, every MiB distinct (a random block with its index written over the
    start) -- cheap to make, and a misplaced block changes the digest."""
    block = bytearray(random.Random(seed).randbytes(BLOCK))
    digest = hashlib.sha256()
    with path.open("wb") as handle:
        for index in range(size // BLOCK):
            block[:8] = index.to_bytes(8, "big")
            handle.write(block)
            digest.update(block)
    return digest.hexdigest()


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    server = EvxServer(tmp_path, extra_env={"EVX_CHUNK_SIZE": str(BLOCK),
                                            "EVX_UPLOAD_SEGMENT_MIB": "16"})
    try:
        yield build_world(server)
    finally:
        server.stop()


def _env(user: User, proxy: CountingProxy) -> dict[str, str]:
    return {**user.env(), "EVX_URL": proxy.url}


def _upload(user: User, proxy: CountingProxy, package: str, path: Path) -> subprocess.Popen:
    return subprocess.Popen([*EVX, "upload", package, str(path)], env=_env(user, proxy),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(proxy: CountingProxy, sent: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + UPLOAD_TIMEOUT_S
    while proxy.sent < sent:
        assert process.poll() is None, f"upload ended early: {process.communicate()}"
        assert time.monotonic() < deadline
        time.sleep(0.01)


def _stored_sha256(world: World, package: str, name: str) -> str:
    """The item as the service serves it, hashed as it streams (byte-exact check)."""
    digest = hashlib.sha256()
    with httpx.stream("GET", f"{world.server.url}/v1/packages/{package}/items/{name}/content",
                      headers={"Authorization": f"Bearer {world.investigator.token}"},
                      timeout=300) as response:
        assert response.status_code == 200
        for piece in response.iter_bytes(BLOCK):
            digest.update(piece)
    return digest.hexdigest()


def _check(world: World, proxy: CountingProxy, package: str, name: str, sha256: str,
           note: str) -> None:
    items = world.investigator.json("package", "show", package)["items"]
    assert [(i["name"], i["size"], i["sha256"]) for i in items] == [(name, GIB, sha256)], note
    assert _stored_sha256(world, package, name) == sha256, note
    assert proxy.sent < BUDGET * GIB, f"{proxy.sent} bytes sent for {GIB}: {note}"
    uploaded = [e for e in world.investigator.json("custody", package)["entries"]
                if e["action"] == "item.uploaded"]
    assert [(e["outcome"], e["details"]["sha256"]) for e in uploaded] == [("allowed", sha256)]


@pytest.mark.slow
def test_upload_survives_sigkill_of_the_client(world: World, tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    path = tmp_path / "disk.E01"
    sha256 = _evidence_file(path, GIB, seed)
    proxy = CountingProxy(world.server.port)
    package = world.investigator.run("package", "create", "--case-ref", "K-1", "--title", "big",
                                     "-q").stdout.strip()
    start = proxy.sent
    kill_at = start + int(rng.uniform(0.15, 0.75) * GIB)
    process = _upload(world.investigator, proxy, package, path)
    _wait_for(proxy, kill_at, process)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    rerun = subprocess.run([*EVX, "upload", package, str(path), "--json"],
                           env=_env(world.investigator, proxy), capture_output=True, text=True,
                           timeout=UPLOAD_TIMEOUT_S)
    note = f"seed {seed}, client killed after {kill_at - start} bytes"
    assert rerun.returncode == 0, f"{note}\n{rerun.stderr}"
    proxy.sent -= start  # count only the upload, not the package creation
    _check(world, proxy, package, path.name, sha256, note)
    proxy.close()


@pytest.mark.slow
def test_upload_survives_sigkill_of_the_server(world: World, tmp_path: Path) -> None:
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    path = tmp_path / "disk.E01"
    sha256 = _evidence_file(path, GIB, seed)
    proxy = CountingProxy(world.server.port)
    package = world.investigator.run("package", "create", "--case-ref", "K-2", "--title", "big",
                                     "-q").stdout.strip()
    start = proxy.sent
    kill_at = start + int(rng.uniform(0.15, 0.75) * GIB)
    process = _upload(world.investigator, proxy, package, path)
    _wait_for(proxy, kill_at, process)
    server = world.server
    assert server.process is not None
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait()
    server.process = None
    server.start()  # same port, same data: the client reconnects by itself
    _out, err = process.communicate(timeout=UPLOAD_TIMEOUT_S)
    note = f"seed {seed}, server killed after {kill_at - start} bytes"
    if process.returncode != 0:  # it gave up while the server was down: run it again
        rerun = subprocess.run([*EVX, "upload", package, str(path)],
                               env=_env(world.investigator, proxy), capture_output=True,
                               text=True, timeout=UPLOAD_TIMEOUT_S)
        assert rerun.returncode == 0, f"{note}\n{err}\n{rerun.stderr}"
    proxy.sent -= start
    _check(world, proxy, package, path.name, sha256, note)
    proxy.close()
