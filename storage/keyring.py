"""Key-encryption keys (KEKs): where they come from and which one is active.

A ``Keyring`` holds one *active* KEK, used to wrap every new data key, and any number of older
KEKs that can still unwrap. Key material comes from a ``KeySource``:

* ``DirectoryKeySource(path)``: one ``<key_id>.key`` file per KEK (base64 of 32 bytes) and an
  ``active`` file naming the active id. With ``create=True`` (the embedded default) a first key is
  generated on first use with mode 0600; it also serves a read-only mounted secret directory.
* ``StaticKeySource(keys, active)``: keys the caller already holds (e.g. read from environment
  variables by the service's settings -- storage never reads the environment itself).

An HSM or KMS can implement ``KeySource`` later; rotation then becomes ``add``-ing a new key.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from evx import durable
from storage.envelope import validate_key_id
from storage.errors import KeySourceError, UnknownKey

KEK_LEN = 32
ACTIVE_FILE = "active"
KEY_SUFFIX = ".key"


class KeySource(Protocol):
    """Where KEK material lives."""

    def load(self) -> tuple[str, dict[str, bytes]]:
        """Return the active key id and every key by id.

        Raises:
            KeySourceError: the keys cannot be read or are malformed.
        """
        ...

    def add(self, key_id: str, secret: bytes) -> None:
        """Persist a new key and make it the active one.

        Raises:
            KeySourceError: the source is read-only or the write failed.
        """
        ...


class StaticKeySource:
    """Keys handed over by the caller; read-only (rotate by redeploying with a new key)."""

    def __init__(self, keys: Mapping[str, bytes], active: str) -> None:
        """Hold ``keys`` (id -> 32 bytes) with ``active`` as the active id.

        Raises:
            ValueError: invalid key id, wrong key length, or ``active`` not among ``keys``.
        """
        for key_id, secret in keys.items():
            validate_key_id(key_id)
            if len(secret) != KEK_LEN:
                raise ValueError(f"key {key_id} must be {KEK_LEN} bytes")
        if active not in keys:
            raise ValueError(f"active key {active!r} is not among the keys")
        self._keys = dict(keys)
        self._active = active

    def __repr__(self) -> str:
        return f"StaticKeySource(active={self._active!r}, ids={sorted(self._keys)!r})"

    def load(self) -> tuple[str, dict[str, bytes]]:
        """Return the active id and the keys (never raises)."""
        return self._active, dict(self._keys)

    def add(self, key_id: str, secret: bytes) -> None:
        """Always refuses: static keys are configured, not generated.

        Raises:
            KeySourceError: always.
        """
        raise KeySourceError("static key source is read-only; configure a new key instead")


class DirectoryKeySource:
    """KEKs as files in a directory (generated there on first use when ``create`` is set)."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = False,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        """Use ``path``; with ``create``, make it (0700) and a first key if it holds none."""
        self.path = Path(path)
        self.create = create
        self._now = now

    def __repr__(self) -> str:
        return f"DirectoryKeySource({str(self.path)!r})"

    def load(self) -> tuple[str, dict[str, bytes]]:
        """Read every ``*.key`` file and the ``active`` pointer.

        Raises:
            KeySourceError: unreadable directory, malformed key file, or no/unknown active key.
        """
        if self.create:
            try:
                self.path.mkdir(mode=0o700, parents=True, exist_ok=True)
            except OSError as exc:
                raise KeySourceError(f"cannot create key directory {self.path}: {exc}") from exc
        keys: dict[str, bytes] = {}
        try:
            entries = sorted(self.path.iterdir())
        except OSError as exc:
            raise KeySourceError(f"cannot read key directory {self.path}: {exc}") from exc
        for entry in entries:
            if entry.suffix != KEY_SUFFIX or entry.name.startswith("."):
                continue
            key_id = entry.name[: -len(KEY_SUFFIX)]
            try:
                validate_key_id(key_id)
                secret = base64.b64decode(entry.read_bytes().strip(), validate=True)
            except (OSError, ValueError, binascii.Error) as exc:
                raise KeySourceError(f"cannot read key file {entry.name}: {exc}") from exc
            if len(secret) != KEK_LEN:
                raise KeySourceError(f"key file {entry.name} does not hold {KEK_LEN} bytes")
            keys[key_id] = secret
        if not keys and self.create:
            self.add(new_key_id(self._now()), os.urandom(KEK_LEN))
            return self.load()
        try:
            active = (self.path / ACTIVE_FILE).read_text("ascii").strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise KeySourceError(f"no readable '{ACTIVE_FILE}' file in {self.path}") from exc
        if active not in keys:
            raise KeySourceError(f"active key {active!r} has no key file in {self.path}")
        return active, keys

    def add(self, key_id: str, secret: bytes) -> None:
        """Write ``<key_id>.key`` (0600, never overwriting) then point ``active`` at it.

        Raises:
            KeySourceError: the directory is read-only, the key exists, or the write failed.
            ValueError: invalid key id or key length.
        """
        validate_key_id(key_id)
        if len(secret) != KEK_LEN:
            raise ValueError(f"a KEK is {KEK_LEN} bytes")
        try:
            durable.create_file(self.path / f"{key_id}{KEY_SUFFIX}",
                                base64.b64encode(secret) + b"\n")
            durable.replace_file(self.path / ACTIVE_FILE, key_id.encode("ascii") + b"\n")
        except OSError as exc:
            raise KeySourceError(f"cannot store key {key_id} in {self.path}: {exc}") from exc


class Keyring:
    """The KEKs in use: one active key for wrapping, all of them for unwrapping."""

    def __init__(self, source: KeySource,
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        """Load keys from ``source``.

        Raises:
            KeySourceError: the source cannot be loaded or is inconsistent.
        """
        self.source = source
        self._now = now
        self._active = ""
        self._keys: dict[str, bytes] = {}
        self.reload()

    def __repr__(self) -> str:
        return f"Keyring(active={self._active!r}, ids={sorted(self._keys)!r})"

    def reload(self) -> None:
        """Re-read the source (e.g. after another process rotated).

        Raises:
            KeySourceError: the source cannot be loaded or is inconsistent.
        """
        active, keys = self.source.load()
        if active not in keys:
            raise KeySourceError(f"active key {active!r} is not in the key source")
        for key_id, secret in keys.items():
            if len(secret) != KEK_LEN:
                raise KeySourceError(f"key {key_id} is not {KEK_LEN} bytes")
        self._active, self._keys = active, keys

    @property
    def active_key_id(self) -> str:
        """Id of the KEK that wraps new data keys."""
        return self._active

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Ids of every KEK that can unwrap, sorted."""
        return tuple(sorted(self._keys))

    def active_key(self) -> tuple[str, bytes]:
        """The active KEK's id and material."""
        return self._active, self._keys[self._active]

    def find(self, key_id: str) -> bytes | None:
        """The material of ``key_id``, or None if this keyring does not hold it."""
        return self._keys.get(key_id)

    def get(self, key_id: str) -> bytes:
        """The material of ``key_id``.

        Raises:
            UnknownKey: the keyring does not hold ``key_id``.
        """
        secret = self._keys.get(key_id)
        if secret is None:
            raise UnknownKey(f"key {key_id!r} is not in the keyring", (key_id,))
        return secret

    def rotate(self) -> str:
        """Generate a new KEK, store it in the source as the active key, and return its id.

        Older keys stay in the keyring for unwrapping until ``rewrap_all`` has moved every item
        to the new key and an operator retires them.

        Raises:
            KeySourceError: the source is read-only or the write failed.
        """
        key_id = new_key_id(self._now())
        self.source.add(key_id, os.urandom(KEK_LEN))
        self.reload()
        return key_id


def new_key_id(at: datetime) -> str:
    """A fresh key id such as ``kek-20250101-1a2b3c4d`` (date for operators, random for
    uniqueness)."""
    return f"kek-{at:%Y%m%d}-{secrets.token_hex(4)}"


