"""Issue 12.1: the client installs alone. The project is installed WITHOUT extras into a fresh
virtual environment; none of the server's libraries can be imported there; `evx download`,
`evx custody` and `evx ledger verify` run from it against a service running from the project's
own environment."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.client.conftest import World
from tests.client.harness import RECIPIENT, REPO, User

pytestmark = pytest.mark.slow  # real `evx serve` processes and `evx` client processes

SERVER_ONLY = ("fastapi", "sqlalchemy", "alembic", "uvicorn", "minio", "psycopg")
INSTALL_TIMEOUT_S = 600.0
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "evx", "service", "custody", "storage",
           "migrations")


@pytest.fixture(scope="module")
def client_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("client-only")
    # A copy of the sources, so that building the wheel writes nothing into the checkout.
    source = root / "src"
    source.mkdir()
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        elif (REPO / name).exists():
            shutil.copy2(REPO / name, source / name)
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    # pip may reach the package registry here; its cache keeps repeated runs short.
    proc = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                           "--disable-pip-version-check", str(source)],
                          capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return venv


def _client_env(user: User) -> dict[str, str]:
    env = user.env()
    env.pop("PYTHONPATH", None)  # nothing of the checkout: only what was installed
    return env


def _evx(venv: Path, user: User, *args: str, expect: int = 0,
         cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(venv / "bin" / "evx"), *args], env=_client_env(user),
                          capture_output=True, text=True, timeout=300, cwd=cwd)
    assert proc.returncode == expect, (args, proc.stdout, proc.stderr)
    return proc


@pytest.mark.slow
def test_the_client_installs_and_works_without_the_server(client_venv: Path, embedded: World,
                                                          tmp_path: Path) -> None:
    python = str(client_venv / "bin" / "python")
    found = subprocess.run([python, "-c", "import importlib.util, json; print(json.dumps("
                            f"[m for m in {SERVER_ONLY!r} if importlib.util.find_spec(m)]))"],
                           capture_output=True, text=True, check=True, cwd=tmp_path,
                           env={"PATH": os.environ["PATH"]})
    assert json.loads(found.stdout) == []

    world = embedded
    de, fr = world.investigator, world.recipient
    package = de.json("package", "create", "--case-ref", "BKA-2026-31", "--title", "Laptop")["id"]
    evidence = tmp_path / "laptop" / "notes.txt"
    evidence.parent.mkdir()
    evidence.write_text("seized 2026-11-28\n")
    de.run("upload", package, str(evidence.parent))
    de.run("seal", package)
    de.run("share", package, "--authority", RECIPIENT, "--legal-basis", "EIO 2014/41/EU",
           "--request-ref", "MLA-FR-2026-0099")

    out = tmp_path / "received"
    got = json.loads(_evx(client_venv, fr, "download", package, "-o", str(out), "--json",
                          cwd=tmp_path).stdout)
    assert got["ok"] and [i["name"] for i in got["items"]] == ["laptop/notes.txt"]
    assert (out / "laptop" / "notes.txt").read_bytes() == evidence.read_bytes()

    custody = json.loads(_evx(client_venv, world.recipient_auditor, "custody", package, "--json",
                              cwd=tmp_path).stdout)
    assert custody["verified"] is True
    assert "share.created" in [e["action"] for e in custody["entries"]]

    operator = world.operator_auditor
    export = tmp_path / "ledger.jsonl"
    _evx(client_venv, operator, "ledger", "export", "-o", str(export), cwd=tmp_path)
    key = _evx(client_venv, operator, "ledger", "key", cwd=tmp_path).stdout.strip()
    verified = json.loads(_evx(client_venv, operator, "ledger", "verify", str(export), "--key",
                               key, "--json", cwd=tmp_path).stdout)
    assert verified["verified"] is True and verified["entries"] > 0

    # The server-side commands say how to get the server, in one line, exit 2.
    refused = _evx(client_venv, operator, "serve", expect=2, cwd=tmp_path)
    assert refused.stderr.strip().count("\n") == 0
    assert 'pip install "evidence-exchange[server]"' in refused.stderr
