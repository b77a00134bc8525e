"""Admin commands that never guess (issue 12, item 6), through real `evx` processes: only
`evx init` (or `evx serve --init`) creates a data folder, every other server-side command
refuses a missing one in one line with exit 2; what they create is 0700/0600 under any umask;
unknown EVX_* variables are warned about; `evx serve` says where it listens, on which
backends, with which keys, and when it stops."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from evx.cli.exits import EXIT_USAGE
from evx.cli.main import build
from evx.cli.preflight import known_variables, option_variables, unknown_variables
from tests.client.harness import (
    CLI_TIMEOUT_S,
    EVX,
    REPO,
    STARTUP_TIMEOUT_S,
    EvxServer,
    _base_env,
    free_port,
)

pytestmark = pytest.mark.slow  # real `evx` processes against a real server

#: Server-side commands that need a data folder (each refuses a missing one): name, arguments.
REFUSING = [
    ("serve", ["--port", "1"]),
    ("authority list", []),
    ("authority add", ["DE-BKA", "--name", "BKA", "--country", "DE", "--roles", "investigator",
                       "--generate-key"]),
    ("token", ["DE-BKA", "--sub", "anna", "--role", "investigator"]),
    ("keys list", []),
    ("db upgrade", []),
    ("sweep", []),
    ("ledger verifier-key", []),
    ("webhook list", []),
]


def _evx(*args: str, env: dict[str, str], umask: int | None = None,
         cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EVX, *args], env=env, capture_output=True, text=True, cwd=cwd,
                          timeout=CLI_TIMEOUT_S,
                          preexec_fn=None if umask is None else (lambda: os.umask(umask)))


def _private(root: Path) -> list[str]:
    """Everything under ``root`` (itself included) that group or others may use."""
    loose = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode & 0o077 or (path.is_dir() and mode != 0o700):
            loose.append(f"{mode:04o} {path.relative_to(root)}")
    return loose


@pytest.mark.parametrize(("name", "args"), REFUSING, ids=[name for name, _ in REFUSING])
def test_server_commands_refuse_a_missing_data_folder(name: str, args: list[str],
                                                      tmp_path: Path) -> None:
    folder = tmp_path / "nowhere" / "data"
    env = {**_base_env(), "EVX_DATA_DIR": str(folder)}
    proc = _evx(*name.split(), *args, env=env, cwd=tmp_path)
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert proc.stderr.splitlines() == [
        f"error: no data folder at {folder} (EVX_DATA_DIR); evx {name} does not create one",
        "  Initialise it with `evx init` (keys, database, objects), or set EVX_DATA_DIR to the "
        "data folder you meant."]
    assert not (tmp_path / "nowhere").exists() and not (tmp_path / "data").exists()


def test_the_default_data_folder_is_named_and_json_says_why(tmp_path: Path) -> None:
    proc = _evx("keys", "list", "--json", env=_base_env(), cwd=tmp_path)
    assert proc.returncode == EXIT_USAGE
    document = json.loads(proc.stdout)
    assert document["error"] == "no-data-folder" and document["exit_code"] == EXIT_USAGE
    assert document["message"] == (f"no data folder at {tmp_path / 'data'} (EVX_DATA_DIR is not "
                                   f"set: the default, ./data); evx keys list does not create one")
    assert "evx init" in document["hint"]
    assert not (tmp_path / "data").exists()


def test_init_is_idempotent_says_what_it_did_and_is_private_under_umask_0(
        tmp_path: Path) -> None:
    data = tmp_path / "srv" / "data"
    env = {**_base_env(), "EVX_DATA_DIR": str(data)}
    first = _evx("init", env=env, umask=0)
    assert first.returncode == 0, first.stderr
    kek = re.search(r"generated (kek-\S+):", first.stdout)
    head = re.search(r"migrated to (\S+) \(was empty\)", first.stdout)
    vkey = re.search(r"(evidence-exchange\.example/log\+\S+)", first.stdout)
    assert kek and head and vkey, first.stdout
    assert first.stdout.splitlines() == [
        f"data folder {data}: initialised",
        f"  data folder          created (0700): {data}",
        f"  key-encryption keys  generated {kek[1]}: {data}/keys/kek",
        f"  log signing key      generated: {data}/keys/log-signing.key",
        f"  objects              created: folder {data}/objects",
        f"  database             migrated to {head[1]} (was empty): sqlite:///{data}/evidence.db",
        f"  log verifier key     {vkey[1]}"]
    assert first.stderr == (f"generated key-encryption keys and log signing key in {data}: back "
                            "them up now (docs/operations.md#backups): without the "
                            "key-encryption keys the stored evidence cannot be decrypted, and "
                            "partners pin the log key\n")
    again = _evx("init", "--json", env=env, umask=0)
    assert again.returncode == 0 and again.stderr == ""
    report = json.loads(again.stdout)
    assert report["changed"] is False and report["generated"] == []
    assert [(s["part"], s["outcome"]) for s in report["steps"]] == [
        ("data folder", "exists (0700)"),
        ("key-encryption keys", f"exist (1; active {kek[1]})"),
        ("log signing key", "exists"), ("objects", "exists"),
        ("database", f"up to date ({head[1]})")]
    assert report["active_kek"] == kek[1] and report["log_verifier_key"] == vkey[1]
    # later commands under umask 0 keep it private: registry, dev keys, tokens
    added = _evx("authority", "add", "DE-BKA", "--name", "BKA", "--country", "DE", "--roles",
                 "investigator", "--generate-key", env=env, umask=0)
    assert added.returncode == 0, added.stderr
    assert _evx("token", "DE-BKA", "--sub", "anna", "--role", "investigator", env=env,
                umask=0).returncode == 0
    assert (data / "authorities" / "DE-BKA").is_dir()
    assert _private(data) == []


def test_init_tightens_a_loose_folder(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    data.chmod(0o755)
    proc = _evx("init", env={**_base_env(), "EVX_DATA_DIR": str(data)})
    assert proc.returncode == 0, proc.stderr
    assert f"exists; tightened from 0755 to 0700: {data}" in proc.stdout
    assert stat.S_IMODE(data.stat().st_mode) == 0o700


def test_a_served_folder_stays_private_under_umask_0(tmp_path: Path) -> None:
    """The server (and its uploads) started by an operator whose umask is 0: evidence objects,
    the database and its journal, keys -- nothing readable by others."""
    old = os.umask(0)  # inherited by every process the harness starts
    try:
        server = EvxServer(tmp_path)
        server.add_authority("DE-BKA", "DE", "investigator")
        user = server.user("DE-BKA", "investigator", "anna")
        server.start()
        try:
            folder = tmp_path / "evidence"
            folder.mkdir()
            (folder / "a.txt").write_bytes(b"seized")
            package = user.run("package", "create", "--case-ref", "C-1", "--title", "t",
                               "-q").stdout.strip()
            user.run("upload", package, str(folder))
        finally:
            server.stop()
    finally:
        os.umask(old)
    assert list((server.data_dir / "objects").rglob("*")), "no object was stored"
    assert _private(server.data_dir) == []


def test_unknown_variables_are_warned_with_a_suggestion(tmp_path: Path) -> None:
    env = {**_base_env(), "EVX_DATA_DIR": str(tmp_path / "d"), "EVX_DATA_DIRR": "x",
           "EVX_OBJECT_STOR": "s3", "EVX_ZZZ": "1",
           # known: a setting, client variables, an option's variable, tooling
           "EVX_LOG_LEVEL": "INFO", "EVX_URL": "http://127.0.0.1:1", "EVX_TOKEN": "t",
           "EVX_WITNESS_DB": "w.db", "EVX_LOG_KEY": "k", "EVX_VENV": ".venv",
           "EVX_TEST_EXTRACTION_FILES": "500"}
    proc = _evx("init", "--json", env=env)
    assert proc.returncode == 0, proc.stderr
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: EVX_DATA_DIRR is not an evx setting and is ignored (did you mean "
        "EVX_DATA_DIR?)",
        "warning: EVX_OBJECT_STOR is not an evx setting and is ignored (did you mean "
        "EVX_OBJECT_STORE?)",
        "warning: EVX_ZZZ is not an evx setting and is ignored"]
    assert proc.stderr.startswith("warning: EVX_DATA_DIRR")  # at start, before anything else
    logged = _evx("init", "--json", env={**env, "EVX_LOG_FORMAT": "json"})
    assert [json.loads(line) for line in logged.stderr.splitlines()[:3]] == [
        {"event": "unknown_setting", "level": "warning", "variable": "EVX_DATA_DIRR",
         "suggestion": "EVX_DATA_DIR"},
        {"event": "unknown_setting", "level": "warning", "variable": "EVX_OBJECT_STOR",
         "suggestion": "EVX_OBJECT_STORE"},
        {"event": "unknown_setting", "level": "warning", "variable": "EVX_ZZZ",
         "suggestion": None}]


def _click_envvars(command: Any) -> set[str]:
    found = {p.envvar for p in command.params if isinstance(p.envvar, str)}
    for child in getattr(command, "commands", {}).values():
        found |= _click_envvars(child)
    return found


def test_every_option_variable_is_known() -> None:
    from_cli = _click_envvars(build())  # the parsed command tree, independently of preflight
    assert {"EVX_URL", "EVX_TOKEN", "EVX_RETRIES", "EVX_WITNESS_DB"} <= from_cli
    assert from_cli <= option_variables()
    assert unknown_variables({name: "" for name in from_cli}, known_variables()) == []


def _serve(env: dict[str, str], *args: str) -> tuple[int, str]:
    """`evx serve ARGS` until ready, then SIGTERM; its exit status and output."""
    port = free_port()
    log = env["EVX_DATA_DIR"] + f".serve-{port}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([*EVX, "serve", "--port", str(port), *args], env=env,
                                   stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        import time

        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline and process.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        os.killpg(process.pid, signal.SIGTERM)
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return code, Path(log).read_text()


def test_serve_announces_address_backends_keys_and_its_stop(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = {**_base_env(), "EVX_DATA_DIR": str(data), "EVX_LOG_LEVEL": "WARNING"}
    code, text = _serve(env, "--init")
    assert code == -signal.SIGTERM, text
    lines = text.splitlines()
    started = next(i for i, line in enumerate(lines) if line.startswith("evx serve: listening"))
    url = lines[started].removeprefix("evx serve: listening on ")
    assert url.startswith("http://127.0.0.1:")
    banner = lines[started + 1:started + 7]
    assert banner[0] == f"  data folder         {data}"
    assert banner[1] == f"  database            sqlite:///{data}/evidence.db"
    assert banner[2] == f"  objects             folder {data}/objects"
    assert banner[3].startswith("  key-encryption key  kek-") and banner[3].endswith("(active)")
    assert banner[4].startswith("  log key             evidence-exchange.example/log+")
    assert banner[5].startswith(f"  generated key-encryption keys and log signing key in {data}: "
                                "back them up now")
    assert lines[-1] == f"evx serve: stopped; no longer listening on {url}"

    # started again on the same folder, as JSON logs: no keys generated, one event each
    code, text = _serve({**env, "EVX_LOG_FORMAT": "json", "EVX_LOG_LEVEL": "INFO"})
    events = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    by_name = {e["event"]: e for e in events}
    assert by_name["serve_started"]["address"].startswith("http://127.0.0.1:")
    assert by_name["serve_started"]["database"] == f"sqlite:///{data}/evidence.db"
    assert by_name["serve_started"]["active_kek"] == banner[3].split()[2]
    assert by_name["serve_started"]["log_key"] == banner[4].split()[2]
    assert "keys_generated" not in by_name
    assert events[-1]["event"] == "serve_stopped"
    assert all(line.startswith("{") for line in text.splitlines()), text


def test_dev_serve_starts_on_a_fresh_data_folder(tmp_path: Path) -> None:
    """The README's `./dev serve` on a checkout without a data folder: it initialises one."""
    import sys

    venv = Path(sys.prefix)
    stamp = venv / ".evx-installed"
    want = __import__("hashlib").sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()
    if not stamp.exists() or stamp.read_text().strip() != want:
        pytest.skip("the running interpreter is not a venv made by ./dev (it would install)")
    data = tmp_path / "data"
    env = {**_base_env(), "EVX_VENV": str(venv), "EVX_DATA_DIR": str(data),
           "EVX_LOG_LEVEL": "WARNING"}
    port = free_port()
    log = tmp_path / "dev.log"
    with log.open("wb") as out:
        process = subprocess.Popen([str(REPO / "dev"), "serve", "--port", str(port)], env=env,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        import time

        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        ready = False
        while time.monotonic() < deadline and process.poll() is None and not ready:
            try:
                ready = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code \
                    == 200
            except httpx.HTTPError:
                time.sleep(0.1)
        assert ready, log.read_text()
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)
    assert (data / "evidence.db").exists() and _private(data) == []
    assert f"evx serve: listening on http://127.0.0.1:{port}" in log.read_text()


def test_serve_on_a_port_in_use_is_a_usage_error(tmp_path: Path) -> None:
    """Not exit 1 (which means tampering): exit 2, one line, the advice."""
    import socket

    env = {**_base_env(), "EVX_DATA_DIR": str(tmp_path / "data")}
    assert _evx("init", env=env).returncode == 0
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = _evx("serve", "--port", str(port), env=env)
    assert proc.returncode == EXIT_USAGE, proc.stderr
    assert "address already in use" in proc.stderr
    assert proc.stderr.splitlines()[-2:] == [
        f"error: evx serve could not start on 127.0.0.1:{port} (the ERROR line above says why)",
        "  Choose another --port or --host."]
