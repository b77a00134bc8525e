"""A real `evx serve` process and real `evx` client processes, as users run them.

The server is started with ``python -m evx serve`` on a free port with its own data
directory, initialised first with ``evx init`` as an operator does; authorities are registered
with ``evx authority add --generate-key`` and tokens minted with ``evx token`` beforehand. Each
user runs the client with only ``EVX_URL``, ``EVX_TOKEN`` and their own ``EVX_STATE_DIR`` --
nothing of the server's configuration.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

OWNER, RECIPIENT, OPERATOR = "DE-BKA", "FR-OCRTEH", "EU-OPERATOR"
STARTUP_TIMEOUT_S = 60.0
CLI_TIMEOUT_S = 120.0
EVX = [sys.executable, "-m", "evx"]
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _base_env() -> dict[str, str]:
    keep = ("PATH", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env["PYTHONPATH"] = str(REPO)
    env["COLUMNS"] = "250"
    return env


def stop_group(process: subprocess.Popen[bytes] | None, timeout: float = 20) -> None:
    """SIGTERM the process group a child started (``start_new_session``), then SIGKILL."""
    if process is None or process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=timeout)


@dataclass
class User:
    """One person at their own machine: a token and their own client state directory."""

    name: str
    token: str
    state_dir: Path
    server: EvxServer

    def env(self) -> dict[str, str]:
        return {**_base_env(), "HOME": str(self.state_dir.parent), "EVX_URL": self.server.url,
                "EVX_TOKEN": self.token, "EVX_STATE_DIR": str(self.state_dir)}

    def popen(self, *args: str, **kwargs: Any) -> subprocess.Popen[str]:
        return subprocess.Popen([*EVX, *args], env=self.env(), text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)

    def run(self, *args: str, expect: int | None = 0,
            timeout: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        """Run ``evx ARGS`` as this user; assert the exit status (unless ``expect`` is None)."""
        proc = subprocess.run([*EVX, *args], env=self.env(), capture_output=True, text=True,
                              timeout=timeout)
        if expect is not None:
            assert proc.returncode == expect, (
                f"evx {' '.join(args)} exited {proc.returncode}, expected {expect}\n"
                f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
        return proc

    def json(self, *args: str, expect: int = 0, timeout: float = CLI_TIMEOUT_S) -> Any:
        proc = self.run(*args, "--json", expect=expect, timeout=timeout)
        return json.loads(proc.stdout)


@dataclass
class EvxServer:
    """`evx serve` in a child process, stopped by its pid."""

    root: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / "server-data"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        return {**_base_env(), "HOME": str(self.root), "EVX_DATA_DIR": str(self.data_dir),
                "EVX_OPERATOR_AUTHORITY": OPERATOR, "EVX_LOG_LEVEL": "WARNING",
                "EVX_CHUNK_SIZE": str(64 * 1024),
                # These servers test the client: folders of thousands of files go through one
                # officer, so the per-officer request rate is raised (the limits themselves are
                # tested in tests/api/test_rate_limits.py and tests/hostile/).
                "EVX_OFFICER_REQUESTS_PER_SECOND": "1000", "EVX_OFFICER_REQUEST_BURST": "10000",
                "EVX_AUTHORITY_REQUESTS_PER_SECOND": "2000",
                "EVX_AUTHORITY_REQUEST_BURST": "20000", **self.extra_env}

    def init(self) -> str:
        """``evx init``: the data folder, its keys and database (server-side commands refuse
        to run without one); the command's output."""
        proc = subprocess.run([*EVX, "init"], env=self.env(), capture_output=True, text=True,
                              timeout=CLI_TIMEOUT_S)
        assert proc.returncode == 0, f"evx init: {proc.stdout}{proc.stderr}"
        return proc.stdout

    def _initialised(self) -> None:
        if not self.data_dir.exists():
            self.init()

    def admin(self, *args: str) -> str:
        """``evx ARGS`` on the server's machine (registry, tokens)."""
        self._initialised()
        proc = subprocess.run([*EVX, *args], env=self.env(), capture_output=True, text=True,
                              timeout=CLI_TIMEOUT_S)
        assert proc.returncode == 0, f"evx {' '.join(args)}: {proc.stdout}{proc.stderr}"
        return proc.stdout.strip()

    def admin_parallel(self, commands: list[list[str]]) -> list[str]:
        """Several ``evx`` admin commands at once (after the database exists)."""
        self._initialised()
        procs = [subprocess.Popen([*EVX, *args], env=self.env(), stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for args in commands]
        outputs = []
        for args, proc in zip(commands, procs, strict=True):
            out, _ = proc.communicate(timeout=CLI_TIMEOUT_S)
            # a lost race for the SQLite write lock is retried alone
            outputs.append(out.strip() if proc.returncode == 0 else self.admin(*args))
        return outputs

    def users(self, wanted: list[tuple[str, str, str]]) -> list[User]:
        """Tokens for (authority, role, subject), minted concurrently."""
        tokens = self.admin_parallel([["token", authority, "--sub", subject, "--role", role,
                                       "--ttl", "3600"] for authority, role, subject in wanted])
        return [User(f"{subject}@{authority}", token, self.root / "users" / subject / "state",
                     self) for (authority, _, subject), token in zip(wanted, tokens,
                                                                     strict=True)]

    def add_authority(self, authority: str, country: str, roles: str) -> None:
        self.admin("authority", "add", authority, "--name", f"{authority} (test)",
                   "--country", country, "--roles", roles, "--generate-key")

    def user(self, authority: str, role: str, subject: str) -> User:
        token = self.admin("token", authority, "--sub", subject, "--role", role,
                           "--ttl", "3600")
        return User(f"{subject}@{authority}", token, self.root / "users" / subject / "state",
                    self)

    def start(self, ready_path: str = "/readyz") -> None:
        self._initialised()
        log = open(self.root / f"server-{self.port}.log", "ab")  # noqa: SIM115 - child's
        self.process = subprocess.Popen([*EVX, "serve", "--port", str(self.port)],
                                        env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        log.close()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                if httpx.get(self.url + ready_path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        tail = self.log_text()[-3000:]
        self.stop()
        raise RuntimeError(f"evx serve did not become ready:\n{tail}")

    def log_text(self, since: dict[str, int] | None = None) -> str:
        """The server's log; with ``since`` (from :meth:`log_marks`), only what came after it."""
        since = since or {}
        parts = []
        for path in sorted(self.root.glob("server-*.log")):
            with path.open("rb") as handle:
                handle.seek(since.get(path.name, 0))
                parts.append(handle.read().decode(errors="replace"))
        return "".join(parts)

    def log_marks(self) -> dict[str, int]:
        """Where each log file ends now, for :meth:`log_text` of what a test alone caused."""
        return {path.name: path.stat().st_size for path in self.root.glob("server-*.log")}

    def stop(self) -> None:
        process, self.process = self.process, None
        stop_group(process)

    def restart(self) -> None:
        self.stop()
        self.start()
