"""The API image, built from deploy/Dockerfile and run: the container answers /healthz and its
own HEALTHCHECK, and the `evx` client of this checkout uploads, downloads and reads the verified
custody record through it. Nothing of the service runs outside the container: the authority and
the officers' tokens are made inside it with `podman exec` (as an operator would).

The image is built (or, with podman's layer cache and the kept base, mostly reused) by
deploy/build-image.sh; it needs root, podman, runc and mmdebstrap -- .ci/run installs them, and
under EVX_REQUIRE_BACKENDS=1 their absence fails the test.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.client.harness import User, free_port
from tests.conftest import backend_unavailable

pytestmark = [pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
PODMAN = ["podman", "--runtime", "runc", "--cgroup-manager", "cgroupfs"]
BUILD_TIMEOUT_S = 1800.0   # from scratch, measured 4-5 min (docs/operations.md)
READY_TIMEOUT_S = 180.0    # first start: keys generated, SQLite migrated
AUTHORITY = "DE-BKA"


def _podman_env() -> dict[str, str]:
    return {**os.environ, "CONTAINERS_CONF": str(REPO / "deploy" / "podman" / "containers.conf")}


def podman(*args: str, timeout: float = 120.0,
           check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([*PODMAN, *args], env=_podman_env(), capture_output=True, text=True,
                          timeout=timeout, check=False)
    if check:
        assert proc.returncode == 0, (
            f"podman {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def image() -> str:
    """deploy/build-image.sh's image for this checkout."""
    missing = [tool for tool in ("podman", "runc", "mmdebstrap") if shutil.which(tool) is None]
    if missing:
        backend_unavailable(f"{', '.join(missing)} (apt-get install podman runc mmdebstrap)")
    if os.geteuid() != 0:
        backend_unavailable("root (mmdebstrap and podman build the image as root)")
    built = subprocess.run([str(REPO / "deploy" / "build-image.sh")], capture_output=True,
                           text=True, timeout=BUILD_TIMEOUT_S, cwd=REPO, check=False)
    assert built.returncode == 0, (
        f"build-image.sh exited {built.returncode}\n{built.stderr[-6000:]}")
    print(built.stderr.splitlines()[-1])  # size and build times (run with -s)
    return built.stdout.split()[-1]


@dataclass
class Container:
    id: str
    url: str

    def exec(self, *args: str) -> str:
        """``evx ARGS`` inside the container, as the image's user, in its data folder."""
        return podman("exec", self.id, "evx", *args).stdout

    def logs(self) -> str:
        proc = podman("logs", self.id, check=False)
        return (proc.stdout + proc.stderr)[-4000:]


@pytest.fixture(scope="module")
def container(image: str) -> Iterator[Container]:
    """The image run as it ships (its own CMD), published on a loopback port; stopped and
    removed by its id afterwards."""
    port = free_port()
    started = podman("run", "--detach", "--ulimit", "host", "--health-interval", "disable",
                     "--publish", f"127.0.0.1:{port}:8000", image)
    box = Container(started.stdout.strip().splitlines()[-1], f"http://127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            state = podman("inspect", "--format", "{{.State.Status}}", box.id).stdout.strip()
            assert state == "running", f"the container is {state}:\n{box.logs()}"
            try:
                if httpx.get(f"{box.url}/readyz", timeout=3).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"not ready in {READY_TIMEOUT_S}s:\n{box.logs()}"
            time.sleep(1)
        yield box
    finally:
        podman("stop", "--time", "20", box.id, check=False)
        podman("rm", "--force", box.id, check=False)


def test_container_serves_round_trip_and_custody(container: Container, tmp_path: Path) -> None:
    health = httpx.get(f"{container.url}/healthz", timeout=10)
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    # The image's own HEALTHCHECK command (what `docker run` and compose-less hosts use).
    assert podman("healthcheck", "run", container.id, check=False).returncode == 0

    container.exec("authority", "add", AUTHORITY, "--name", "Bundeskriminalamt", "--country",
                   "DE", "--roles", "investigator,auditor", "--generate-key")

    def user(subject: str, role: str) -> User:
        token = container.exec("token", AUTHORITY, "--sub", subject, "--role", role,
                               "--ttl", "1800").strip()
        # User only reads the server's url: the container stands in for the harness's server
        return User(subject, token, tmp_path / subject / "state",
                    container)  # type: ignore[arg-type]

    officer, auditor = user("anna.schmidt", "investigator"), user("olaf.weber", "auditor")

    evidence = tmp_path / "seized" / "handset-17"
    (evidence / "extraction").mkdir(parents=True)
    files = {"handset-17/extraction/phone.bin": os.urandom(3 * 1024 * 1024 + 17),
             "handset-17/notes.txt": b"seized 2026-11-02 at 06:10\n"}
    for name, data in files.items():
        (tmp_path / "seized" / name).write_bytes(data)

    package = officer.json("package", "create", "--case-ref", "BKA-2026-17",
                           "--title", "Seized handset")["id"]
    uploaded = officer.json("upload", package, str(evidence))
    assert {i["name"]: i["sha256"] for i in uploaded["items"]} == {
        name: hashlib.sha256(data).hexdigest() for name, data in files.items()}
    officer.json("seal", package)

    out = tmp_path / "received"
    got = officer.json("download", package, "-o", str(out))
    assert {i["status"] for i in got["items"]} == {"downloaded"}
    for name, data in files.items():
        assert (out / name).read_bytes() == data
    officer.run("verify", str(out))

    # The custody record, read through the container and verified by the client (inclusion
    # proofs, the package's hash chain, the signed checkpoint).
    custody = auditor.json("custody", package)
    assert custody["verified"] is True
    actions = [e["action"] for e in custody["entries"]]
    assert actions[0] == "package.created"
    assert actions.count("item.uploaded") == len(files)
    assert "package.sealed" in actions
    assert actions.count("download.completed") >= len(files)
    assert actions[-1] == "custody.read"
    again = auditor.json("custody", package)
    assert again["checkpoint"]["previous_size"] == custody["checkpoint"]["tree_size"]

    # What the client read is what the container stored: its own SQLite ledger, in its data folder.
    assert "evidence.db" in podman("exec", container.id, "ls", "/var/lib/evx").stdout


def test_runs_as_unprivileged_user_without_installer(container: Container) -> None:
    """The final stage has no pip and runs as uid 10001."""
    assert podman("exec", container.id, "id", "-u").stdout.strip() == "10001"
    no_pip = podman("exec", container.id, "python", "-c", "import pip", check=False)
    assert no_pip.returncode != 0 and "No module named 'pip'" in no_pip.stderr
