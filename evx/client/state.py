"""The client's own trusted state, per server: the pinned log key and the last verified checkpoint.

Layout (``EVX_STATE_DIR``, default ``$XDG_STATE_HOME/evx`` or ``~/.local/state/evx``)::

    servers/<scheme>_<host>_<port>/log-key      the log's verifier key, pinned on first use
    servers/<scheme>_<host>_<port>/checkpoint   the newest signed checkpoint verified here

Both files are written atomically (temporary file, fsync, rename) with owner-only permissions.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from custody.checkpoint import Checkpoint
from custody.errors import VerificationError
from custody.note import MAX_NOTE_BYTES, VerifierKey

from evx.client.errors import IntegrityFailure, UsageError

MAX_KEY_BYTES = 4096  # a verifier key is ~90 bytes


def default_state_dir(environ: dict[str, str] | os._Environ[str] | None = None) -> Path:
    """``EVX_STATE_DIR``, else ``$XDG_STATE_HOME/evx``, else ``~/.local/state/evx``."""
    env = os.environ if environ is None else environ
    if env.get("EVX_STATE_DIR"):
        return Path(env["EVX_STATE_DIR"])
    if env.get("XDG_STATE_HOME"):
        return Path(env["XDG_STATE_HOME"]) / "evx"
    return Path.home() / ".local" / "state" / "evx"


def _origin_dir_name(origin: str) -> str:
    return re.sub(r"[^A-Za-z0-9.\-]+", "_", origin.replace("://", "_")).strip("_")


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data``: a reader sees the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(temporary, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@dataclass(frozen=True)
class SavedCheckpoint:
    checkpoint: Checkpoint
    note: str


class TrustState:
    """What this machine trusts about one server's log."""

    def __init__(self, root: Path, origin: str) -> None:
        self.origin = origin
        self.directory = root / "servers" / _origin_dir_name(origin)

    @property
    def key_path(self) -> Path:
        return self.directory / "log-key"

    @property
    def checkpoint_path(self) -> Path:
        return self.directory / "checkpoint"

    def pinned_key(self) -> VerifierKey | None:
        """The pinned key, or ``None`` before first use.

        Raises:
            UsageError: The pin file exists but is not a verifier key (fix or remove it).
        """
        try:
            data = self.key_path.read_bytes()[:MAX_KEY_BYTES]
        except FileNotFoundError:
            return None
        try:
            return VerifierKey.parse(data.decode("utf-8"))
        except (UnicodeDecodeError, VerificationError) as exc:
            raise UsageError(f"the pinned log key {self.key_path} is unreadable: {exc}",
                             hint="Restore it from a backup; do not simply delete it.") from exc

    def pin_key(self, key: VerifierKey) -> None:
        write_atomically(self.key_path, (str(key) + "\n").encode())

    def saved_checkpoint(self, key: VerifierKey) -> SavedCheckpoint | None:
        """The last verified checkpoint (re-verified under ``key``), or ``None``.

        Raises:
            IntegrityFailure: The saved file does not verify under the pinned key.
        """
        try:
            data = self.checkpoint_path.read_bytes()[:MAX_NOTE_BYTES + 1]
        except FileNotFoundError:
            return None
        try:
            note = data.decode("utf-8")
            return SavedCheckpoint(Checkpoint.verify(note, key), note)
        except (UnicodeDecodeError, VerificationError) as exc:
            raise IntegrityFailure(
                f"the saved checkpoint {self.checkpoint_path} does not verify under the pinned "
                f"key: {exc}", hint="Someone changed this machine's trusted state; investigate.",
                slug="state-corrupt") from exc

    def save_checkpoint(self, note: str) -> None:
        write_atomically(self.checkpoint_path, note.encode("utf-8"))
