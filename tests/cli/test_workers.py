"""`evx serve --workers N` (EVX_WORKERS): N processes share the port and one ledger on
PostgreSQL; on SQLite more than one is refused before anything is created."""

from __future__ import annotations

import json
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from evx.cli.exits import EXIT_USAGE
from tests.client.harness import CLI_TIMEOUT_S, EVX, OWNER, EvxServer, _base_env, free_port

pytestmark = pytest.mark.slow  # real `evx serve` processes

READS = 60


def test_several_workers_need_postgresql(tmp_path: Path) -> None:
    data = tmp_path / "data"
    proc = subprocess.run([*EVX, "serve", "--init", "--workers", "2", "--port", str(free_port())],
                          env={**_base_env(), "HOME": str(tmp_path), "EVX_DATA_DIR": str(data)},
                          capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert "several workers need PostgreSQL" in proc.stderr
    assert not data.exists()  # refused before the data folder was made


def _workers(pid: int) -> list[int]:
    """The worker processes of `evx serve` ``pid`` (not multiprocessing's resource tracker)."""
    children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return [c for c in children
            if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()]


def test_workers_share_the_port_and_one_ledger(tmp_path: Path, pg_url: str) -> None:
    server = EvxServer(tmp_path, extra_env={"EVX_DATABASE_URL": pg_url, "EVX_WORKERS": "2",
                                            "EVX_LOG_LEVEL": "INFO", "EVX_LOG_FORMAT": "json"})
    server.add_authority(OWNER, "DE", "investigator,auditor")
    officer = server.user(OWNER, "investigator", "anna")
    server.start()
    try:
        assert server.process is not None
        workers = _workers(server.process.pid)
        assert len(workers) == 2
        headers = {"Authorization": f"Bearer {officer.token}"}
        package = httpx.post(f"{server.url}/v1/packages", headers=headers, timeout=30,
                             json={"case_reference": "W-1", "title": "workers"}).json()["id"]

        def read(_: int) -> int:  # a new connection each time: either worker may take it
            return httpx.get(f"{server.url}/v1/packages/{package}", headers=headers,
                             timeout=60).status_code

        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(read, range(READS))) == [200] * READS
        custody = officer.json("custody", package)  # verified against the log's proofs
        reads = [e for e in custody["entries"] if e["action"] == "package.read"]
        assert len(reads) == READS
        served_by = {json.loads(line)["replica"].rsplit("/", 1)[1]
                     for line in server.log_text().splitlines()
                     if line.startswith("{") and json.loads(line).get("event") == "request"
                     and json.loads(line).get("route") == "/v1/packages/{package_id}"}
        assert served_by == {str(pid) for pid in workers}
    finally:
        server.stop()
