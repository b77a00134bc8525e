"""Where the client differs by operating system, as small functions tested on every platform's
conventions (CI runs Linux only; see docs/client.md for what was not run).

* :func:`state_dir` / :func:`config_dir`: ``EVX_STATE_DIR`` / ``EVX_CONFIG_DIR``, else the
  platform's convention from ``platformdirs`` (Linux ``~/.local/state/evx``, macOS
  ``~/Library/Application Support/evx``, Windows ``%LOCALAPPDATA%\\evx``).
* :func:`lock`: an exclusive lock file (``filelock``: ``fcntl`` on POSIX, ``msvcrt`` on Windows).
* :func:`fsync_directory`: make a rename durable where the platform allows it (defined in
  :mod:`evx.durable`, with the other durable-file rules).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from filelock import FileLock
from platformdirs import PlatformDirs
from platformdirs.api import PlatformDirsABC

from evx.durable import fsync_directory

__all__ = ["config_dir", "fsync_directory", "lock", "state_dir"]

APP_NAME = "evx"
LOCK_TIMEOUT_S = 120.0  # another evx of this user moving the same server's checkpoint


def state_dir(environ: Mapping[str, str] | None = None,
              dirs: type[PlatformDirsABC] = PlatformDirs) -> Path:
    """What this machine trusts (pinned keys, checkpoints): ``EVX_STATE_DIR``, else the
    platform's user state directory."""
    env = os.environ if environ is None else environ
    if env.get("EVX_STATE_DIR"):
        return Path(env["EVX_STATE_DIR"])
    return Path(dirs(APP_NAME, appauthor=False).user_state_dir)


def config_dir(environ: Mapping[str, str] | None = None,
               dirs: type[PlatformDirsABC] = PlatformDirs) -> Path:
    """The user's client configuration: ``EVX_CONFIG_DIR``, else the platform's user config
    directory."""
    env = os.environ if environ is None else environ
    if env.get("EVX_CONFIG_DIR"):
        return Path(env["EVX_CONFIG_DIR"])
    return Path(dirs(APP_NAME, appauthor=False).user_config_dir)


def lock(path: Path, timeout: float = LOCK_TIMEOUT_S) -> FileLock:
    """An exclusive, cross-process lock on ``path`` (created 0600), for ``with``.

    Raises (on entering):
        filelock.Timeout: Another process held it for ``timeout`` seconds.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return FileLock(path, timeout=timeout, mode=0o600)


