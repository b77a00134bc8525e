"""The client's platform seams as pure functions, on each platform's conventions (CI runs only
Linux; docs/client.md says what was not run)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from filelock import Timeout
from platformdirs.macos import MacOS
from platformdirs.unix import Unix

from evx.client import platform


def test_the_override_wins_on_every_platform(tmp_path: Path) -> None:
    env = {"EVX_STATE_DIR": str(tmp_path / "s"), "EVX_CONFIG_DIR": str(tmp_path / "c")}
    for dirs in (Unix, MacOS):
        assert platform.state_dir(env, dirs) == tmp_path / "s"
        assert platform.config_dir(env, dirs) == tmp_path / "c"


def test_linux_follows_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("XDG_STATE_HOME", raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    assert platform.state_dir({}, Unix) == tmp_path / ".local" / "state" / "evx"
    assert platform.config_dir({}, Unix) == tmp_path / ".config" / "evx"
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert platform.state_dir({}, Unix) == tmp_path / "xdg" / "evx"


def test_macos_uses_application_support(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    assert platform.state_dir({}, MacOS) == tmp_path / "Library" / "Application Support" / "evx"


def test_windows_uses_local_app_data(monkeypatch: pytest.MonkeyPatch) -> None:
    # platformdirs resolves Windows folders through the shell API; its documented override
    # variable stands in for it here (this machine is not Windows).
    from platformdirs.windows import Windows

    monkeypatch.setenv("WIN_PD_OVERRIDE_LOCAL_APPDATA", "C:\\Users\\anna\\AppData\\Local")
    found = str(platform.state_dir({}, Windows)).replace("\\", "/")
    assert found.startswith("C:/Users/anna/AppData/Local") and found.endswith("evx")


def test_directories_are_not_fsynced_on_windows(tmp_path: Path) -> None:
    assert platform.fsync_directory(tmp_path / "absent", os_name="nt") is False
    assert platform.fsync_directory(tmp_path, os_name="posix") is True


def test_the_lock_excludes_another_process(tmp_path: Path) -> None:
    path = tmp_path / "state" / ".lock"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from evx.client.platform import lock
        with lock(__import__("pathlib").Path({str(path)!r})):
            print("held", flush=True)
            sys.stdin.readline()
        """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(Timeout), platform.lock(path, timeout=0.2):
            pass
    finally:
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.close()
        holder.wait(timeout=30)
    with platform.lock(path, timeout=5):
        assert (path.stat().st_mode & 0o777) == 0o600


def test_the_client_path_has_no_posix_only_imports() -> None:
    root = Path(__file__).resolve().parents[2] / "evx"
    files = [*(root / "client").glob("*.py"), *(root / "cli").glob("*.py"),
             *(root / "protocol").glob("*.py")]
    offenders = [f.name for f in files
                 for bad in ("import fcntl", "import termios", "import pwd", "import grp",
                             "os.getuid", "os.fork", "signal.SIGKILL")
                 if bad in f.read_text()]
    assert offenders == []
