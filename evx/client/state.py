"""The client's own trusted state, per server: the pinned log key and the last verified checkpoint.

Layout (``EVX_STATE_DIR``, default the platform's user state directory, see
:func:`evx.client.platform.state_dir`)::

    servers/<scheme>_<host>_<port>/log-key      the log's verifier key, pinned on first use
                                                (or set on purpose: ``evx trust log --key``)
    servers/<scheme>_<host>_<port>/log-key.explicit   present when the key was set on purpose
    servers/<scheme>_<host>_<port>/checkpoint   the newest signed checkpoint verified here
    servers/<scheme>_<host>_<port>/packages/<id>.json   per package, the last entry verified
                                                here: {"index", "leaf_hash"}
    servers/<scheme>_<host>_<port>/authority-keys.json  {authority: [RFC 7638 thumbprints]}:
                                                the signing keys each authority declared its own

Both files are written atomically (temporary file, fsync, rename) with owner-only permissions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from custody.checkpoint import Checkpoint
from custody.errors import VerificationError
from custody.note import MAX_NOTE_BYTES, VerifierKey
from evx import durable
from evx.client.errors import IntegrityFailure, UsageError
from evx.client.platform import state_dir

MAX_KEY_BYTES = 4096  # a verifier key is ~90 bytes


def default_state_dir(environ: Mapping[str, str] | None = None) -> Path:
    """``EVX_STATE_DIR``, else the platform's user state directory."""
    return state_dir(environ)


def _origin_dir_name(origin: str) -> str:
    return re.sub(r"[^A-Za-z0-9.\-]+", "_", origin.replace("://", "_")).strip("_")


def write_atomically(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Replace ``path`` with ``data`` (:func:`evx.durable.replace_file`), creating its
    directory (owner-only) first."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    durable.replace_file(path, data, mode)


@dataclass(frozen=True)
class SavedCheckpoint:
    checkpoint: Checkpoint
    note: str


@dataclass(frozen=True)
class PackagePin:
    """The last entry of a package verified on this machine."""

    index: int
    leaf_hash: str


_PACKAGE_FILE = re.compile(r"\A[A-Za-z0-9_.-]{1,200}\Z")
_THUMBPRINT = re.compile(r"\A[A-Za-z0-9_-]{43}\Z")


class TrustState:
    """What this machine trusts about one server's log.

    ``log_key`` is a verifier key given out of band for this run (``EVX_LOG_KEY``): it takes
    the place of the pinned key, and a server presenting another is refused.
    """

    def __init__(self, root: Path, origin: str, *, log_key: VerifierKey | None = None) -> None:
        self.origin = origin
        self.directory = root / "servers" / _origin_dir_name(origin)
        self.configured_key = log_key

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

    def pin_key(self, key: VerifierKey, *, explicit: bool = False) -> None:
        write_atomically(self.key_path, (str(key) + "\n").encode())
        marker = self.directory / "log-key.explicit"
        if explicit:
            write_atomically(marker, b"set with evx trust log --key\n")
        else:
            marker.unlink(missing_ok=True)

    @property
    def key_is_explicit(self) -> bool:
        """The pinned key was set on purpose (``evx trust log --key``), not on first use."""
        return (self.directory / "log-key.explicit").exists()

    def reset(self) -> list[Path]:
        """Forget the pinned key, the saved checkpoint and the package pins (re-pin on purpose).

        Returns the files removed.
        """
        removed = []
        for path in [self.key_path, self.directory / "log-key.explicit", self.checkpoint_path,
                     *sorted((self.directory / "packages").glob("*.json"))]:
            if path.exists():
                path.unlink()
                removed.append(path)
        return removed

    # -- per-package pins: nothing a partner saw can vanish --------------------------------------

    def _package_path(self, package_id: str) -> Path:
        if not _PACKAGE_FILE.match(package_id):
            raise UsageError(f"package id {package_id!r} is not acceptable")
        return self.directory / "packages" / f"{package_id}.json"

    def package_pin(self, package_id: str) -> PackagePin | None:
        """The last entry of ``package_id`` verified here, or ``None``.

        Raises:
            IntegrityFailure: The pin file is not readable as one (this machine's state changed).
        """
        try:
            data = json.loads(self._package_path(package_id).read_bytes()[:4096])
            return PackagePin(int(data["index"]), str(data["leaf_hash"]))
        except FileNotFoundError:
            return None
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityFailure(f"the saved package pin of {package_id} is unreadable: {exc}",
                                   slug="state-corrupt") from exc

    def pin_package(self, package_id: str, pin: PackagePin) -> None:
        write_atomically(self._package_path(package_id),
                         json.dumps({"index": pin.index, "leaf_hash": pin.leaf_hash}).encode())

    def package_pins(self) -> dict[str, PackagePin]:
        """Every package pinned here."""
        pins = {}
        for path in sorted((self.directory / "packages").glob("*.json")):
            pin = self.package_pin(path.stem)
            if pin is not None:
                pins[path.stem] = pin
        return pins

    # -- the signing keys each authority declared its own -----------------------------------------

    @property
    def authority_keys_path(self) -> Path:
        return self.directory / "authority-keys.json"

    def authority_keys(self) -> dict[str, frozenset[str]]:
        """Authority -> the RFC 7638 thumbprints of the keys it declared (``evx trust keys``).

        Raises:
            UsageError: The file is not readable as such.
        """
        try:
            data = json.loads(self.authority_keys_path.read_bytes()[:1 << 20])
        except FileNotFoundError:
            return {}
        except ValueError as exc:
            raise UsageError(f"{self.authority_keys_path} is not JSON: {exc}") from exc
        if not isinstance(data, dict) or not all(
                isinstance(v, list) and all(isinstance(t, str) for t in v) for v in data.values()):
            raise UsageError(f"{self.authority_keys_path} must map authorities to lists of "
                             "thumbprints")
        return {str(k): frozenset(v) for k, v in data.items()}

    def declare_authority_keys(self, authority: str, thumbprints: list[str]) -> None:
        """Replace the keys declared for ``authority`` (an empty list forgets it).

        Raises:
            UsageError: A thumbprint is not an RFC 7638 SHA-256 thumbprint.
        """
        for thumbprint in thumbprints:
            if not _THUMBPRINT.match(thumbprint):
                raise UsageError(f"{thumbprint!r} is not an RFC 7638 SHA-256 thumbprint "
                                 "(43 base64url characters)")
        keys = {k: sorted(v) for k, v in self.authority_keys().items()}
        if thumbprints:
            keys[authority] = sorted(set(thumbprints))
        else:
            keys.pop(authority, None)
        write_atomically(self.authority_keys_path, json.dumps(keys, indent=1).encode())

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
