"""The API image, built from deploy/Dockerfile and run: the container answers /healthz and its
own HEALTHCHECK, and the `evx` client of this checkout uploads, downloads and reads the verified
custody record through it -- once as the image ships (embedded SQLite and object folder) and once
on PostgreSQL and an S3 store (the hub's configuration). Nothing of the service runs outside the
container: the authority and the officers' tokens are made inside it with `podman exec`.

The image is built (or, with podman's layer cache and the kept base, mostly reused) by
deploy/build-image.sh; it needs root, podman, runc and mmdebstrap -- .ci/run installs them, and
under EVX_REQUIRE_BACKENDS=1 their absence fails the test.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from minio import Minio

from tests.client.harness import User, free_port
from tests.conftest import backend_unavailable
from tests.support.seaweed import SeaweedS3

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
def image() -> Iterator[str]:
    """deploy/build-image.sh's image for this checkout, under a tag of this run only (another
    checkout building at the same time retags its own), untagged afterwards."""
    missing = [tool for tool in ("podman", "runc", "mmdebstrap") if shutil.which(tool) is None]
    if missing:
        backend_unavailable(f"{', '.join(missing)} (apt-get install podman runc mmdebstrap)")
    if os.geteuid() != 0:
        backend_unavailable("root (mmdebstrap and podman build the image as root)")
    tag = f"localhost/evidence-exchange:test-{uuid.uuid4().hex[:12]}"
    built = subprocess.run([str(REPO / "deploy" / "build-image.sh")], capture_output=True,
                           text=True, timeout=BUILD_TIMEOUT_S, cwd=REPO, check=False,
                           env={**os.environ, "EVX_IMAGE": tag})
    assert built.returncode == 0, (
        f"build-image.sh exited {built.returncode}\n{built.stderr[-6000:]}")
    print(built.stderr.splitlines()[-1])  # size and build times (run with -s)
    assert built.stdout.split()[-1] == tag
    try:
        yield tag
    finally:
        podman("rmi", tag, check=False)


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


@contextmanager
def running(image: str, url: str, *options: str) -> Iterator[Container]:
    """``podman run OPTIONS IMAGE``, waited for until /readyz answers 200 at ``url``; stopped
    and removed by its id afterwards."""
    started = podman("run", "--detach", "--ulimit", "host", "--health-interval", "disable",
                     *options)
    box = Container(started.stdout.strip().splitlines()[-1], url)
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


def round_trip_and_custody(container: Container, tmp_path: Path) -> None:
    """An authority and two officers made inside the container; then, with this checkout's
    client: upload a directory, seal, download and verify it, and read the custody record."""
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


@pytest.fixture(scope="module")
def shipped(image: str) -> Iterator[Container]:
    """The image run as it ships (its own CMD: embedded SQLite and object folder in
    /var/lib/evx), published on a loopback port."""
    port = free_port()
    with running(image, f"http://127.0.0.1:{port}",
                 "--publish", f"127.0.0.1:{port}:8000", image) as box:
        yield box


def test_shipped_image_round_trip_and_custody(shipped: Container, tmp_path: Path) -> None:
    health = httpx.get(f"{shipped.url}/healthz", timeout=10)
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    # The image's own HEALTHCHECK command (what `docker run` and compose-less hosts use).
    assert podman("healthcheck", "run", shipped.id, check=False).returncode == 0
    round_trip_and_custody(shipped, tmp_path)
    # What the client read is what the container stored, in its own data folder -- which is
    # what `evx init` makes: run there, it finds nothing to do.
    stored = podman("exec", shipped.id, "ls", "/var/lib/evx").stdout.split()
    assert {"evidence.db", "objects", "keys"} <= set(stored)
    report = json.loads(shipped.exec("init", "--json"))
    assert (report["data_dir"], report["changed"]) == ("/var/lib/evx", False), report


def test_runs_as_unprivileged_user_without_installer(shipped: Container) -> None:
    """The final stage has no pip and runs as uid 10001."""
    assert podman("exec", shipped.id, "id", "-u").stdout.strip() == "10001"
    no_pip = podman("exec", shipped.id, "python", "-c", "import pip", check=False)
    assert no_pip.returncode != 0 and "No module named 'pip'" in no_pip.stderr


@pytest.mark.postgres
@pytest.mark.s3
def test_image_on_postgres_and_s3(image: str, pg_url: str, seaweed: SeaweedS3, s3_bucket: str,
                                  tmp_path: Path) -> None:
    """The hub's configuration (compose, Kubernetes): PostgreSQL through the image's psycopg
    and an S3 store, with compose's confinement: read-only root, the data folder a tmpfs, no
    capabilities, no new privileges. The container shares the host's network to reach both
    backends on loopback."""
    port = free_port()
    settings = {"EVX_DATABASE_URL": pg_url, "EVX_OBJECT_STORE": "s3",
                "EVX_S3_ENDPOINT": seaweed.endpoint, "EVX_S3_ACCESS_KEY": seaweed.access_key,
                "EVX_S3_SECRET_KEY": seaweed.secret_key, "EVX_S3_BUCKET": s3_bucket}
    env = [option for key, value in settings.items() for option in ("--env", f"{key}={value}")]
    # compose: tmpfs "/var/lib/evx:uid=10001,gid=10001,mode=0700" (podman 4.3 spells it so)
    confined = ["--read-only",
                "--mount", "type=tmpfs,destination=/var/lib/evx,tmpfs-mode=0700,chown=true",
                "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
    with running(image, f"http://127.0.0.1:{port}", "--network", "host", *confined, *env,
                 image, "serve", "--host", "127.0.0.1", "--port", str(port)) as box:
        round_trip_and_custody(box, tmp_path)
    store = Minio(seaweed.endpoint, seaweed.access_key, seaweed.secret_key, secure=False)
    assert any(store.list_objects(s3_bucket, recursive=True))  # the items went to S3
    engine = sa.create_engine(pg_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("select count(*) from ledger_entries")).scalar_one() > 0
    finally:
        engine.dispose()
